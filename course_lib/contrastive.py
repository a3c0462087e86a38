"""The course's one contrastive loss: InfoNCE, and SimCLR's NT-Xent built on it.

InfoNCE (van den Oord et al. 2018, "Representation learning with contrastive
predictive coding", eq. 4) -- the lecture's noise-contrastive loss: a *source*
(query) vector must pick its *positive* among the positive and a set of
*negatives*,

    L = -log( exp(q . k+ / t) / (exp(q . k+ / t) + sum_l exp(q . k_l / t)) ),

a softmax cross-entropy whose correct class is the positive. With N candidates,
the loss at chance is log N, and log N - L is a lower bound on the mutual
information between query and positive (their eq. 5): more negatives let the loss
certify more.

Used by CPC (notebook 07: source = the predicted patch embedding, positive = the
true one, negatives = other patches), SimCLR (notebook 08, :func:`nt_xent`) and
the toy of notebook 01 (source = a point, positive = its neighbour).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(query: Tensor, positive: Tensor, negatives: Tensor | None = None, temperature: float = 1.0,
             normalize: bool = True) -> Tensor:
    """Mean InfoNCE loss of ``query[i]`` picking ``positive[i]``.

    The candidates of row i are every row of ``positive`` (the other rows are in-batch
    negatives) followed by every row of ``negatives`` (extra negatives, if given).

    Args:
        query: (N, D) sources; or (G, N, D): G independent groups, each query's candidates
            are the positives (and extra negatives) of its own group only -- how CPC sets the
            number of negatives without changing the batch.
        positive: (N, D) their positives (or (G, N, D)); row j != i is a negative of query i.
        negatives: (M, D) extra negatives shared by every query (or (G, M, D), per group), or None.
        temperature: the logits are divided by it.
        normalize: compare unit vectors (cosine similarity, as SimCLR); False keeps the plain dot
            product ẑᵀz of the CPC slide.
    """
    if query.dim() not in (2, 3) or positive.shape != query.shape:
        raise ValueError(f"query and positive must both be (N, D) or both (G, N, D), got {tuple(query.shape)} and "
                         f"{tuple(positive.shape)}")
    if negatives is not None and (negatives.dim() != query.dim() or negatives.shape[-1] != query.shape[-1]
                                  or negatives.shape[:-2] != query.shape[:-2]):
        want = f"(M, {query.shape[-1]})" if query.dim() == 2 else f"({query.shape[0]}, M, {query.shape[-1]})"
        raise ValueError(f"negatives must be {want}, got {tuple(negatives.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    keys = positive if negatives is None else torch.cat([positive, negatives], dim=-2)  # (..., N + M, D)
    if normalize:
        query, keys = F.normalize(query, dim=-1), F.normalize(keys, dim=-1)
    logits = query @ keys.transpose(-1, -2) / temperature  # (..., N, N + M): column i of row i is the positive
    n = query.shape[-2]
    target = torch.arange(n, device=query.device).repeat(logits.numel() // (n * logits.shape[-1]))  # (G * N,)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, eq. 1), averaged over its 2N terms.

    ``z1[i]`` and ``z2[i]`` are the projections of two views of image i. Every one of the
    2N views is a query; its positive is the other view of its image, and the 2N - 2 views
    of the other images are its negatives:

        l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k=1}^{2N} 1[k != i] exp(sim(z_i, z_k) / t) ),

    with sim the cosine similarity.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, D), unit length
    sim = z @ z.T / temperature  # (2N, 2N)
    not_self = ~torch.eye(2 * n, dtype=torch.bool, device=z.device)  # the indicator 1[k != i]
    sim = sim.masked_fill(~not_self, float("-inf"))  # exp(-inf) = 0: a view is not its own negative
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # (2N,): j(i)
    return F.cross_entropy(sim, positive)
