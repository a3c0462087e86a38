"""Behaviour tests for the four learning paradigms on the two-moons toy problem (course_lib.paradigms)."""

import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from course_lib import paradigms
from course_lib.paradigms import (
    accuracy_on_test,
    make_toy_problem,
    pretrain_point_encoder,
    relabel,
    self_supervised,
    semi_supervised,
    supervised,
    unsupervised,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    return make_toy_problem(labels_per_class=3, seed=0)


@pytest.fixture(scope="module")
def short_pretraining(problem):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # pretraining seeds the global generator
            return pretrain_point_encoder(problem.points, steps=150, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_toy_problem_has_n_labelled_points_per_class(n):
    p = make_toy_problem(labels_per_class=n, num_points=200, seed=1)
    assert p.points.shape == (200, 2) and p.points.dtype == np.float32
    assert p.test_points.shape == (1000, 2) and p.test_labels.shape == (1000,)
    assert len(np.unique(p.labeled)) == len(p.labeled) == 2 * n
    assert np.all(np.diff(p.labeled) > 0)
    assert np.bincount(p.labels[p.labeled], minlength=2).tolist() == [n, n]
    assert np.bincount(p.labels).tolist() == [100, 100]


def test_toy_problem_is_deterministic_and_seeded():
    a, b, c = make_toy_problem(seed=3), make_toy_problem(seed=3), make_toy_problem(seed=4)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.labeled, b.labeled)
    assert not np.array_equal(a.points, c.points)
    assert not np.allclose(a.points, a.test_points[: len(a.points)])  # the test set is a different draw


def test_toy_problem_rejects_no_labels():
    with pytest.raises(ValueError, match="labels_per_class"):
        make_toy_problem(labels_per_class=0)


def test_relabel_keeps_the_points_and_draws_n_labels_per_class_reproducibly():
    p = make_toy_problem(labels_per_class=3, num_points=200, seed=1)
    for n in (1, 7, 100):
        q = relabel(p, n, seed=5)
        np.testing.assert_array_equal(q.points, p.points)
        np.testing.assert_array_equal(q.labels, p.labels)
        np.testing.assert_array_equal(q.test_points, p.test_points)
        assert np.all(np.diff(q.labeled) > 0) and len(q.labeled) == 2 * n
        assert np.bincount(p.labels[q.labeled], minlength=2).tolist() == [n, n]
        np.testing.assert_array_equal(relabel(p, n, seed=5).labeled, q.labeled)
    assert not np.array_equal(relabel(p, 7, seed=5).labeled, relabel(p, 7, seed=6).labeled)
    np.testing.assert_array_equal(p.labeled, make_toy_problem(labels_per_class=3, num_points=200, seed=1).labeled)


@pytest.mark.parametrize("bad", [0, -1, 101, 2.0, True])
def test_relabel_rejects_a_count_that_is_not_a_positive_int_or_too_large(bad):
    with pytest.raises(ValueError, match="labels_per_class"):
        relabel(make_toy_problem(num_points=200, seed=1), bad)


def test_each_strategy_predicts_one_class_in_0_1_per_point(problem, short_pretraining):
    encoder, _ = short_pretraining
    strategies = {
        "supervised": supervised(problem),
        "semi-supervised": semi_supervised(problem),
        "unsupervised": unsupervised(problem),
        "self-supervised": self_supervised(problem, encoder=encoder),
    }
    for name, predict in strategies.items():
        pred = np.asarray(predict(problem.test_points))
        assert pred.shape == (1000,), name
        assert set(np.unique(pred)) <= {0, 1}, name
        assert 0.5 <= accuracy_on_test(problem, predict) <= 1.0, name
        # every strategy sees the labelled points it was given and gets most of them right
        assert (np.asarray(predict(problem.points[problem.labeled])) == problem.labels[problem.labeled]).mean() >= 0.5


def test_semi_supervised_beats_supervised_with_three_labels_per_class(problem):
    sup = accuracy_on_test(problem, supervised(problem))
    semi = accuracy_on_test(problem, semi_supervised(problem))
    # measured on seed 0: supervised 0.678, semi-supervised 0.779
    assert sup == pytest.approx(0.678, abs=0.02)
    assert semi == pytest.approx(0.779, abs=0.02)
    assert semi > sup + 0.05


def test_unsupervised_names_each_cluster_with_a_different_class(problem):
    """On seed 0 the labelled points split 2-2 and 1-1 over the clusters: a per-cluster majority vote
    would name both clusters class 0 and predict a single class everywhere."""
    predict = unsupervised(problem)
    pred = predict(problem.test_points)
    assert set(np.unique(pred)) == {0, 1}
    clusters = KMeans(2, n_init=10, random_state=0).fit(problem.points).predict(problem.test_points)
    assert np.array_equal(pred, clusters) or np.array_equal(pred, 1 - clusters)
    assert accuracy_on_test(problem, predict) > 0.7


def test_unsupervised_follows_the_labelled_points_when_they_agree():
    p = make_toy_problem(labels_per_class=10, seed=0)
    km_labels = KMeans(2, n_init=10, random_state=0).fit(p.points).labels_
    pred = unsupervised(p)(p.points[p.labeled])
    assert (pred == p.labels[p.labeled]).sum() >= (km_labels[p.labeled] == p.labels[p.labeled]).sum()
    assert (pred == p.labels[p.labeled]).mean() >= 0.5


def test_the_pretext_loss_falls(short_pretraining):
    _, losses = short_pretraining
    assert len(losses) == 150
    assert losses[0] == pytest.approx(math.log(400), abs=0.5)  # chance: pick one of 400 points
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.1


def test_pretraining_is_deterministic(problem):
    a = pretrain_point_encoder(problem.points[:100], steps=5, k=5, seed=1)
    b = pretrain_point_encoder(problem.points[:100], steps=5, k=5, seed=1)
    assert a[1] == b[1]
    for pa, pb in zip(a[0].parameters(), b[0].parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not a[0].training


def test_self_supervised_fits_the_head_on_labelled_points_only(problem, short_pretraining, monkeypatch):
    seen = []
    real = paradigms.LogisticRegression

    class Spy(real):
        def fit(self, X, y):
            seen.append(len(X))
            return super().fit(X, y)

    monkeypatch.setattr(paradigms, "LogisticRegression", Spy)
    self_supervised(problem, encoder=short_pretraining[0])
    assert seen == [len(problem.labeled)] == [6]
