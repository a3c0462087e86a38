"""Figures the notebooks share: image grids, loss curves, label efficiency, embeddings, retrieval.

Every function draws on a new matplotlib figure and returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib.evaluate import Evaluation


def _as_hwc(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W[, 3]) float for imshow."""
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (1 or 3, H, W), got {tuple(img.shape)}")
    img = img.detach().cpu()
    img = img.float() / 255 if img.dtype == torch.uint8 else img.float().clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor | Sequence[torch.Tensor], titles: Sequence[str] | None = None,
                ncols: int = 8, scale: float = 1.4, suptitle: str | None = None) -> plt.Figure:
    """A grid of images (N, C, H, W), uint8 or float in [0, 1], with optional titles."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {n} images but {len(titles)} titles")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.3 if titles else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_as_hwc(images[i]), cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_losses(curves: dict[str, Sequence[float]], smooth: int = 20, chance: float | None = None,
                ylabel: str = "loss") -> plt.Figure:
    """Training curves (one per name), smoothed by a running mean; ``chance`` draws a dashed line."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        v = np.asarray(values, dtype=float)
        if len(v) >= smooth > 1:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
        ax.plot(v, label=name)
    if chance is not None:
        ax.axhline(chance, ls="--", c="gray", label="chance")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_label_efficiency(evaluations: Sequence[Evaluation], all_labels: int | None = None) -> plt.Figure:
    """Probe accuracy against labels per class, one line per method (the label-efficiency curve)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in evaluations:
        budgets = list(e.probe)
        x = [all_labels if b == "all" else int(b) for b in budgets]
        if None in x:
            raise ValueError("pass all_labels (labels per class in the full set) to place the 'all' budget")
        ax.plot(x, [100 * e.probe[b] for b in budgets], marker="o", label=e.method)
    ax.set_xscale("log")
    ax.set_xlabel("labels per class (log scale)")
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_embedding(h: torch.Tensor, labels: torch.Tensor, classes: Sequence[str] | None = None,
                   method: str = "pca", title: str = "", seed: int = 0) -> plt.Figure:
    """2-D picture of features h (N, D): PCA (fast) or t-SNE (slower, shows clusters)."""
    h = h.detach().float().cpu().numpy()
    if method == "pca":
        h = h - h.mean(0)
        _, _, vt = np.linalg.svd(h, full_matrices=False)
        xy = h @ vt[:2].T
    elif method == "tsne":
        from sklearn.manifold import TSNE
        xy = TSNE(2, init="pca", random_state=seed, perplexity=30).fit_transform(h)
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    labels = labels.cpu().numpy()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=4, label=classes[c] if classes else str(c))
    ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_title(title or f"features ({method.upper()})")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_retrieval(query_images: torch.Tensor, gallery_images: torch.Tensor, h_query: torch.Tensor,
                   h_gallery: torch.Tensor, k: int = 8, query_labels: torch.Tensor | None = None,
                   gallery_labels: torch.Tensor | None = None) -> plt.Figure:
    """Each row: a query, then its k nearest gallery images by cosine similarity (red title = other class)."""
    q = torch.nn.functional.normalize(h_query.float(), dim=1)
    g = torch.nn.functional.normalize(h_gallery.float(), dim=1)
    sim, idx = (q @ g.T).topk(k, dim=1)  # (Q, k)
    fig, axes = plt.subplots(len(q), k + 1, figsize=(1.2 * (k + 1), 1.3 * len(q)), squeeze=False)
    for r in range(len(q)):
        axes[r, 0].imshow(_as_hwc(query_images[r]), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title("query", fontsize=8)
        for j in range(k):
            ax = axes[r, j + 1]
            ax.imshow(_as_hwc(gallery_images[idx[r, j]]), cmap="gray", vmin=0, vmax=1)
            wrong = query_labels is not None and gallery_labels is not None and \
                gallery_labels[idx[r, j]] != query_labels[r]
            ax.set_title(f"{sim[r, j]:.2f}", fontsize=7, color="red" if wrong else "black")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_decision_boundaries(points: np.ndarray, labels: np.ndarray, labeled: np.ndarray,
                             predictors: dict[str, Callable[[np.ndarray], np.ndarray]],
                             scores: dict[str, float] | None = None, resolution: int = 150) -> plt.Figure:
    """The lecture's figure: unlabelled points (small, grey), labelled ones (large, coloured), and
    each strategy's decision regions, side by side."""
    pad = 0.5
    (x0, y0), (x1, y1) = points.min(0) - pad, points.max(0) + pad
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
    fig, axes = plt.subplots(1, len(predictors), figsize=(3.6 * len(predictors), 3.4), squeeze=False)
    for ax, (name, predict) in zip(axes[0], predictors.items(), strict=True):
        ax.contourf(xx, yy, predict(grid).reshape(xx.shape), levels=[-0.5, 0.5, 1.5], colors=["#cfe0f5", "#f8d9c4"])
        ax.scatter(points[:, 0], points[:, 1], s=4, c="gray", alpha=0.5)
        ax.scatter(points[labeled, 0], points[labeled, 1], s=70, c=np.where(labels[labeled] == 0, "#1f5fbf", "#d9531e"),
                   edgecolors="k")
        ax.set_title(name + (f"\ntest acc {100 * scores[name]:.0f}%" if scores and name in scores else ""), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_bars(values: dict[str, Sequence[float]], categories: Sequence[str], ylabel: str = "accuracy (%)",
              chance: float | None = None, title: str = "", percent: bool = True) -> plt.Figure:
    """Grouped bars: one group per category, one bar per name in ``values`` (each a value per category).

    ``percent`` shows values in [0, 1] as %; ``chance`` (same units as the values) draws a dashed line.
    """
    for name, v in values.items():
        if len(v) != len(categories):
            raise ValueError(f"{name!r} has {len(v)} values for {len(categories)} categories")
    scale = 100 if percent else 1
    width = 0.8 / max(1, len(values))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(categories) * max(1, len(values)) + 1.5), 3.6))
    for i, (name, v) in enumerate(values.items()):
        ax.bar(np.arange(len(categories)) + (i - (len(values) - 1) / 2) * width, scale * np.asarray(v, dtype=float),
               width, label=name)
    if chance is not None:
        ax.axhline(scale * chance, ls="--", c="gray", label="chance")
    tilt = len(categories) > 5
    ax.set_xticks(np.arange(len(categories)), list(categories), rotation=30 if tilt else 0,
                  ha="right" if tilt else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
