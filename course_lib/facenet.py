"""FaceNet: an embedding trained with the triplet loss (Schroff, Kalenichenko & Philbin, CVPR 2015).

"FaceNet: a unified embedding for face recognition and clustering": a batch of images goes
through a deep CNN, then L2 normalisation, giving embeddings f(x) on the unit sphere; the
triplet loss pulls an *anchor* x_a towards a *positive* x_p of the same identity and pushes it
away from a *negative* x_n of another identity, until the negative is farther by a margin alpha
(their eq. 1 and 2):

    ||f(x_a) - f(x_p)||^2 + alpha < ||f(x_a) - f(x_n)||^2,
    L = sum_i [ ||f(x_a^i) - f(x_p^i)||^2 - ||f(x_a^i) - f(x_n^i)||^2 + alpha ]_+ .

It is **supervised** metric learning: who is the same identity comes from labels. What it
shares with exemplar (notebook 02) and SimCLR (08) is the shape of the task -- an embedding
trained by comparing positives with negatives -- where those two take their positives from
augmentations of one image instead.

Which triplets to train on is *mining*, done here online inside each batch from the squared
distances (the paper's sec. 3.2): :func:`batch_all_triplets` (every valid triplet),
:func:`batch_hard_triplets` (each anchor with its farthest positive and nearest negative,
Hermans et al. 2017) and :func:`semi_hard_triplets` (the paper's choice: every positive pair
with the nearest negative that is still farther than the positive).

The metric-learning protocol judges the embedding on classes it never saw in training
(:func:`verification_pairs`, :func:`roc_curve`, :func:`roc_auc`, :func:`best_threshold`,
:func:`recall_at_k`), as a face system is judged on people it never saw.

The method contract (``docs/adding-a-method.md``): :class:`FaceNetConfig` (built by
:func:`config_for`), the loss (:func:`triplet_loss`, with :func:`squared_distances` and the
miners), the step (:func:`facenet_step`) and :func:`pretrain`, which returns a
``train.Pretrained`` with the embedding head in ``heads["embedding"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import models
from course_lib.augment import to_float
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.datasets import ImageData
from course_lib.models import Backbone
from course_lib.train import (
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    seeded_backbone,
)

MINERS = ("batch-all", "batch-hard", "semi-hard")
MAX_SQUARED_DISTANCE = 4.0  # ||u - v||^2 = 2 - 2 u.v for unit vectors: 0 (same point) to 4 (opposite points)


@dataclass(frozen=True)
class FaceNetConfig(Settings):
    """FaceNet's hyperparameters: every value here is the value used (see :func:`config_for`)."""

    margin: float = 0.2  # alpha of the triplet loss (the paper's 0.2), in squared distance on the unit sphere
    miner: str = "semi-hard"  # which triplets of a batch train: "batch-all", "batch-hard" or "semi-hard"
    seen_classes: tuple[int, ...] = (0, 1, 2, 3, 4)  # labels used in training; the others are kept unseen
    batch_size: int = 128  # images per step; every class appears many times, so each anchor has positives
    num_epochs: int = 5  # passes over the images of the seen classes
    lr: float = 2e-3  # AdamW learning rate
    weight_decay: float = 5e-4
    hidden_dim: int = 0  # head h -> embedding: 0 = one linear layer, else an MLP with this many hidden units
    embedding_dim: int = 64  # size of the embedding f(x) (the paper: 128)
    time_budget_s: float | None = None  # stop after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        check_number(self.margin, "margin", 0, MAX_SQUARED_DISTANCE)
        if self.miner not in MINERS:
            raise ValueError(f"miner must be one of {MINERS}, got {self.miner!r}")
        seen = self.seen_classes
        if not isinstance(seen, tuple) or len(seen) < 2 or len(set(seen)) != len(seen) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in seen):
            raise ValueError(f"seen_classes must be a tuple of at least two distinct class indices >= 0, got {seen!r}")
        check_int(self.batch_size, "batch_size", minimum=3)  # an anchor, a positive and a negative
        check_int(self.num_epochs, "num_epochs")
        check_number(self.lr, "lr", 1e-12, 10.0)
        check_number(self.weight_decay, "weight_decay", 0, math.inf)
        check_int(self.hidden_dim, "hidden_dim", minimum=0)
        check_int(self.embedding_dim, "embedding_dim")
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)


# Per-profile values (the dataclass defaults are the fast profile's). Fast (Fashion-MNIST, small CNN,
# 2-core CPU): five seen classes (T-shirt, trouser, pullover, dress, coat), 5,000 images, 5 epochs of
# 39 steps: about 20 s per run on an idle core, so the three miners of notebook 09 cost about a minute.
# Full (CIFAR-10, ResNet-18, a GPU): the paper's 128-d embedding, longer training.
FACENET_CONFIGS: dict[str, dict] = {
    "fast": {"time_budget_s": 60.0},
    "full": {"batch_size": 256, "num_epochs": 30, "lr": 1e-3, "weight_decay": 1e-4, "embedding_dim": 128},
    "grade": {"num_epochs": 1},
}


def config_for(profile: Profile, **overrides) -> FaceNetConfig:
    """FaceNet's configuration for ``profile`` (by name; ``fast``'s values for an unknown name), with overrides."""
    if isinstance(overrides.get("seen_classes"), list):
        overrides = {**overrides, "seen_classes": tuple(overrides["seen_classes"])}
    return config_from_table(FaceNetConfig, FACENET_CONFIGS, profile, overrides, "FaceNet")


# --------------------------------------------------------------------------- distances, the loss, the miners


def _check_embeddings(z: Tensor, name: str = "z") -> None:
    if not torch.is_tensor(z) or not z.is_floating_point() or z.dim() != 2 or len(z) == 0:
        raise ValueError(f"{name} must be a non-empty float tensor (N, D), got "
                         f"{getattr(z, 'dtype', type(z).__name__)} of shape {tuple(getattr(z, 'shape', ()))}")


def squared_distances(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances ||a_i - b_j||^2 between the rows of a (N, D) and b (M, D) -> (N, M).

    ``b=None``: between the rows of ``a``. For L2-normalised rows this is 2 - 2 a_i.b_j, from 0
    (the same direction) to 4 (opposite directions). Computed as ||a||^2 + ||b||^2 - 2 a.b, clamped at 0.
    """
    _check_embeddings(a, "a")
    b = a if b is None else b
    _check_embeddings(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of columns, got {tuple(a.shape)} and {tuple(b.shape)}")
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T  # (N, M)
    return d.clamp_min(0)


def triplet_loss(d_ap: Tensor, d_an: Tensor, margin: float = 0.2) -> Tensor:
    """FaceNet's triplet loss (eq. 2), averaged over triplets: mean_i [d_ap_i - d_an_i + margin]_+.

    ``d_ap`` (T,) squared anchor-positive distances, ``d_an`` (T,) squared anchor-negative ones.
    No triplet (T = 0) gives 0.
    """
    if not torch.is_tensor(d_ap) or not torch.is_tensor(d_an) or d_ap.dim() != 1 or d_ap.shape != d_an.shape:
        raise ValueError(f"d_ap and d_an must be 1-D tensors of the same length, got "
                         f"{tuple(getattr(d_ap, 'shape', ()))} and {tuple(getattr(d_an, 'shape', ()))}")
    check_number(margin, "margin", 0, MAX_SQUARED_DISTANCE)
    if len(d_ap) == 0:
        return d_ap.sum() + d_an.sum()  # 0, still part of the graph
    return F.relu(d_ap - d_an + margin).mean()


def _check_mining(d: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The masks every miner needs: positive pairs (same label, not the diagonal) and negative pairs (N, N)."""
    if not torch.is_tensor(d) or not d.is_floating_point() or d.dim() != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"d must be a square float matrix of distances (N, N), got "
                         f"{getattr(d, 'dtype', type(d).__name__)} of shape {tuple(getattr(d, 'shape', ()))}")
    if not torch.is_tensor(labels) or labels.dtype not in (torch.int64, torch.int32) or labels.shape != d.shape[:1]:
        raise ValueError(f"labels must be an integer tensor of shape ({len(d)},), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} of shape "
                         f"{tuple(getattr(labels, 'shape', ()))}")
    same = labels[:, None] == labels[None, :]  # (N, N)
    positive = same & ~torch.eye(len(d), dtype=torch.bool, device=d.device)
    return positive, ~same


def batch_all_triplets(d: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every valid triplet of the batch: (a, p, n) with label[a] == label[p], a != p, label[n] != label[a].

    Returns three index tensors (T,), in order of a, then p, then n. ``d`` (N, N) is only checked.
    """
    positive, negative = _check_mining(d, labels)
    valid = positive[:, :, None] & negative[:, None, :]  # (N, N, N): [a, p, n]
    a, p, n = valid.nonzero(as_tuple=True)
    return a, p, n


def batch_hard_triplets(d: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One triplet per anchor: its *farthest* positive and its *nearest* negative (Hermans et al. 2017).

    Anchors without a positive or without a negative in the batch are skipped. Ties go to the lower index.
    """
    positive, negative = _check_mining(d, labels)
    anchors = (positive.any(1) & negative.any(1)).nonzero().squeeze(1)  # (A,)
    far = d.masked_fill(~positive, -math.inf)  # (N, N): only positives compete
    near = d.masked_fill(~negative, math.inf)  # (N, N): only negatives compete
    return anchors, far[anchors].argmax(1), near[anchors].argmin(1)


def semi_hard_triplets(d: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """FaceNet's online semi-hard mining (sec. 3.2): every positive pair (a, p) with the negative n
    nearest to the anchor among those *farther* than the positive, d[a, n] > d[a, p]. Within the
    margin such a negative still gives a loss, but it is never closer than the positive -- the
    hardest negatives, which the paper found can collapse training early, are left out.

    A pair whose every negative is closer than its positive takes the farthest negative (as
    TensorFlow's ``triplet_semihard_loss`` does). Pairs of an anchor without negatives are skipped.
    Ties go to the lower index.
    """
    positive, negative = _check_mining(d, labels)
    a, p = (positive & negative.any(1, keepdim=True)).nonzero(as_tuple=True)  # (T,) each: the positive pairs
    d_an = d[a]  # (T, N): each pair's anchor against everyone
    semi = negative[a] & (d_an > d[a, p][:, None])  # (T, N): negatives farther than the positive
    nearest_semi = d_an.masked_fill(~semi, math.inf).argmin(1)  # (T,)
    farthest = d_an.masked_fill(~negative[a], -math.inf).argmax(1)  # (T,): the fallback
    n = torch.where(semi.any(1), nearest_semi, farthest)
    return a, p, n


MINER_FUNCTIONS = {"batch-all": batch_all_triplets, "batch-hard": batch_hard_triplets,
                   "semi-hard": semi_hard_triplets}


def mine_triplets(d: Tensor, labels: Tensor, miner: str) -> tuple[Tensor, Tensor, Tensor]:
    """The triplets (a, p, n) that ``miner`` ("batch-all", "batch-hard" or "semi-hard") picks from distances d."""
    if miner not in MINER_FUNCTIONS:
        raise ValueError(f"miner must be one of {MINERS}, got {miner!r}")
    return MINER_FUNCTIONS[miner](d, labels)


# --------------------------------------------------------------------------- the embedding, the step


class Embedding(nn.Module):
    """f(x): backbone -> head -> L2 normalisation, the lecture's "deep architecture + L2 + embedding"."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: Tensor) -> Tensor:  # x: uint8 or float (B, C, H, W)
        x = to_float(x) if x.dtype == torch.uint8 else x
        return F.normalize(self.head(self.backbone.forward_features(x)), dim=1)  # (B, embedding_dim), unit rows

    def forward_features(self, x: Tensor) -> Tensor:  # so that evaluate.extract_features embeds with it
        return self.forward(x)


def make_head(in_dim: int, cfg: FaceNetConfig) -> nn.Module:
    """The small head from h to the embedding (before its normalisation): linear, or an MLP with ``cfg.hidden_dim``."""
    return models.make_head(in_dim, cfg.embedding_dim, cfg.hidden_dim)


def facenet_step(backbone: Backbone, head: nn.Module, cfg: FaceNetConfig,
                 generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "active", "spread"}.

    Embeds the batch, mines triplets from the (detached) squared distances with ``cfg.miner``, and
    returns the triplet loss with two diagnostics in place of an accuracy (a triplet loss has no classes
    to be right about): ``active``, the fraction of mined triplets that violate the margin (loss > 0),
    and ``spread``, the mean squared distance between the batch's embeddings (near 0 when the embedding
    collapses to one point; about 2 for directions spread evenly over the sphere). ``generator`` is
    taken as by every step and unused: the step draws nothing at random (the batch is the loader's).
    """
    embed = Embedding(backbone, head)

    def step(batch) -> dict[str, Tensor]:
        z = embed(batch.x)  # (B, D), unit rows
        d = squared_distances(z)  # (B, B)
        a, p, n = mine_triplets(d.detach(), batch.y, cfg.miner)  # (T,) each
        d_ap, d_an = d[a, p], d[a, n]  # (T,) each
        loss = triplet_loss(d_ap, d_an, cfg.margin)
        with torch.no_grad():
            active = (d_ap - d_an + cfg.margin > 0).float().mean() if len(a) else d.new_zeros(())
            spread = d.sum() / max(1, len(d) * (len(d) - 1))
        return {"loss": loss, "active": active, "spread": spread}

    return step


# --------------------------------------------------------------------------- training


def seen_data(data: ImageData, cfg: FaceNetConfig) -> ImageData:
    """The images of ``cfg.seen_classes`` (what FaceNet trains on); labels and class names kept."""
    return data.subset(torch.isin(data.labels, torch.tensor(cfg.seen_classes, device=data.labels.device)))


def unseen_data(data: ImageData, cfg: FaceNetConfig) -> ImageData:
    """The images of every other class (what the metric-learning protocol judges the embedding on)."""
    return data.subset(~torch.isin(data.labels, torch.tensor(cfg.seen_classes, device=data.labels.device)))


def setup(train_data: ImageData, profile: Profile, cfg: FaceNetConfig, device: torch.device) -> PretrainSetup:
    """FaceNet's part of its pre-training run (``train.pretrain_method`` does the rest): the loader draws
    the images **and labels** of ``cfg.seen_classes`` only; the profile's backbone with the random-init
    baseline's weights, the embedding head, the step, AdamW at the config's own rate."""
    present = set(train_data.labels.unique().tolist())
    missing = [c for c in cfg.seen_classes if c not in present]
    if missing:
        raise ValueError(f"seen_classes {list(cfg.seen_classes)}: class(es) {missing} have no training image "
                         f"(labels present: {sorted(present)})")
    seen = seen_data(train_data, cfg)
    if len(seen) < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(seen)} images of the seen classes")
    backbone = seeded_backbone(profile, train_data.images.shape[1], device)
    head = make_head(backbone.feature_dim, cfg).to(device)

    def forward(batch) -> Tensor:  # batch-norm recalibration
        return head(backbone.forward_features(to_float(batch.x)))

    return PretrainSetup(backbone, {"embedding": head}, facenet_step(backbone, head, cfg), forward, seen.images,
                         cfg.batch_size, cfg.lr, cfg.weight_decay, labels=seen.labels, key={"seen": len(seen)})


def pretrain(train_data: ImageData, profile: Profile, cfg: FaceNetConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Train the profile's backbone and an embedding head with the triplet loss on the images **and labels**
    of ``cfg.seen_classes`` of ``train_data`` (the other classes are never looked at), cached.

    Starts from the same seeded initialisation as the random-init baseline; AdamW at ``cfg.lr``; batch
    norm recalibrated at the end. Returns ``Pretrained(backbone, history, heads={"embedding": head})``:
    ``Embedding(pre.backbone, pre.heads["embedding"])`` is f(x); the shared protocol evaluates the backbone.
    """
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)


def embedder(pre: Pretrained) -> Embedding:
    """f(x) of a FaceNet ``pretrain`` result: its backbone, its embedding head, L2 normalisation (eval mode)."""
    if not isinstance(pre, Pretrained) or "embedding" not in pre.heads:
        raise TypeError(f"expected the Pretrained of facenet.pretrain (heads['embedding']), got {type(pre).__name__}")
    return Embedding(pre.backbone, pre.heads["embedding"]).eval()


# --------------------------------------------------------------------------- the metric-learning protocol


def verification_pairs(labels: Tensor, num_pairs: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``num_pairs`` random pairs (i, j), i != j, half of the same class and half of different classes.

    Returns (i, j, same): index tensors (P,) and a bool tensor (P,) (``same[k]``: labels[i[k]] == labels[j[k]]).
    The same seed gives the same pairs.
    """
    if not torch.is_tensor(labels) or labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be a 1-D integer tensor, got {getattr(labels, 'dtype', type(labels).__name__)}")
    check_int(num_pairs, "num_pairs", minimum=2)
    labels = labels.cpu()
    counts = torch.bincount(labels - labels.min())
    if (counts >= 2).sum() < 1 or (counts > 0).sum() < 2:
        raise ValueError("labels must hold at least two classes and a class with two examples")
    g = torch.Generator().manual_seed(seed)
    n_same = num_pairs // 2
    pairs: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
    wanted = {True: n_same, False: num_pairs - n_same}
    while any(len(pairs[k]) < wanted[k] for k in pairs):
        i, j = torch.randint(0, len(labels), (2, 4 * num_pairs), generator=g)
        for a, b in zip(i.tolist(), j.tolist(), strict=True):
            s = bool(labels[a] == labels[b])
            if a != b and len(pairs[s]) < wanted[s]:
                pairs[s].append((a, b))
    both = pairs[True] + pairs[False]
    index = torch.tensor(both, dtype=torch.long)
    same = torch.tensor([True] * n_same + [False] * (num_pairs - n_same))
    return index[:, 0], index[:, 1], same


def pair_distances(z: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """Squared distances ||z_i - z_j||^2 of the pairs (i[k], j[k]) -> (P,)."""
    _check_embeddings(z)
    return (z[i] - z[j]).pow(2).sum(1)


def _check_pairs(d: Tensor, same: Tensor) -> None:
    if not torch.is_tensor(d) or not d.is_floating_point() or d.dim() != 1:
        raise ValueError(f"d must be a 1-D float tensor of pair distances, got {getattr(d, 'shape', type(d).__name__)}")
    if not torch.is_tensor(same) or same.dtype != torch.bool or same.shape != d.shape:
        raise ValueError(f"same must be a bool tensor of shape {tuple(d.shape)}, got "
                         f"{getattr(same, 'dtype', type(same).__name__)} {tuple(getattr(same, 'shape', ()))}")
    if not same.any() or same.all():
        raise ValueError("the pairs must include same and different pairs")


def roc_curve(d: Tensor, same: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ROC of the rule "same iff d <= t" over every threshold t: (false-positive rate, true-positive rate,
    thresholds), each (K + 1,) from (0, 0) at t = -inf up to (1, 1) at the largest distance."""
    _check_pairs(d, same)
    t = torch.cat([torch.tensor([-math.inf]), d.detach().float().cpu().unique()])  # sorted
    s = same.cpu()
    dd = d.detach().float().cpu()
    accepted = dd[None, :] <= t[:, None]  # (K + 1, P)
    tpr = (accepted & s).sum(1) / s.sum()
    fpr = (accepted & ~s).sum(1) / (~s).sum()
    return fpr, tpr, t


def roc_auc(d: Tensor, same: Tensor) -> float:
    """Area under the ROC: the probability that a random same pair is closer than a random different pair
    (ties count one half)."""
    _check_pairs(d, same)
    d = d.detach().double().cpu()
    pos, neg = d[same.cpu()], d[~same.cpu()]
    closer = (pos[:, None] < neg[None, :]).double().sum() + 0.5 * (pos[:, None] == neg[None, :]).double().sum()
    return float(closer / (len(pos) * len(neg)))


def verification_accuracy(d: Tensor, same: Tensor, threshold: float) -> float:
    """Fraction of pairs the rule "same iff d <= threshold" classifies correctly."""
    _check_pairs(d, same)
    return float(((d.detach().cpu() <= threshold) == same.cpu()).float().mean())


def best_threshold(d: Tensor, same: Tensor) -> tuple[float, float]:
    """The threshold on squared distance with the best accuracy on these (validation) pairs, and that accuracy.

    Candidates: the midpoints between consecutive distinct distances (and below / above all of them);
    among equally good ones the smallest.
    """
    _check_pairs(d, same)
    values = d.detach().double().cpu().unique()  # sorted
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
    dd, s = d.detach().double().cpu(), same.cpu()
    acc = ((dd[None, :] <= candidates[:, None]) == s).double().mean(1)  # (K,)
    best = int(acc.argmax())  # the first (smallest) of the best
    return float(candidates[best]), float(acc[best])


def recall_at_k(z: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Retrieval recall@k (leave one out): for each row as a query, is one of its k nearest *other* rows
    (squared distance) of its class? The fraction of queries for which it is, for each k."""
    _check_embeddings(z)
    if not torch.is_tensor(labels) or labels.shape != (len(z),):
        raise ValueError(f"labels must have shape ({len(z)},), got {tuple(getattr(labels, 'shape', ()))}")
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k < len(z) for k in ks):
        raise ValueError(f"every k must be an int between 1 and {len(z) - 1}, got {ks!r}")
    d = squared_distances(z.float()).fill_diagonal_(math.inf)  # a query is not its own neighbour
    nearest = d.topk(max(ks), dim=1, largest=False).indices  # (N, max k)
    hit = labels[nearest] == labels[:, None]  # (N, max k)
    return {k: float(hit[:, :k].any(1).float().mean()) for k in ks}


def variant_pairs(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs from two variants of each of N images, embedded as z1 (N, D) and z2 (N, D): the N same pairs
    (z1[i], z2[i]), then the N different pairs (z1[i], z2[i + 1 mod N]). Returns (squared distances (2N,),
    same (2N,) bool)."""
    _check_embeddings(z1, "z1")
    if not torch.is_tensor(z2) or z2.shape != z1.shape or len(z1) < 2:
        raise ValueError(f"z1 and z2 must have the same shape (N >= 2, D), got {tuple(z1.shape)} and "
                         f"{tuple(getattr(z2, 'shape', ()))}")
    n = len(z1)
    d = torch.cat([(z1 - z2).pow(2).sum(1), (z1 - z2.roll(-1, 0)).pow(2).sum(1)])  # (2N,)
    return d, torch.arange(2 * n) < n


@torch.no_grad()
def embed_images(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Embeddings (N, D) of uint8 images (N, C, H, W) by ``model`` (an :class:`Embedding`), in eval mode, on the CPU."""
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {getattr(images, 'dtype', type(images))}")
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])
    finally:
        model.train(was)


def verification_report(z_val: Tensor, y_val: Tensor, z_test: Tensor, y_test: Tensor, num_pairs: int = 2000,
                        seed: int = 0, ks: tuple[int, ...] = (1, 5)) -> dict:
    """The metric-learning protocol on embeddings of unseen classes: a threshold chosen on validation pairs,
    its accuracy on test pairs, the test pairs' ROC AUC and recall@k on the test images. Plain numbers
    (JSON-ready), with the test pairs' distances and labels for histograms."""
    vi, vj, v_same = verification_pairs(y_val, num_pairs, seed)
    ti, tj, t_same = verification_pairs(y_test, num_pairs, seed + 1)
    d_val, d_test = pair_distances(z_val, vi, vj), pair_distances(z_test, ti, tj)
    threshold, val_acc = best_threshold(d_val, v_same)
    recalls = recall_at_k(z_test, y_test, ks)
    return {"threshold": threshold, "val_accuracy": val_acc,
            "test_accuracy": verification_accuracy(d_test, t_same, threshold), "auc": roc_auc(d_test, t_same),
            **{f"recall@{k}": r for k, r in recalls.items()},
            "test_distances": d_test.tolist(), "test_same": t_same.tolist()}
