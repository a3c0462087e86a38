"""Behaviour tests for the evaluation protocol (course_lib.evaluate): probe, kNN, label budgets."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn

from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.evaluate import (
    Evaluation,
    accuracy,
    evaluate,
    evaluate_features,
    extract_features,
    fit_linear_probe,
    knn_predict,
    linear_probe_accuracy,
    pixels,
    sample_per_class,
)
from course_lib.models import SmallConvNet

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int, num_classes: int = 3, dim: int = 10, spread: float = 1.5, seed: int = 0):
    """Gaussian blobs around random centres, shifted away from zero so that standardising matters."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))
    y = torch.randint(num_classes, (n,), generator=g)
    h = centres[y] + spread * torch.randn(n, dim, generator=g)
    return h * torch.linspace(0.5, 5, dim) + 3.0, y


def tiny_images(n: int, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    for c in range(4):
        images[labels == c, :, 3 * c: 3 * c + 3] = 255
    return ImageData(images, labels, [f"c{c}" for c in range(4)])


# ---------------------------------------------------------------- linear probe


def test_linear_probe_matches_scikit_learn_logistic_regression():
    h, y = blobs(300)
    h_test, y_test = blobs(300, seed=1)
    weight_decay = 1e-2
    probe = fit_linear_probe(h, y, num_classes=3, weight_decay=weight_decay)
    ours = probe(h_test).argmax(1).numpy()

    scaler = StandardScaler().fit(h.numpy())
    ref = LogisticRegression(C=1 / (len(h) * weight_decay), max_iter=5000, tol=1e-10)
    ref.fit(scaler.transform(h.numpy()), y.numpy())
    theirs = ref.predict(scaler.transform(h_test.numpy()))

    assert (ours == theirs).mean() >= 0.98
    acc_ours, acc_theirs = (ours == y_test.numpy()).mean(), (theirs == y_test.numpy()).mean()
    assert abs(acc_ours - acc_theirs) <= 0.01
    assert acc_ours > 0.6  # far above chance (1/3): the comparison is not between two broken fits
    # the same objective has the same minimiser
    linear = probe[1]
    np.testing.assert_allclose(linear.weight.numpy(), ref.coef_, atol=2e-3)


def test_linear_probe_on_separable_features_is_perfect():
    y = torch.arange(40) % 4
    h = torch.nn.functional.one_hot(y, 4).float() * 10 + 0.1 * torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    assert linear_probe_accuracy(h, y, h, y) == 1.0
    probe = fit_linear_probe(h, y, 4)
    assert accuracy(probe(h), y) == 1.0


def test_linear_probe_returns_a_frozen_module_that_standardises():
    h, y = blobs(60)
    probe = fit_linear_probe(h, y, 3)
    assert all(not p.requires_grad for p in probe.parameters())
    standardise = probe[0]
    hs = standardise(h)
    torch.testing.assert_close(hs.mean(0), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(hs.std(0, unbiased=False), torch.ones(10), atol=1e-4, rtol=0)


@pytest.mark.parametrize("labels,error", [
    (torch.tensor([0, 1, -1, 0]), ValueError),  # negative
    (torch.tensor([0.0, 1.0, 1.0, 0.0]), TypeError),  # float
    (torch.tensor([0, 1, 3, 0]), ValueError),  # out of range for 3 classes
    (torch.tensor([[0, 1], [1, 0]]), TypeError),  # not 1-D
    ([0, 1, 1, 0], TypeError),  # not a tensor
])
def test_bad_labels_raise(labels, error):
    h = torch.randn(4, 5)
    with pytest.raises(error, match="labels"):
        fit_linear_probe(h, labels, num_classes=3)


def test_feature_and_label_count_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(4,\)"):
        fit_linear_probe(torch.randn(5, 3), torch.tensor([0, 1, 0, 1]), 2)


# ---------------------------------------------------------------- kNN


@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_matches_scikit_learn(k):
    g = torch.Generator().manual_seed(k)
    h = torch.randn(200, 8, generator=g)
    y = torch.randint(3, (200,), generator=g)
    q = torch.randn(150, 8, generator=g)
    ours = knn_predict(h, y, q, k=k, chunk=64).numpy()
    ref = KNeighborsClassifier(k, metric="cosine", algorithm="brute", weights="uniform").fit(h.numpy(), y.numpy())
    np.testing.assert_array_equal(ours, ref.predict(q.numpy()))


def test_knn_ties_go_to_the_smallest_label():
    h = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    q = torch.tensor([[1.0, 0.05]])
    assert knn_predict(h, torch.tensor([2, 1]), q, k=2).tolist() == [1]


@pytest.mark.parametrize("k", [0, 11])
def test_knn_bad_k_raises(k):
    with pytest.raises(ValueError, match="k must be between 1 and"):
        knn_predict(torch.randn(10, 2), torch.zeros(10, dtype=torch.long), torch.randn(3, 2), k=k)


# ---------------------------------------------------------------- label budgets


def test_sample_per_class_gives_n_per_class_deterministically():
    labels = torch.arange(100) % 5
    idx = sample_per_class(labels, 3, seed=0)
    assert torch.equal(idx, idx.sort().values)
    assert len(idx.unique()) == len(idx) == 15
    assert torch.bincount(labels[idx]).tolist() == [3] * 5
    assert torch.equal(sample_per_class(labels, 3, seed=0), idx)
    assert not torch.equal(sample_per_class(labels, 3, seed=1), idx)
    # a smaller budget with the same seed draws a subset of the larger one
    assert set(sample_per_class(labels, 2, seed=0).tolist()) <= set(sample_per_class(labels, 10, seed=0).tolist())


def test_sample_per_class_none_means_all():
    labels = torch.tensor([2, 0, 1, 1, 0])
    assert sample_per_class(labels, None).tolist() == [0, 1, 2, 3, 4]


def test_sample_per_class_rejects_impossible_budgets():
    labels = torch.tensor([0] * 5 + [1] * 2)
    with pytest.raises(ValueError, match="class 1 has only 2 examples"):
        sample_per_class(labels, 3)
    with pytest.raises(ValueError, match=">= 1"):
        sample_per_class(labels, 0)
    with pytest.raises(TypeError, match="labels"):
        sample_per_class(labels.float(), 1)


# ---------------------------------------------------------------- frozen features


def test_extract_features_leaves_the_encoder_unchanged_and_restores_its_mode():
    torch.manual_seed(0)
    encoder = SmallConvNet(1, width=4)
    data = tiny_images(20)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()
    h = extract_features(encoder, data.images, batch_size=7)
    assert h.shape == (20, encoder.feature_dim) and h.dtype == torch.float32
    assert encoder.training
    for k, v in encoder.state_dict().items():  # batch-norm running statistics included
        assert torch.equal(v, before[k]), k
    # features are computed in eval mode, in batches that do not matter
    encoder.eval()
    with torch.no_grad():
        ref = encoder.forward_features(data.images.float() / 255)
    torch.testing.assert_close(h, ref)
    assert not encoder.training  # an encoder in eval mode stays in eval mode
    extract_features(encoder, data.images)
    assert not encoder.training


def test_extract_features_of_pixels_and_of_a_parameterless_module():
    data = tiny_images(6)
    h = extract_features(pixels, data.images, batch_size=4)
    torch.testing.assert_close(h, data.images.flatten(1).float() / 255)
    torch.testing.assert_close(extract_features(nn.Flatten(), data.images), h)


def test_extract_features_rejects_float_images():
    with pytest.raises(TypeError, match="uint8"):
        extract_features(pixels, torch.rand(2, 1, 8, 8))


def test_the_protocol_never_changes_the_backbone():
    torch.manual_seed(0)
    encoder = SmallConvNet(1, width=4)
    encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train, test = tiny_images(48, seed=0), tiny_images(24, seed=1)
    profile = get_profile("fast", labels_per_class=(2, None), knn_k=3)
    result = evaluate("tiny", encoder, train, test, profile)
    assert set(result.probe) == {"2", "all"}
    assert 0.0 <= result.knn <= 1.0
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in encoder.parameters())
    assert encoder.training


def test_evaluate_features_reports_every_budget():
    h, y = blobs(400, num_classes=3)
    h_test, y_test = blobs(150, num_classes=3, seed=1)
    result = evaluate_features("blobs", h, y, h_test, y_test, labels_per_class=(10, 100, None), k=5)
    assert isinstance(result, Evaluation) and result.method == "blobs"
    assert list(result.probe) == ["10", "100", "all"]
    assert all(1 / 3 < acc <= 1.0 for acc in result.probe.values())
    assert result.probe["all"] >= result.probe["10"] - 0.02  # more labels do not hurt (much)
    assert 1 / 3 < result.knn <= 1.0
    # the same seed gives the same numbers
    again = evaluate_features("blobs", h, y, h_test, y_test, labels_per_class=(10, 100, None), k=5)
    assert again == result
    assert Evaluation.from_dict(result.as_dict()) == result
