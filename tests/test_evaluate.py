"""Behaviour tests for the evaluation protocol (course_lib.evaluate): probe, kNN, label budgets, the batch-norm rule."""

import math

import numpy as np
import pytest
import torch
from conftest import make_image_data, make_images, tiny_profile
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn

from course_lib import evaluate as E
from course_lib.augment import to_float
from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.evaluate import (
    Evaluation,
    Protocol,
    accuracy,
    choose_weight_decay,
    evaluate,
    evaluate_features,
    evaluation_data,
    extract_features,
    finetune_accuracy,
    finetune_draws,
    fit_linear_probe,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    mean_std,
    pixels,
    probe_by_depth,
    protocol_for,
    sample_per_class,
    split_validation,
    stage_features,
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
    return make_image_data(n, num_classes=4, size=12, seed=seed)


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


TINY_PROTOCOL = Protocol(labels_per_class=(2, None), draws=3, validation_per_class=2, knn_k=3, finetune_labels=2,
                         finetune_steps=3, finetune_batch_size=8)


def test_the_protocol_never_changes_the_backbone():
    torch.manual_seed(0)
    encoder = SmallConvNet(1, width=4)
    encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train, test = tiny_images(48, seed=0), tiny_images(24, seed=1)
    result = evaluate("tiny", encoder, train, test, get_profile("fast"), protocol=TINY_PROTOCOL)
    assert set(result.probe) == {"2", "all"}
    assert [len(v) for v in result.probe.values()] == [3, 1]  # three label draws; "all" is one set
    assert len(result.finetune) == 3 and all(0.0 <= a <= 1.0 for a in result.finetune)
    assert 0.0 <= result.knn <= 1.0
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in encoder.parameters())
    assert encoder.training


def test_raw_pixels_have_no_fine_tuning_their_figure_is_their_probe():
    train, test = tiny_images(48, seed=0), tiny_images(24, seed=1)
    result = evaluate("raw pixels", pixels, train, test, get_profile("fast"), protocol=TINY_PROTOCOL)
    assert result.finetune == result.probe["2"]


def test_evaluate_features_reports_every_budget_over_draws_with_a_tuned_penalty():
    h, y = blobs(600, num_classes=3)
    h_test, y_test = blobs(150, num_classes=3, seed=1)
    protocol = Protocol(labels_per_class=(10, 100, None), draws=3, validation_per_class=30, knn_k=5)
    result = evaluate_features("blobs", h, y, h_test, y_test, protocol)
    assert isinstance(result, Evaluation) and result.method == "blobs"
    assert list(result.probe) == ["10", "100", "all"]
    assert [len(v) for v in result.probe.values()] == [3, 3, 1]
    assert all(1 / 3 < acc <= 1.0 for accs in result.probe.values() for acc in accs)
    assert set(result.weight_decay) == {"10", "100", "all"}
    assert set(result.weight_decay.values()) <= set(protocol.weight_decays)
    # the reported numbers are the probes of the draws, refitted here by hand with the chosen penalty
    pool, val = split_validation(y, protocol.validation_per_class, protocol.seed)
    for n, name in ((10, "10"), (100, "100")):
        for acc, seed in zip(result.probe[name], protocol.draw_seeds(), strict=True):
            idx = pool[sample_per_class(y[pool], n, seed)]
            assert acc == linear_probe_accuracy(h[idx], y[idx], h_test, y_test, result.weight_decay[name],
                                                protocol.probe_max_iter)
    assert result.knn == knn_accuracy(h, y, h_test, y_test, 5)  # nothing tuned: every training label votes
    assert result.mean("10") == pytest.approx(sum(result.probe["10"]) / 3)
    # the same seed gives the same numbers; the dict round trip keeps everything
    assert evaluate_features("blobs", h, y, h_test, y_test, protocol) == result
    assert Evaluation.from_dict(result.as_dict()) == result


def test_split_validation_is_per_class_disjoint_and_covers_everything():
    y = torch.arange(60) % 3
    pool, val = split_validation(y, 5, seed=0)
    assert torch.bincount(y[val], minlength=3).tolist() == [5, 5, 5]
    assert set(pool.tolist()).isdisjoint(val.tolist())
    assert sorted(pool.tolist() + val.tolist()) == list(range(60))
    assert torch.equal(split_validation(y, 5, seed=0)[1], val)
    with pytest.raises(ValueError, match="leaves a class without"):
        split_validation(y, 20)


def test_choose_weight_decay_takes_the_best_validation_accuracy():
    h, y = blobs(60, num_classes=3, spread=4.0)
    h_val, y_val = blobs(200, num_classes=3, spread=4.0, seed=5)
    grid = (1e-4, 1e-2, 1.0, 30.0)
    best, scores = choose_weight_decay(h, y, h_val, y_val, grid, 3)
    expected = {wd: accuracy(fit_linear_probe(h, y, 3, wd)(h_val), y_val) for wd in grid}  # by hand
    assert scores == expected
    top = max(expected.values())
    assert best == max(wd for wd in grid if expected[wd] == top)


def test_fine_tuning_is_deterministic_leaves_the_backbone_alone_and_learns():
    train, test = tiny_images(80, seed=0), tiny_images(40, seed=1)
    protocol = Protocol(labels_per_class=(5,), validation_per_class=2, finetune_labels=5, finetune_steps=30,
                        finetune_lr=1e-3, finetune_batch_size=20)
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    draws = finetune_draws(train.labels, protocol)
    assert len(draws) == protocol.draws and all(torch.bincount(train.labels[d]).tolist() == [5] * 4 for d in draws)
    a = finetune_accuracy(net, train, draws[0], test, protocol, seed=0)
    assert a == finetune_accuracy(net, train, draws[0], test, protocol, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert a > 0.5  # 4 classes marked by bright bands: chance is 0.25
    with pytest.raises(TypeError, match="forward_features"):
        finetune_accuracy(nn.Flatten(), train, draws[0], test, protocol)


def test_fine_tuning_starts_from_the_tuned_probe():
    """LP-FT: with no steps the fine-tune figure is exactly the probe's test accuracy with that penalty
    (the head is the probe, standardisation folded into its weights); a few steps move away from it."""
    train, test = tiny_images(80, seed=0), tiny_images(40, seed=1)
    protocol = Protocol(labels_per_class=(5,), validation_per_class=2, finetune_labels=5, finetune_steps=0,
                        finetune_batch_size=20)
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    index = finetune_draws(train.labels, protocol)[0]
    h, h_test = extract_features(net, train.images[index]), extract_features(net, test.images)
    probe = fit_linear_probe(h, train.labels[index], train.num_classes, 1e-2, protocol.probe_max_iter)
    by_hand = (probe(h_test).argmax(1) == test.labels).float().mean().item()
    assert finetune_accuracy(net, train, index, test, protocol, weight_decay=1e-2) == pytest.approx(by_hand, abs=1e-9)
    chosen = finetune_accuracy(net, train, index, test, protocol)  # penalty chosen on the validation split
    assert 0.0 <= chosen <= 1.0
    with pytest.raises(ValueError, match="finetune_steps"):
        Protocol(finetune_steps=-1)


def test_protocol_for_sizes_the_validation_split_and_checks_values():
    assert protocol_for(get_profile("fast")).validation_per_class == 100
    assert protocol_for(get_profile("grade")).validation_per_class == 10  # 50 images per class kept
    assert protocol_for(get_profile("fast")).labels_per_class == (10, 100, None)
    assert protocol_for(get_profile("fast")).finetune_steps == 50 == get_profile("fast").finetune_steps  # as printed
    assert protocol_for(get_profile("full")).finetune_steps == get_profile("full").finetune_steps
    with pytest.raises(ValueError, match="draws"):
        Protocol(draws=0)
    with pytest.raises(ValueError, match="weight_decays"):
        Protocol(weight_decays=())


def test_mean_std_of_draws():
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1414213562))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert all(np.isnan(mean_std([])))


def _h(n=6, d=3):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


BAD_PROBE_INPUTS = {
    "feature sizes differ": (lambda: (_h(), torch.arange(6) % 2, _h(4, 5), torch.arange(4) % 2), ValueError,
                             r"\(6, 3\).*\(4, 5\)"),
    "empty training set": (lambda: (_h(0), torch.zeros(0, dtype=torch.long), _h(4), torch.arange(4) % 2), ValueError,
                           r"h_train is empty \(shape \(0, 3\)\)"),
    "empty query set": (lambda: (_h(), torch.arange(6) % 2, _h(0), torch.zeros(0, dtype=torch.long)), ValueError,
                        r"h_query is empty"),
    "NaN features": (lambda: (_h().index_fill(0, torch.tensor([2]), float("nan")), torch.arange(6) % 2, _h(4),
                              torch.arange(4) % 2), ValueError, r"h_train \(shape \(6, 3\)\) holds NaN or inf in 1 row"),
    "inf query": (lambda: (_h(), torch.arange(6) % 2, _h(4).index_fill(0, torch.tensor([0]), float("inf")),
                           torch.arange(4) % 2), ValueError, r"h_query .* NaN or inf"),
    "labels too short": (lambda: (_h(), torch.arange(5) % 2, _h(4), torch.arange(4) % 2), ValueError,
                         r"y_train .*\(6, 3\).*\(6,\).*\(5,\)"),
    "labels 2-D": (lambda: (_h(), (torch.arange(6) % 2)[:, None], _h(4), torch.arange(4) % 2), TypeError,
                   r"1-D integer tensor"),
    "features 1-D": (lambda: (torch.randn(6), torch.arange(6) % 2, _h(4), torch.arange(4) % 2), ValueError,
                     r"h_train must be 2-D \(N, D\), got shape \(6,\)"),
}


@pytest.mark.parametrize("case", list(BAD_PROBE_INPUTS), ids=list(BAD_PROBE_INPUTS))
@pytest.mark.parametrize("fn", ["probe", "knn"])
def test_probe_and_knn_reject_bad_input_naming_shapes(case, fn):
    make, error, match = BAD_PROBE_INPUTS[case]
    h, y, hq, yq = make()
    with pytest.raises(error, match=match):
        if fn == "probe":
            linear_probe_accuracy(h, y, hq, yq)
        else:
            knn_accuracy(h, y, hq, yq, k=1)


# ---------------------------------------------------------------- features by depth (notebooks 03 and 07)


def test_stage_features_shapes_and_last_stage_is_forward_features():
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    x = make_images(5, size=16)
    feats = stage_features(net, x, grid=1, batch_size=2)
    assert [tuple(f.shape) for f in feats] == [(5, 4), (5, 8), (5, 16), (5, 16)]
    with torch.no_grad():
        torch.testing.assert_close(feats[-1], net.forward_features(x.float() / 255))
    assert [f.shape[1] for f in stage_features(net, x, grid=2)] == [16, 32, 64, 64]
    with pytest.raises(ValueError):
        stage_features(net, x, grid=0)


def test_probe_by_depth_gives_one_accuracy_per_stage_and_leaves_the_backbone_unchanged(cache):
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_data, test_data = make_image_data(40, size=16), make_image_data(20, size=16, seed=1)
    accs = probe_by_depth(net, train_data, test_data, tiny_profile(max_images_per_class=10, batch_size=16), labels_per_class=5)
    assert len(accs) == 4 and all(len(a) == 3 and all(0 <= x <= 1 for x in a) for a in accs)  # 3 draws per stage
    assert net.training  # mode restored
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_probe_by_depth_is_cached_by_the_weights(cache, monkeypatch):
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4)
    train_data, test_data = make_image_data(40, size=16), make_image_data(20, size=16, seed=1)
    profile = tiny_profile(max_images_per_class=10, batch_size=16)
    first = probe_by_depth(net, train_data, test_data, profile, labels_per_class=5)
    calls = []
    real = E._probe_by_depth
    monkeypatch.setattr(E, "_probe_by_depth", lambda *a: calls.append(1) or real(*a))
    assert probe_by_depth(net, train_data, test_data, profile, labels_per_class=5) == first
    assert calls == []  # loaded, not probed again
    probe_by_depth(net, train_data, test_data, profile, labels_per_class=4)
    with torch.no_grad():
        next(net.parameters())[0].mul_(2)  # other weights: probed again
    probe_by_depth(net, train_data, test_data, profile, labels_per_class=5)
    assert len(calls) == 2


# ---------------------------------------------------------------- the protocol's data


def test_evaluation_data_is_the_profiles_dataset_cut_by_the_profile():
    from course_lib.datasets import load_dataset

    profile = get_profile("grade")
    train, test = evaluation_data(profile)
    for got, split in ((train, "train"), (test, "test")):
        expected = profile.limit(load_dataset(profile.dataset, split))
        assert torch.equal(got.images, expected.images) and torch.equal(got.labels, expected.labels)
    assert len(train) <= profile.max_images_per_class * train.num_classes < len(load_dataset(profile.dataset, "train"))
    with pytest.raises(TypeError, match="Profile"):
        evaluation_data("fast")


# ---------------------------------------------------------------- one rule for batch-norm statistics


BN_PROTOCOL = TINY_PROTOCOL.replace(bn_batches=3)


def test_the_batchnorm_rule_re_estimates_the_statistics_on_the_training_images():
    """The copy's first batch norm holds the mean and (unbiased) variance of its input over the training
    images, computed here by hand: 48 images are fewer than a batch, so every batch is all of them."""
    net = SmallConvNet(1, width=4).eval()
    train = tiny_images(48)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    copy = E.evaluation_encoder(net, train, BN_PROTOCOL)
    assert copy is not net and not copy.training
    with torch.no_grad():
        h = net.stages[0][0](to_float(train.images))  # (48, 4, 12, 12): the first convolution, before its BN
    bn = copy.stages[0][1]
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(bn.running_var, h.var(dim=(0, 2, 3), unbiased=True), rtol=1e-5)
    norms = [m for m in copy.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 4 and all(int(m.num_batches_tracked) == 3 for m in norms)
    assert all(m.momentum == 0.1 for m in norms)  # the estimate's cumulative average is not left behind
    for k, v in net.state_dict().items():  # the caller's backbone: untouched
        assert torch.equal(v, before[k]), k
    other = E.evaluation_encoder(net, tiny_images(48, seed=5), BN_PROTOCOL)  # other images, other statistics
    assert not torch.allclose(other.stages[0][1].running_mean, bn.running_mean)


def test_the_rule_holds_for_random_init_and_reaches_the_probes_and_the_fine_tune(monkeypatch):
    """A random-init backbone (batch-norm statistics never estimated: mean 0, variance 1) is evaluated through
    the re-estimated copy: the probes see its features, LP-FT starts from it; the encoder itself is unchanged.
    bn_batches=0 keeps the encoder's own statistics (the rule of protocol v2)."""
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in net.modules()
               if isinstance(m, nn.BatchNorm2d))
    train, test = tiny_images(48, seed=0), tiny_images(24, seed=1)
    seen, tuned = {}, []
    real_features, real_finetune = E.evaluate_features, E.finetune_accuracy
    monkeypatch.setattr(E, "evaluate_features", lambda m, h, *a: seen.update(h=h) or real_features(m, h, *a))
    monkeypatch.setattr(E, "finetune_accuracy", lambda backbone, *a, **k: tuned.append(backbone) or real_finetune(backbone, *a, **k))
    evaluate("random init", net, train, test, get_profile("fast"), protocol=BN_PROTOCOL)
    rule = E.evaluation_encoder(net, train, BN_PROTOCOL)
    assert torch.equal(seen["h"], extract_features(rule, train.images))
    assert not torch.allclose(seen["h"], extract_features(net, train.images))  # the rule changed the features
    assert len(tuned) == 3 and all(t is not net for t in tuned)
    for t in tuned:
        assert torch.equal(t.stages[0][1].running_mean, rule.stages[0][1].running_mean)
    assert torch.equal(net.stages[0][1].running_mean, torch.zeros(4))
    assert E.evaluation_encoder(net, train, BN_PROTOCOL.replace(bn_batches=0)) is net
    assert E.evaluation_encoder(pixels, train, BN_PROTOCOL) is pixels
    no_norm = nn.Sequential(nn.Flatten())
    assert E.evaluation_encoder(no_norm, train, BN_PROTOCOL) is no_norm
    with pytest.raises(TypeError, match="uint8 images"):
        E.evaluation_encoder(net, to_float(train.images), BN_PROTOCOL)
    with pytest.raises(ValueError, match="no image"):
        E.evaluation_encoder(net, train.subset(torch.arange(0)), BN_PROTOCOL)
    with pytest.raises(ValueError, match="bn_batches"):
        Protocol(bn_batches=-1)


def test_protocol_features_are_the_features_of_the_re_estimated_copy():
    """What a notebook probes outside the table (an ablation, SimCLR's h before its head) is read under the
    table's rule: the features of evaluation_encoder's copy, train and test; the encoder is unchanged."""
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    train, test = tiny_images(48, seed=0), tiny_images(24, seed=1)
    before = net.stages[0][1].running_mean.clone()
    h_train, h_test = E.protocol_features(net, train, test, BN_PROTOCOL)
    rule = E.evaluation_encoder(net, train, BN_PROTOCOL)
    assert torch.equal(h_train, extract_features(rule, train.images))
    assert torch.equal(h_test, extract_features(rule, test.images))
    assert not torch.allclose(h_test, extract_features(net, test.images))
    assert torch.equal(net.stages[0][1].running_mean, before)
    p_train, _ = E.protocol_features(pixels, train, test, BN_PROTOCOL)
    assert torch.equal(p_train, extract_features(pixels, train.images))
    with pytest.raises(TypeError, match="Protocol"):
        E.protocol_features(net, train, test, {"bn_batches": 3})


def test_the_protocol_key_changes_with_the_version(monkeypatch):
    train, test = tiny_images(48), tiny_images(24, seed=1)
    profile = get_profile("fast")
    key = E.protocol_key(train, test, profile)
    assert E.PROTOCOL_VERSION == 3 and key["version"] == 3
    assert key["protocol"]["bn_batches"] == 20 and key["protocol"]["bn_batch_size"] == 256
    monkeypatch.setattr(E, "PROTOCOL_VERSION", 2)
    assert E.protocol_key(train, test, profile) != key


def test_label_draws_are_the_probes_and_the_fine_tunes():
    y = torch.arange(90) % 3
    protocol = Protocol(labels_per_class=(5, None), validation_per_class=4, finetune_labels=5)
    pool, val = split_validation(y, 4, protocol.seed)
    draws = E.label_draws(y, protocol, 5)
    assert len(draws) == 3 and all(torch.bincount(y[d]).tolist() == [5, 5, 5] for d in draws)
    assert all(not set(d.tolist()) & set(val.tolist()) for d in draws)
    assert all(torch.equal(a, b) for a, b in zip(draws, finetune_draws(y, protocol), strict=True))
    [everything] = E.label_draws(y, protocol, None)
    assert torch.equal(everything, pool)


def test_old_rows_read_as_self_supervised_and_a_kind_is_checked():
    old = {"method": "x", "probe": {"10": [0.5]}, "knn": 0.4, "finetune": [], "weight_decay": {}, "compute": {}}
    assert Evaluation.from_dict(old).kind == "self-supervised"
    row = Evaluation("s", {"10": [0.7]}, kind="supervised")
    assert row.with_labels and math.isnan(row.knn) and Evaluation.from_dict(row.as_dict()) == row
    with pytest.raises(ValueError, match="kind must be one of"):
        Evaluation("x", kind="semi")
