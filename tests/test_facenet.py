"""Behaviour tests for FaceNet (course_lib.facenet, Schroff et al. 2015): distances, the triplet loss and the
three miners against plain loops written here, the metric-learning protocol, the config and pretrain."""


import pytest
import torch
import torch.nn.functional as F
from conftest import make_image_data, tiny_profile

from course_lib import facenet as FN
from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.loader import Batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def unit_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def random_batch(n: int = 12, classes: int = 3, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, d, generator=g), dim=1)
    labels = torch.randint(0, classes, (n,), generator=g)
    return z, labels


def loop_distances(z):
    n = len(z)
    return [[sum((float(z[i, k]) - float(z[j, k])) ** 2 for k in range(z.shape[1])) for j in range(n)] for i in range(n)]


# ---------------------------------------------------------------- distances and the loss


def test_squared_distances_match_a_loop_and_lie_between_0_and_4_for_unit_vectors():
    z = unit_rows(9, 5)
    ref = torch.tensor(loop_distances(z))
    d = FN.squared_distances(z)
    torch.testing.assert_close(d, ref, atol=1e-5, rtol=0)
    assert d.min() >= 0 and d.max() <= 4 + 1e-5 and torch.allclose(d.diagonal(), torch.zeros(9), atol=1e-5)
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # the same point, orthogonal, opposite
    assert FN.squared_distances(u[:1], u).tolist() == [[0.0, 2.0, 4.0]]
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    torch.testing.assert_close(FN.squared_distances(a, b), torch.cdist(a, b).pow(2), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(0, 3), torch.zeros(3, 4, dtype=torch.long), [[1.0]]])
def test_squared_distances_reject_what_is_not_a_matrix_of_embeddings(bad):
    with pytest.raises(ValueError, match="N, D"):
        FN.squared_distances(bad)
    with pytest.raises(ValueError, match="columns"):
        FN.squared_distances(torch.zeros(2, 3), torch.zeros(2, 4))


def test_triplet_loss_matches_the_papers_sum_written_as_a_loop():
    g = torch.Generator().manual_seed(1)
    d_ap, d_an = torch.rand(20, generator=g) * 4, torch.rand(20, generator=g) * 4
    for margin in (0.0, 0.2, 1.0):
        ref = sum(max(0.0, float(p) - float(n) + margin) for p, n in zip(d_ap, d_an, strict=True)) / 20
        assert FN.triplet_loss(d_ap, d_an, margin).item() == pytest.approx(ref, abs=1e-6)
    assert FN.triplet_loss(torch.tensor([0.0]), torch.tensor([0.0]), 0.2).item() == pytest.approx(0.2)  # collapsed
    assert FN.triplet_loss(torch.tensor([0.1]), torch.tensor([0.5]), 0.2).item() == 0  # margin met: no loss
    empty = torch.zeros(0, requires_grad=True)
    assert FN.triplet_loss(empty, empty, 0.2).item() == 0
    with pytest.raises(ValueError, match="same length"):
        FN.triplet_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="margin"):
        FN.triplet_loss(torch.zeros(3), torch.zeros(3), -0.1)


# ---------------------------------------------------------------- the miners against loops


def loop_batch_all(labels):
    n = len(labels)
    return [(a, p, q) for a in range(n) for p in range(n) for q in range(n)
            if a != p and labels[a] == labels[p] and labels[q] != labels[a]]


def loop_batch_hard(d, labels):
    out = []
    for a in range(len(labels)):
        pos = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [q for q in range(len(labels)) if labels[q] != labels[a]]
        if pos and neg:
            out.append((a, max(pos, key=lambda p: d[a][p]), min(neg, key=lambda q: d[a][q])))
    return out


def loop_semi_hard(d, labels):
    out = []
    for a in range(len(labels)):
        neg = [q for q in range(len(labels)) if labels[q] != labels[a]]
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a] or not neg:
                continue
            farther = [q for q in neg if d[a][q] > d[a][p]]
            out.append((a, p, min(farther, key=lambda q: d[a][q]) if farther else max(neg, key=lambda q: d[a][q])))
    return out


def as_list(triplets):
    a, p, n = triplets
    return list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_miners_match_loops_written_from_their_definitions(seed):
    z, labels = random_batch(n=5 + 3 * seed, classes=2 + seed % 3, seed=seed)
    d = FN.squared_distances(z)
    dl, yl = d.tolist(), labels.tolist()
    assert as_list(FN.batch_all_triplets(d, labels)) == loop_batch_all(yl)
    assert as_list(FN.batch_hard_triplets(d, labels)) == loop_batch_hard(dl, yl)
    assert as_list(FN.semi_hard_triplets(d, labels)) == loop_semi_hard(dl, yl)
    for name, fn in FN.MINER_FUNCTIONS.items():
        assert as_list(FN.mine_triplets(d, labels, name)) == as_list(fn(d, labels))


def test_semi_hard_negatives_are_farther_than_the_positive_when_one_exists():
    d = torch.tensor([[0.0, 1.0, 0.5, 1.5, 3.0],  # anchor 0: positive 1 at 1.0; negatives at 0.5, 1.5, 3.0
                      [1.0, 0.0, 2.0, 2.0, 2.0],
                      [0.5, 2.0, 0.0, 1.0, 1.0],
                      [1.5, 2.0, 1.0, 0.0, 1.0],
                      [3.0, 2.0, 1.0, 1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    triplets = dict(((a, p), n) for a, p, n in as_list(FN.semi_hard_triplets(d, labels)))
    assert triplets[(0, 1)] == 3  # 1.5: the nearest negative farther than 1.0 (2 at 0.5 is harder: skipped)
    assert as_list(FN.batch_hard_triplets(d, labels))[0] == (0, 1, 2)  # batch-hard takes the hardest, 2
    assert triplets[(1, 0)] == 2  # every negative of anchor 1 at 2.0 > 1.0: the first of them
    assert triplets[(2, 3)] == 1  # positive at 1.0, negatives at 0.5 (closer) and 2.0
    d = torch.tensor([[0.0, 2.0, 1.0, 0.5], [2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [0.5, 1.0, 1.0, 0.0]])
    triplets = dict(((a, p), n) for a, p, n in as_list(FN.semi_hard_triplets(d, torch.tensor([0, 0, 1, 1]))))
    assert triplets[(0, 1)] == 2  # both negatives closer than the positive: the farther of them (1.0)


def test_anchors_without_a_positive_or_a_negative_give_no_triplet():
    d = FN.squared_distances(unit_rows(4, 3))
    for miner in FN.MINERS:
        a, p, n = FN.mine_triplets(d, torch.tensor([0, 1, 2, 3]), miner)  # nobody has a positive
        assert len(a) == len(p) == len(n) == 0
        a, p, n = FN.mine_triplets(d, torch.tensor([5, 5, 5, 5]), miner)  # nobody has a negative
        assert len(a) == 0
    a, _, _ = FN.batch_hard_triplets(d, torch.tensor([0, 0, 1, 2]))
    assert a.tolist() == [0, 1]  # anchors 2 and 3 have no positive


@pytest.mark.parametrize("miner", FN.MINERS)
def test_miners_reject_bad_input(miner):
    d = FN.squared_distances(unit_rows(4, 3))
    with pytest.raises(ValueError, match="square"):
        FN.mine_triplets(d[:3], torch.tensor([0, 0, 1, 1]), miner)
    with pytest.raises(ValueError, match="labels"):
        FN.mine_triplets(d, torch.tensor([0, 0, 1]), miner)
    with pytest.raises(ValueError, match="labels"):
        FN.mine_triplets(d, torch.tensor([0.0, 0.0, 1.0, 1.0]), miner)
    with pytest.raises(ValueError, match="miner"):
        FN.mine_triplets(d, torch.tensor([0, 0, 1, 1]), "hardest")


def test_mining_is_deterministic():
    z, labels = random_batch(n=30, classes=4, seed=7)
    d = FN.squared_distances(z)
    for miner in FN.MINERS:
        assert as_list(FN.mine_triplets(d, labels, miner)) == as_list(FN.mine_triplets(d.clone(), labels.clone(), miner))


# ---------------------------------------------------------------- the step


def test_step_is_the_triplet_loss_of_the_mined_triplets_of_the_normalised_embedding():
    from course_lib.augment import to_float
    from course_lib.models import SmallConvNet

    torch.manual_seed(0)
    backbone = SmallConvNet(1, width=4).eval()  # eval: batch norm uses its running statistics, so twice is the same
    cfg = FN.FaceNetConfig(batch_size=8, embedding_dim=6, margin=0.3, miner="semi-hard")
    head = FN.make_head(backbone.feature_dim, cfg).eval()
    data = make_image_data(12, 3, 12)
    batch = Batch(data.images, data.labels, torch.arange(12))
    out = FN.facenet_step(backbone, head, cfg)(batch)
    z = F.normalize(head(backbone.forward_features(to_float(data.images))), dim=1)
    assert torch.allclose(z.norm(dim=1), torch.ones(12), atol=1e-5)
    d = torch.tensor(loop_distances(z.detach()))
    triplets = loop_semi_hard(d.tolist(), data.labels.tolist())
    ref = sum(max(0.0, float(d[a, p] - d[a, n]) + 0.3) for a, p, n in triplets) / len(triplets)
    assert out["loss"].item() == pytest.approx(ref, abs=1e-4)
    active = sum(float(d[a, p] - d[a, n]) + 0.3 > 0 for a, p, n in triplets) / len(triplets)
    assert out["active"].item() == pytest.approx(active)
    assert out["spread"].item() == pytest.approx(float(d.sum()) / (12 * 11), abs=1e-4)
    out["loss"].backward()
    assert backbone.stages[0][0].weight.grad.abs().sum() > 0, "gradients reach the backbone"


# ---------------------------------------------------------------- the metric-learning protocol


def test_verification_pairs_are_balanced_valid_and_deterministic():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    i, j, same = FN.verification_pairs(labels, 101, seed=3)
    assert len(i) == len(j) == len(same) == 101 and int(same.sum()) == 50
    assert (i != j).all() and torch.equal(labels[i] == labels[j], same)
    i2, j2, _ = FN.verification_pairs(labels, 101, seed=3)
    assert torch.equal(i, i2) and torch.equal(j, j2)
    assert not torch.equal(i, FN.verification_pairs(labels, 101, seed=4)[0])
    with pytest.raises(ValueError, match="two classes"):
        FN.verification_pairs(torch.tensor([0, 0, 0]), 10)
    with pytest.raises(ValueError, match="num_pairs"):
        FN.verification_pairs(labels, 1)
    with pytest.raises(ValueError, match="labels"):
        FN.verification_pairs(labels.float(), 10)


def loop_auc(d, same):
    pos = [x for x, s in zip(d, same, strict=True) if s]
    neg = [x for x, s in zip(d, same, strict=True) if not s]
    return sum(1.0 if p < q else 0.5 if p == q else 0.0 for p in pos for q in neg) / (len(pos) * len(neg))


def test_roc_auc_threshold_and_accuracy_match_loops():
    g = torch.Generator().manual_seed(5)
    same = torch.rand(60, generator=g) < 0.5
    d = (torch.rand(60, generator=g) * 2 + (~same).float() * 1.0).round(decimals=1)  # overlapping, with ties
    dl, sl = d.tolist(), same.tolist()
    assert FN.roc_auc(d, same) == pytest.approx(loop_auc(dl, sl))
    t, acc = FN.best_threshold(d, same)
    best = max(sum((x <= c) == s for x, s in zip(dl, sl, strict=True)) / 60 for c in [-1.0, *dl, 9.0])
    assert acc == pytest.approx(best) and FN.verification_accuracy(d, same, t) == pytest.approx(best)
    fpr, tpr, thresholds = FN.roc_curve(d, same)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    for f, r, c in zip(fpr.tolist(), tpr.tolist(), thresholds.tolist(), strict=True):
        assert r == pytest.approx(sum(x <= c and s for x, s in zip(dl, sl, strict=True)) / sum(sl))
        assert f == pytest.approx(sum(x <= c and not s for x, s in zip(dl, sl, strict=True)) / (60 - sum(sl)))
    area = sum((fpr[k + 1] - fpr[k]) * (tpr[k + 1] + tpr[k]) / 2 for k in range(len(fpr) - 1))
    assert float(area) == pytest.approx(loop_auc(dl, sl))  # the trapezoids under the ROC are the AUC
    perfect = torch.tensor([0.1, 0.2, 1.5, 2.0])
    assert FN.roc_auc(perfect, torch.tensor([True, True, False, False])) == 1.0
    t, acc = FN.best_threshold(perfect, torch.tensor([True, True, False, False]))
    assert acc == 1.0 and 0.2 < t < 1.5
    with pytest.raises(ValueError, match="same and different"):
        FN.roc_auc(perfect, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        FN.best_threshold(perfect, torch.tensor([1, 1, 0, 0]))


def test_recall_at_k_matches_a_leave_one_out_loop():
    z, labels = random_batch(n=25, classes=4, d=3, seed=2)
    d = loop_distances(z)
    for k in (1, 3, 24):
        ref = sum(any(labels[j] == labels[q] for j in sorted((j for j in range(25) if j != q), key=lambda j: d[q][j])[:k])
                  for q in range(25)) / 25
        assert FN.recall_at_k(z, labels, (k,))[k] == pytest.approx(ref)
    with pytest.raises(ValueError, match="k must"):
        FN.recall_at_k(z, labels, (25,))
    with pytest.raises(ValueError, match="labels"):
        FN.recall_at_k(z, labels[:3])


def test_verification_report_on_embeddings_that_separate_classes():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    labels = torch.arange(80) % 4
    z = F.normalize(centres[labels] + 0.05 * torch.randn(80, 8, generator=g), dim=1)
    r = FN.verification_report(z, labels, z, labels, num_pairs=200)
    assert r["auc"] > 0.99 and r["test_accuracy"] > 0.99 and r["recall@1"] == 1.0
    assert 0 < r["threshold"] < 4 and len(r["test_distances"]) == len(r["test_same"]) == 200


def test_variant_pairs_are_each_image_with_its_other_variant_then_with_the_next_image():
    z1, z2 = unit_rows(4, 3, seed=1), unit_rows(4, 3, seed=2)
    d, same = FN.variant_pairs(z1, z2)
    ref = [float((z1[i] - z2[i]).pow(2).sum()) for i in range(4)] + \
          [float((z1[i] - z2[(i + 1) % 4]).pow(2).sum()) for i in range(4)]
    assert d.tolist() == pytest.approx(ref) and same.tolist() == [True] * 4 + [False] * 4
    with pytest.raises(ValueError, match="same shape"):
        FN.variant_pairs(z1, z2[:3])


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("change", [
    {"margin": -0.1}, {"margin": 5.0}, {"miner": "hardest"}, {"seen_classes": (1,)}, {"seen_classes": (1, 1)},
    {"seen_classes": [0, 1]}, {"seen_classes": (0, -1)}, {"batch_size": 2}, {"num_epochs": 0}, {"lr": 0},
    {"weight_decay": -1.0}, {"hidden_dim": -1}, {"embedding_dim": 0}, {"time_budget_s": 0},
    {"recalibration_batches": -1},
])
def test_bad_config_raises_when_built(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        FN.FaceNetConfig(**change)


def test_config_for_resolves_every_value_when_built():
    fast = FN.config_for(get_profile("fast"))
    assert fast == FN.FaceNetConfig(**FN.FACENET_CONFIGS["fast"])
    assert FN.config_for(get_profile("grade")).time_budget_s == 5.0  # the grade profile's budget is smaller
    assert FN.config_for(get_profile("full")).embedding_dim == 128
    assert FN.config_for(get_profile("fast"), seen_classes=[5, 6]).seen_classes == (5, 6)
    assert "margin" in str(fast)
    with pytest.raises(TypeError, match="unknown FaceNet setting"):
        FN.config_for(get_profile("fast"), margn=0.2)


# ---------------------------------------------------------------- pretrain


def tiny_config(**changes):
    values = {"batch_size": 8, "num_epochs": 2, "embedding_dim": 8, "seen_classes": (0, 1, 2),
              "time_budget_s": None, "recalibration_batches": 2} | changes
    return FN.config_for(tiny_profile(), **values)


def test_pretrain_trains_on_the_seen_classes_only_to_a_unit_embedding(cache):
    data = make_image_data(40, 4, 12)  # classes 0-3, ten images each; class 3 is unseen
    profile, cfg = tiny_profile(), tiny_config()
    pre = FN.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)  # the rest: test_method_contract.py
    assert set(pre.heads) == {"embedding"}
    h = pre.history
    assert h.steps == 2 * (30 // 8) and h.images == 2 * 3 * 8  # 30 seen images: 3 batches of 8 per epoch
    assert set(h.metrics) == {"loss", "active", "spread"}
    z = FN.embed_images(FN.embedder(pre), data.images)
    assert z.shape == (40, 8) and torch.allclose(z.norm(dim=1), torch.ones(40), atol=1e-5)
    FN.pretrain(data, profile, cfg.replace(miner="batch-hard"), torch.device("cpu"), progress=False)
    assert len(list(cache.glob("checkpoints/facenet-*.pt"))) == 2, "another miner, another checkpoint"


def test_pretrain_never_sees_the_unseen_classes(cache):
    """Changing the images of an unseen class changes nothing in training."""
    data = make_image_data(40, 4, 12)
    other = ImageData(data.images.clone(), data.labels, data.classes)
    other.images[data.labels == 3] = 7
    cfg = tiny_config(num_epochs=1)
    a = FN.pretrain(data, tiny_profile(), cfg, torch.device("cpu"), progress=False)
    for p in list(cache.glob("checkpoints/facenet-*.pt")):
        p.unlink()
    b = FN.pretrain(other, tiny_profile(), cfg, torch.device("cpu"), progress=False)
    assert a.history.losses == b.history.losses
    assert torch.equal(a.backbone.stages[0][0].weight, b.backbone.stages[0][0].weight)


def test_pretrain_rejects_missing_classes_and_too_few_seen_images_before_training(cache):
    data = make_image_data(40, 4, 12)
    with pytest.raises(ValueError, match="batch_size"):
        FN.pretrain(data, tiny_profile(), tiny_config(batch_size=31), progress=False)
    with pytest.raises(ValueError, match="seen_classes"):
        FN.pretrain(data, tiny_profile(), tiny_config(seen_classes=(0, 7)), progress=False)
    assert not list(cache.glob("checkpoints/*"))


def test_full_profile_embeds_in_128_dimensions(cache):
    full = get_profile("full")
    cfg = FN.config_for(full, batch_size=8, num_epochs=1, recalibration_batches=1)
    assert (cfg.embedding_dim, cfg.seen_classes) == (128, (0, 1, 2, 3, 4))
    pre = FN.pretrain(make_image_data(24, 10, 32, channels=3), full, cfg, torch.device("cpu"), progress=False)
    z = FN.embed_images(FN.embedder(pre), make_image_data(4, 2, 32, channels=3).images)
    assert z.shape == (4, 128)
