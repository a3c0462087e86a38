"""Behaviour tests for contrastive predictive coding (course_lib.cpc, van den Oord et al. 2018; Hénaff et al. 2019)."""

import math

import pytest
import torch
from conftest import make_image_data, tiny_profile

from course_lib import cpc as C
from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.loader import Batch
from course_lib.models import SmallConvNet

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def image_data(n: int = 16, c: int = 1, size: int = 20, num_classes: int = 4, seed: int = 0) -> ImageData:
    return make_image_data(n, num_classes, size, channels=c, seed=seed)  # tests/conftest.py


def tiny_config(**changes):
    values = {"batch_size": 4, "num_epochs": 2, "pred_steps": 2, "context_dim": 8, "time_budget_s": None,
              "recalibration_batches": 2} | changes
    return C.config_for(tiny_profile(), **values)


# ---------------------------------------------------------------- the loss against loops written here


def loop_cpc_loss(z_hat, z):
    """The slide's L_t one prediction at a time: -log(exp(ẑ_t.z_t) / (exp(ẑ_t.z_t) + sum over the other rows l))."""
    total = 0.0
    for t in range(len(z)):
        positive = math.exp(float(z_hat[t] @ z[t]))
        negatives = sum(math.exp(float(z_hat[t] @ z[j])) for j in range(len(z)) if j != t)
        total += -math.log(positive / (positive + negatives))
    return total / len(z)


@pytest.mark.parametrize("m, d", [(1, 3), (5, 4), (12, 2)])
def test_cpc_infonce_matches_the_slides_loop(m, d):
    g = torch.Generator().manual_seed(m)
    z_hat, z = torch.randn(m, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)
    loss = C.cpc_infonce(z_hat, z)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(loop_cpc_loss(z_hat, z), rel=1e-9)
    # the plain dot product of the slide: lengths matter (not a cosine)
    assert C.cpc_infonce(3 * z_hat, z).item() != pytest.approx(loss.item(), rel=1e-3) or m == 1


def test_cpc_infonce_with_a_few_negatives_is_the_loop_over_each_group():
    g = torch.Generator().manual_seed(7)
    z_hat, z = torch.randn(11, 3, generator=g, dtype=torch.float64), torch.randn(11, 3, generator=g, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    loss = C.cpc_infonce(z_hat, z, num_negatives=2, generator=gen)
    order = torch.randperm(11, generator=torch.Generator().manual_seed(3))[:9]  # 3 groups of 3, 2 pairs dropped
    groups = [order[i:i + 3] for i in range(0, 9, 3)]
    expected = sum(loop_cpc_loss(z_hat[idx], z[idx]) for idx in groups) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="negatives"):
        C.cpc_infonce(z_hat, z, num_negatives=11)


def test_cpc_infonce_exact_values():
    # every score equal: the loss is log N, chance among N candidates (N - 1 negatives)
    for n in (2, 7, 30):
        assert C.cpc_infonce(torch.zeros(n, 4), torch.ones(n, 4)).item() == pytest.approx(math.log(n), rel=1e-6)
        assert C.cpc_infonce(torch.ones(n, 4), torch.ones(n, 4)).item() == pytest.approx(math.log(n), rel=1e-6)
    assert C.cpc_infonce(torch.ones(12, 2), torch.ones(12, 2), num_negatives=3).item() == pytest.approx(math.log(4))
    # ẑ_t = a e_t, z = e_t: score a for the positive, 0 for each of the N - 1 negatives
    n, a = 5, 2.0
    assert C.cpc_infonce(a * torch.eye(n), torch.eye(n)).item() == pytest.approx(
        math.log(1 + (n - 1) * math.exp(-a)), rel=1e-6)


def test_cpc_mse_and_its_collapse():
    g = torch.Generator().manual_seed(0)
    z_hat, z = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    expected = sum(float(((z_hat[t] - z[t]) ** 2).sum()) for t in range(6)) / 6
    assert C.cpc_mse(z_hat, z).item() == pytest.approx(expected, rel=1e-6)
    constant = torch.full((6, 3), 0.7)  # a collapsed encoder and a predictor that outputs the constant
    assert C.cpc_mse(constant, constant).item() == 0.0  # the best MSE there is ...
    assert C.cpc_infonce(constant, constant).item() == pytest.approx(math.log(6), rel=1e-6)  # ... InfoNCE's chance


@pytest.mark.parametrize("call, match", [
    (lambda: C.cpc_infonce(torch.ones(3, 2), torch.ones(4, 2)), "both be"),
    (lambda: C.cpc_infonce(torch.ones(3), torch.ones(3)), "both be"),
    (lambda: C.cpc_infonce(torch.ones(3, 2), torch.ones(3, 2), num_negatives=0), "num_negatives"),
    (lambda: C.cpc_mse(torch.ones(3, 2), torch.ones(3, 3)), "both be"),
    (lambda: C.cut_patch_grid(torch.ones(2, 6, 6), 8, 4), "4-D"),
    (lambda: C.cut_patch_grid(torch.ones(2, 1, 6, 6), 8, 4), "do not fit"),
    (lambda: C.ContextNetwork(4, 8)(torch.ones(2, 4, 3)), "grid"),
    (lambda: C.Predictors(8, 4, 2)(torch.ones(1, 8, 4, 4), 3), "k must"),
    (lambda: C.Predictors(8, 4, 2, skip_rows=1)(torch.ones(1, 8, 5, 4), 1), "k must be in 2..3"),
    (lambda: C.Predictors(8, 4, 2, skip_rows=-1), "skip_rows"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_prediction_accuracy_and_patch_variance_match_loops():
    g = torch.Generator().manual_seed(4)
    z_hat, z = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    hits = sum(max(range(9), key=lambda j: float(z_hat[t] @ z[j])) == t for t in range(9))
    assert C.prediction_accuracy(z_hat, z).item() == pytest.approx(hits / 9)
    grid = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)  # (B, D, R, Cols)
    rows = [grid[b, :, r, c] for b in range(2) for r in range(4) for c in range(5)]  # 40 patch vectors
    mean = sum(rows) / 40
    var = sum(float(((v - mean) ** 2).sum()) for v in rows) / 40
    got_var, got_rel = C.patch_variance(grid)
    assert got_var.item() == pytest.approx(var, rel=1e-5)
    assert got_rel.item() == pytest.approx(var / (sum(float(v @ v) for v in rows) / 40), rel=1e-5)
    assert C.patch_variance(torch.ones(2, 3, 4, 5))[0].item() == 0.0  # collapsed: every patch the same z


# ---------------------------------------------------------------- patches, context, predictions


def test_patch_grid_cuts_the_patches_the_docstring_promises():
    x = torch.arange(2 * 1 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    p = C.cut_patch_grid(x, 8, 4)
    assert p.shape == (2, 6, 6, 1, 8, 8)  # (28 - 8) // 4 + 1 = 6 rows and columns
    for b, r, c in [(0, 0, 0), (1, 2, 5), (0, 5, 3)]:
        assert torch.equal(p[b, r, c], x[b, :, 4 * r:4 * r + 8, 4 * c:4 * c + 8])
    assert C.CPCConfig().grid(28) == 6 and C.CPCConfig().grid(32) == 7  # the papers' 7x7 grid on CIFAR-10


def test_encode_patches_encodes_each_patch_on_its_own():
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    x = torch.rand(2, 1, 16, 16)
    z = C.encode_patches(net, x, 8, 4)  # (2, 16, 3, 3)
    assert z.shape == (2, net.feature_dim, 3, 3)
    torch.testing.assert_close(z[1, :, 2, 0], net.forward_features(x[1:2, :, 8:16, 0:8])[0])
    pooled = C.PatchPooledEncoder(net, 8, 4)
    assert pooled.feature_dim == net.feature_dim
    torch.testing.assert_close(pooled.forward_features(x), z.mean(dim=(2, 3)))


def test_context_is_causal_in_rows():
    torch.manual_seed(0)
    g_ar = C.ContextNetwork(4, 6, layers=2)
    z = torch.randn(1, 4, 5, 5)
    c = g_ar(z)
    assert c.shape == (1, 6, 5, 5)
    changed = z.clone()
    changed[:, :, 3] += 1.0  # change row 3 only
    c2 = g_ar(changed)
    torch.testing.assert_close(c2[:, :, :3], c[:, :, :3])  # rows above do not see it
    assert not torch.allclose(c2[:, :, 3], c[:, :, 3]) and not torch.allclose(c2[:, :, 4], c[:, :, 4])


def test_predictions_line_up_with_the_patches_k_rows_below():
    torch.manual_seed(1)
    pred = C.Predictors(6, 4, 3)
    c, z = torch.randn(2, 6, 5, 3), torch.randn(2, 4, 5, 3)
    z_hat = pred(c, 2)  # (2, 4, 3, 3): from rows 0..2 for rows 2..4
    assert z_hat.shape == (2, 4, 3, 3)
    torch.testing.assert_close(z_hat[1, :, 0, 2], pred.maps[1].weight @ c[1, :, 0, 2])  # W_2 c[r=0, col=2]
    sources, positives = C.pairs_at(z, z_hat, 2)  # (2 * 3 * 3, 4) each
    assert sources.shape == positives.shape == (18, 4)
    m = 1 * 9 + 0 * 3 + 2  # image 1, source row 0, column 2
    torch.testing.assert_close(sources[m], z_hat[1, :, 0, 2])
    torch.testing.assert_close(positives[m], z[1, :, 2, 2])  # its positive: the patch 2 rows below


def test_step_trains_everything_and_logs_per_k():
    torch.manual_seed(0)
    cfg = tiny_config(flip_p=0.0)
    net = SmallConvNet(1, width=4)
    g_ar, pred = C.ContextNetwork(net.feature_dim, 8, 2), C.Predictors(8, net.feature_dim, 2)
    net.eval()  # batch norm in eval mode: the loss below can be recomputed exactly
    x = image_data(n=4).images
    out = C.cpc_step(net, g_ar, pred, cfg)(Batch(x=x, y=torch.full((4,), -1), index=torch.arange(4)))
    assert {"loss", "acc", "loss_1", "loss_2", "acc_1", "acc_2", "var", "rel_var"} <= set(out)
    z = C.encode_patches(net, x.float() / 255, 8, 4)  # (4, 16, 4, 4)
    c = g_ar(z)
    expected = sum(C.cpc_infonce(*C.pairs_at(z, pred(c, k), k)) for k in (1, 2)) / 2
    torch.testing.assert_close(out["loss"], expected)
    assert out["loss"].item() < math.log(4 * 3 * 4) + 5  # finite, of the order of chance
    out["loss"].backward()
    assert all(m.weight.grad is not None for m in (net.stages[0][0], pred.maps[0], pred.maps[1], g_ar.out))
    mse = C.cpc_step(net, g_ar, pred, cfg.replace(loss="mse"))(Batch(x=x, y=torch.zeros(4), index=torch.arange(4)))
    torch.testing.assert_close(mse["loss"], sum(C.cpc_mse(*C.pairs_at(z, pred(c, k), k)) for k in (1, 2)) / 2)


def test_skipped_rows_predict_only_the_rows_that_share_no_pixel_with_the_context():
    """skip_rows = 1, K = 2: W_2 and W_3 predict the patches 2 and 3 rows below, against a loop over the grid."""
    torch.manual_seed(0)
    cfg = tiny_config(flip_p=0.0, skip_rows=1)
    assert list(cfg.distances) == [2, 3] and list(tiny_config().distances) == [1, 2]
    net = SmallConvNet(1, width=4).eval()
    g_ar, pred = C.ContextNetwork(net.feature_dim, 8, 2), C.Predictors(8, net.feature_dim, 2, skip_rows=1)
    x = image_data(n=3, size=24).images  # a 5x5 grid of 8-px patches every 4 px
    out = C.cpc_step(net, g_ar, pred, cfg)(Batch(x=x, y=torch.full((3,), -1), index=torch.arange(3)))
    assert {"loss_2", "loss_3", "acc_2", "acc_3"} <= set(out) and not {"loss_1", "acc_1", "loss_4"} & set(out)
    with torch.no_grad():
        z = C.encode_patches(net, x.float() / 255, 8, 4).double()  # (3, D, 5, 5)
        c = g_ar(z.float()).double()
    losses = []
    for i, k in enumerate((2, 3)):  # W_k = maps[i]: from context row r to the patch k rows below, same column
        w = pred.maps[i].weight.detach().double()
        pairs = [(w @ c[b, :, r, col], z[b, :, r + k, col]) for b in range(3) for r in range(5 - k) for col in range(5)]
        sources, positives = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        assert out[f"loss_{k}"].item() == pytest.approx(loop_cpc_loss(sources, positives), rel=1e-4)
        losses.append(loop_cpc_loss(sources, positives))
    assert out["loss"].item() == pytest.approx(sum(losses) / 2, rel=1e-4)
    # the first target row begins where the source's patch ends: rows r*4..r*4+7 and (r+2)*4.. share no pixel
    assert 2 * cfg.stride >= cfg.patch_size


def test_per_patch_norm_normalises_each_patch_on_its_own():
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4)
    convs = {name: m.weight.clone() for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    x = torch.rand(6, 1, 8, 8)
    net.train()
    others = torch.cat([x[:1], torch.rand(5, 1, 8, 8)])  # patch 0 with five other patches
    with torch.no_grad():  # batch norm: patch 0's z depends on the other patches of the batch
        assert not torch.allclose(net.forward_features(others)[0], net.forward_features(x)[0], atol=1e-4)
    assert C.per_patch_norm(net) is net
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert [n.num_channels for n in norms] == [4, 8, 16, 16] and all(n.num_groups == 1 for n in norms)
    for name, m in net.named_modules():  # the convolutions (the seeded weights) are kept
        if isinstance(m, torch.nn.Conv2d):
            assert torch.equal(m.weight, convs[name])
    z = net.forward_features(x)
    torch.testing.assert_close(net.forward_features(others)[0], z[0])  # per patch: the others do not matter
    torch.testing.assert_close(net.forward_features(x[:1]), z[:1])
    torch.testing.assert_close(net.eval().forward_features(x), z)  # and training mode does not either
    h = net.stages[0][0](x)  # (6, 4, 8, 8): the first convolution; its norm against the formula, patch by patch
    norm = norms[0]
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 3.0]))
    for b in range(6):
        mean, var = h[b].mean(), h[b].var(unbiased=False)  # over the patch's channels and pixels
        expected = (h[b] - mean) / torch.sqrt(var + 1e-5) * norm.weight[:, None, None] + norm.bias[:, None, None]
        torch.testing.assert_close(norm(h)[b], expected, atol=1e-5, rtol=1e-5)




@pytest.mark.parametrize("change", [
    {"patch_size": 4}, {"stride": 0}, {"pred_steps": 0}, {"context_dim": 0}, {"context_layers": 0},
    {"loss": "l1"}, {"num_negatives": 0}, {"batch_size": 1}, {"flip_p": 1.5}, {"num_epochs": 0},
    {"lr": 0}, {"weight_decay": -1.0}, {"time_budget_s": 0}, {"recalibration_batches": -1},
    {"skip_rows": -1}, {"skip_rows": 1.0}, {"patch_norm": "group"},
])
def test_bad_config_raises_when_built(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        C.CPCConfig(**change)
    with pytest.raises(ValueError, match=next(iter(change))):
        C.config_for(get_profile("fast"), **change)


def test_config_for_resolves_every_value_and_rejects_unknown_settings():
    fast = C.config_for(get_profile("fast"))
    assert fast == C.CPCConfig(**C.CPC_CONFIGS["fast"])
    assert C.config_for(get_profile("grade")).time_budget_s == 5.0  # the grade profile's budget is smaller
    full = C.config_for(get_profile("full"))
    assert (full.pred_steps, full.batch_size, full.time_budget_s) == (5, 128, None)
    assert C.config_for(get_profile("fast"), time_budget_s=None).time_budget_s is None
    assert "pred_steps" in str(fast)
    with pytest.raises(TypeError, match="unknown CPC setting"):
        C.config_for(get_profile("fast"), pred_step=2)
    with pytest.raises(TypeError, match="Profile"):
        C.config_for("fast")
    with pytest.raises(ValueError, match="too few rows"):
        C.CPCConfig(pred_steps=6).check_image_size(28)
    C.CPCConfig(skip_rows=2).check_image_size(28)  # 6 rows: k = 3..5 fits
    with pytest.raises(ValueError, match=r"too few rows to predict 6 rows ahead \(3 skipped \+ 3 predicted\)"):
        C.CPCConfig(skip_rows=3).check_image_size(28)
    default = C.CPCConfig()
    assert (default.skip_rows, default.patch_norm, list(default.distances)) == (0, "batch", [1, 2, 3])


# ---------------------------------------------------------------- training, caching, determinism


def test_pretrain_logs_every_k_and_the_spread_of_z(cache):
    data, profile, cfg = image_data(n=16), tiny_profile(), tiny_config()
    pre = C.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)  # the rest: test_method_contract.py
    assert set(pre.heads) == {"context", "predictors"} and isinstance(pre.backbone, SmallConvNet)
    h1 = pre.history
    assert h1.steps == 2 * 4 and all(math.isfinite(v) for v in h1.losses)  # 2 epochs of 16 // 4 steps
    assert len(h1.metrics["loss_2"]) == 8 and len(h1.metrics["rel_var"]) == 8


def test_pretrain_with_skipped_rows_and_per_patch_norm(cache):
    data, profile = image_data(n=16), tiny_profile()  # 20 px: a 4x4 grid, k = 2..3
    pre = C.pretrain(data, profile, tiny_config(skip_rows=1, patch_norm="layer"), torch.device("cpu"), progress=False)
    assert {"loss_2", "loss_3", "acc_2", "acc_3"} <= set(pre.history.metrics) and "loss_1" not in pre.history.metrics
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in pre.backbone.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in pre.backbone.modules()) == 4
    assert pre.heads["predictors"].skip_rows == 1
    base = C.pretrain(data, profile, tiny_config(), torch.device("cpu"), progress=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in base.backbone.modules())  # the default keeps batch norm


def test_pretrain_rejects_small_sets_and_grids_too_short_to_predict_before_training(cache):
    with pytest.raises(ValueError, match="batch_size"):
        C.pretrain(image_data(n=3), tiny_profile(), tiny_config(), progress=False)
    with pytest.raises(ValueError, match="too few rows"):
        C.pretrain(image_data(n=8, size=12), tiny_profile(), tiny_config(), progress=False)
    with pytest.raises(ValueError, match="2 skipped"):  # 20 px: 4 rows, k = 3..4 needs 5
        C.pretrain(image_data(n=8, size=20), tiny_profile(), tiny_config(skip_rows=2), progress=False)
    assert not list(cache.glob("checkpoints/*"))


def test_full_profile_predicts_five_rows_ahead_on_the_papers_grid():
    cfg = C.config_for(get_profile("full"))
    assert cfg.grid(32) == 7 and cfg.pred_steps == 5  # run on CIFAR-shaped data in test_method_contract.py
