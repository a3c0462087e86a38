"""Figures the notebooks share: image grids, loss curves, label efficiency, embeddings, retrieval.

Every function draws on a new matplotlib figure and returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")  # one per series, cycled with the colours
_LINES = ("-", "--", "-.", ":")


def _colours(n: int) -> list:
    """A colour for each of ``n`` series: the default cycle's (None) up to its ten, tab20's one each beyond."""
    return [plt.get_cmap("tab20")(i % 20) for i in range(n)] if n > 10 else [None] * n


def labelled_name(e: Evaluation) -> str:
    """A row's name in a legend; a row trained with labels says so (unless its name already does)."""
    name = e.method + (" (trained with labels)" if e.with_labels and "labels" not in e.method else "")
    return name + (" †" if e.with_labels else "")


def plot_label_efficiency(evaluations: Sequence[Evaluation], all_labels: int | None = None) -> plt.Figure:
    """Probe accuracy against labels per class, one line per method, error bars = std over label draws;
    the y axis zooms to the plotted range, the legend sits outside the axes. Each row has its own marker as
    well as its colour; rows trained with labels (the supervised baseline: its points are the networks trained
    on that many labels) are drawn dashed. The x ticks name the budgets: 10, 100 and "all" (at ``all_labels``)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = _colours(len(evaluations))
    ticks: dict[float, str] = {}
    for i, (e, colour) in enumerate(zip(evaluations, colours, strict=True)):
        budgets = list(e.probe)
        x = [all_labels if b == "all" else int(b) for b in budgets]
        if None in x:
            raise ValueError("pass all_labels (the labels per class the 'all' budget uses: the pool left by the "
                             "validation split) to place the 'all' budget")
        ticks.update({v: (f"all ({v})" if b == "all" else b) for v, b in zip(x, budgets, strict=True)})
        ax.errorbar(x, [100 * e.mean(b) for b in budgets], yerr=[100 * e.std(b) for b in budgets],
                    marker=_MARKERS[i % len(_MARKERS)], capsize=3, linestyle="--" if e.with_labels else "-",
                    color=colour, label=labelled_name(e))
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [ticks[v] for v in sorted(ticks)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("labels per class (log scale)")
    ax.set_ylabel("test accuracy (%), mean ± std over label draws\n(linear probe; dashed: trained on the labels)"
                  if any(e.with_labels for e in evaluations) else "linear-probe test accuracy (%)\nmean ± std over label draws")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_compute(evaluations: Sequence[Evaluation], compute: dict[str, float], budget: str = "100",
                             xlabel: str = "pre-training compute") -> plt.Figure:
    """Probe accuracy with ``budget`` labels per class (error bars = std over label draws) against each
    method's training compute ``compute[method]`` (log scale); rows trained with labels (``with_labels``: the
    supervised baseline at its ``budget``-label training, FaceNet) as open diamonds; rows without a compute
    entry (raw pixels, random init: nothing is trained) as horizontal lines."""
    points = [e for e in evaluations if e.method in compute]
    if any(not compute[e.method] > 0 for e in points):
        raise ValueError(f"compute must be > 0 for every plotted method, got {compute}")
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = _colours(len(points))
    for i, (e, colour) in enumerate(zip(points, colours, strict=True)):  # labelled rows: open markers, dagger
        ax.errorbar([compute[e.method]], [100 * e.mean(budget)], yerr=[100 * e.std(budget)], capsize=3,
                    marker=_MARKERS[i % len(_MARKERS)], markerfacecolor="none" if e.with_labels else None,
                    color=colour, label=labelled_name(e))
    for e, style in zip([e for e in evaluations if e.method not in compute], ("--", ":", "-.", (0, (1, 4))),
                        strict=False):
        ax.axhline(100 * e.mean(budget), color="grey", linestyle=style, label=f"{e.method} (no pre-training)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20...: readable within a decade
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{xlabel} (log scale)")
    ax.set_ylabel(f"test accuracy (%), {budget} labels per class\n(linear probe; † trained on the labels)"
                  if any(e.with_labels for e in points) else f"linear-probe test accuracy (%)\n{budget} labels per class")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig


def plot_compute_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], references: dict[str, float],
                        budgets: Sequence[float] = (), labels_per_class: str = "100",
                        xlabel: str = "pre-training arithmetic, TFLOP (forward + backward)") -> plt.Figure:
    """Probe accuracy (fractions) against training compute along each method's run: ``curves[name] = (compute,
    accuracy)``, points in order, joined by a line with the method's own marker (log x); ``references`` (rows
    without pre-training, or trained with labels) as grey horizontal lines, each its own line style; ``budgets``
    as dotted vertical lines (the equal-compute readings)."""
    if not curves:
        raise ValueError("no curve to plot")
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys) or not xs or any(not x > 0 for x in xs):
            raise ValueError(f"{name}: a curve needs as many accuracies as computes (> 0), got {list(xs)}, {list(ys)}")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, ((name, (xs, ys)), colour) in enumerate(zip(curves.items(), _colours(len(curves)), strict=True)):
        ax.plot(list(xs), [100 * y for y in ys], marker=_MARKERS[i % len(_MARKERS)], color=colour, label=name)
    for (name, acc), style in zip(references.items(), ("--", ":", "-.", (0, (1, 4))), strict=False):
        ax.axhline(100 * acc, color="grey", linestyle=style, label=name)
    for b in budgets:
        ax.axvline(b, color="black", linestyle=(0, (1, 3)), linewidth=0.8)
        ax.annotate(f"{b:.2g}", (b, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{xlabel} (log scale)")
    ax.set_ylabel(f"linear-probe test accuracy (%)\n{labels_per_class} labels per class")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig


def plot_embedding(h: torch.Tensor, labels: torch.Tensor, classes: Sequence[str] | None = None,
                   method: str = "pca", title: str = "", seed: int = 0, ax: plt.Axes | None = None,
                   legend: bool = True) -> plt.Figure:
    """2-D picture of features h (N, D), one colour per class: PCA (fast; a linear view, its axes say the
    share of the variance each direction holds) or t-SNE (slower; keeps neighbourhoods, not distances).
    Draws on ``ax`` when given (e.g. two representations side by side), else on a new figure; the legend
    sits outside the points."""
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    h = h.detach().float().cpu().numpy()
    if method == "pca":
        h = h - h.mean(0)
        _, s, vt = np.linalg.svd(h, full_matrices=False)
        xy = h @ vt[:2].T
        share = s**2 / max(float((s**2).sum()), 1e-12)
        xlabel, ylabel = (f"direction {i + 1} ({100 * share[i]:.0f} % of the variance)" for i in range(2))
    else:
        from sklearn.manifold import TSNE
        xy = TSNE(2, init="pca", random_state=seed, perplexity=30).fit_transform(h)
        xlabel, ylabel = "t-SNE 1", "t-SNE 2"
    labels = labels.cpu().numpy()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 5))
    fig = ax.figure
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=4, label=classes[c] if classes else str(c))
    if legend:
        ax.legend(markerscale=3, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title or f"features ({method.upper()})")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_retrieval(query_images: torch.Tensor, gallery_images: torch.Tensor, h_query: torch.Tensor,
                   h_gallery: torch.Tensor, k: int = 8, query_labels: torch.Tensor | None = None,
                   gallery_labels: torch.Tensor | None = None) -> plt.Figure:
    """Each row: a query, then its k nearest gallery images by cosine similarity; a neighbour of another class
    has a red title marked ✗ (the sign, not the colour alone, says it)."""
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
            ax.set_title(f"{sim[r, j]:.2f}" + (" ✗" if wrong else ""), fontsize=7, color="red" if wrong else "black")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_decision_boundaries(points: np.ndarray, labels: np.ndarray, labeled: np.ndarray,
                             predictors: dict[str, Callable[[np.ndarray], np.ndarray]],
                             scores: dict[str, float] | None = None, resolution: int = 150) -> plt.Figure:
    """The lecture's figure: unlabelled points (small, grey), labelled ones (large, coloured), and
    each strategy's decision regions, side by side; the two classes differ in colour and marker (circle: class 0,
    square: class 1)."""
    pad = 0.5
    (x0, y0), (x1, y1) = points.min(0) - pad, points.max(0) + pad
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
    fig, axes = plt.subplots(1, len(predictors), figsize=(3.6 * len(predictors), 3.4), squeeze=False)
    for ax, (name, predict) in zip(axes[0], predictors.items(), strict=True):
        ax.contourf(xx, yy, predict(grid).reshape(xx.shape), levels=[-0.5, 0.5, 1.5], colors=["#cfe0f5", "#f8d9c4"])
        ax.scatter(points[:, 0], points[:, 1], s=4, c="gray", alpha=0.5)
        for cls, colour, marker in ((0, "#1f5fbf", "o"), (1, "#d9531e", "s")):
            mine = labeled[labels[labeled] == cls]
            ax.scatter(points[mine, 0], points[mine, 1], s=70, c=colour, marker=marker, edgecolors="k")
        ax.set_title(name + (f"\ntest acc {100 * scores[name]:.0f}%" if scores and name in scores else ""), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


_HATCHES = (None, "//", "..", "xx", "\\\\")  # one per series of grouped bars


def plot_bars(values: dict[str, Sequence[float]], categories: Sequence[str], ylabel: str = "accuracy (%)",
              chance: float | None = None, title: str = "", percent: bool = True,
              errors: dict[str, Sequence[float]] | None = None, sort_by: str | None = None,
              zoom: bool = False, digits: int = 1) -> plt.Figure:
    """Grouped bars: one group per category, one bar per name in ``values`` (each a value per category).

    ``percent`` shows values in [0, 1] as %; ``chance`` (same units) draws a dashed line;
    ``errors`` (same shape as ``values``) draws error bars; ``sort_by`` (a name in ``values``)
    orders the categories by that name's values, smallest first (for a claim about an ordering);
    Every bar has its value written on it (``digits`` decimals), and the y axis starts at zero, so that the
    eye reads a bar's length as its value and a 1-point gap looks like one; ``zoom`` starts the axis near the
    smallest bar instead (for values that are all far from zero, where the written numbers carry the gaps).
    Negative values (differences to a baseline) grow downwards from the zero line. Every series after the
    first is hatched, so that not the colour alone tells them apart.
    The legend sits outside the axes, where it covers no bar.
    """
    for name, v in values.items():
        if len(v) != len(categories):
            raise ValueError(f"{name!r} has {len(v)} values for {len(categories)} categories")
    for name, v in (errors or {}).items():
        if name not in values or len(v) != len(categories):
            raise ValueError(f"errors[{name!r}] must match a name of values and have {len(categories)} entries")
    order = np.arange(len(categories))
    if sort_by is not None:
        if sort_by not in values:
            raise ValueError(f"sort_by must be one of {list(values)}, got {sort_by!r}")
        order = np.argsort(np.asarray(values[sort_by], dtype=float), kind="stable")
    scale = 100 if percent else 1
    width = 0.8 / max(1, len(values))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.55 * len(categories) * max(1, len(values)) + 2.5), 3.6))
    low, high = np.inf, -np.inf
    for i, (name, v) in enumerate(values.items()):
        y = scale * np.asarray(v, dtype=float)[order]
        err = None if errors is None or name not in errors else scale * np.asarray(errors[name], dtype=float)[order]
        bars = ax.bar(np.arange(len(categories)) + (i - (len(values) - 1) / 2) * width, y, width, yerr=err,
                      capsize=2, label=name, hatch=_HATCHES[i % len(_HATCHES)], edgecolor="white" if i else None)
        for bar, v, e in zip(bars, y, np.zeros_like(y) if err is None else err, strict=True):
            if not np.isnan(v):  # the number just past the bar's end (and its error bar), outward from zero
                up = v >= 0
                ax.annotate(f"{v:.{digits}f}", (bar.get_x() + bar.get_width() / 2, v + (e if up else -e)),
                            xytext=(0, 2 if up else -2), textcoords="offset points", ha="center",
                            va="bottom" if up else "top", fontsize=7)
        low = min(low, np.nanmin(y - (err if err is not None else 0)))
        high = max(high, np.nanmax(y + (err if err is not None else 0)))
    if chance is not None:
        ax.axhline(scale * chance, ls="--", c="gray", label="chance")
        low, high = min(low, scale * chance), max(high, scale * chance)
    if zoom and np.isfinite(low) and high > low:
        pad = 0.15 * (high - low)
        ax.set_ylim(max(0.0, low - pad), high + pad)
    else:  # room above (and below) the bars for the numbers written on them
        bottom, top = ax.get_ylim()
        span = top - bottom
        ax.set_ylim(bottom - (0.08 * span if low < 0 else 0), top + 0.08 * span)
    if low < 0:
        ax.axhline(0, color="black", lw=0.8)
    tilt = len(categories) > 5
    ax.set_xticks(np.arange(len(categories)), [categories[c] for c in order], rotation=30 if tilt else 0,
                  ha="right" if tilt else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def show_patch_grid(image: torch.Tensor, corners: torch.Tensor, patch_size: int, label: int, cell: int,
                    title: str = "") -> plt.Figure:
    """The lecture's figure with real patches: the numbered 3x3 grid on ``image`` (C, S, S), float in [0, 1],
    whose cells 1..9 have their top-left corners (row, col) at ``corners`` (9, 2); the nine patches as the
    network gets them; and one pair X = (patch 5, patch ``cell``) with its label Y = ``label``."""
    from matplotlib.patches import Rectangle

    from course_lib.augment import crop_at

    if not torch.is_tensor(image) or image.dim() != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float image (C, S, S), got {getattr(image, 'dtype', type(image))} "
                         f"of shape {tuple(getattr(image, 'shape', ()))}")
    if not torch.is_tensor(corners) or corners.shape != (9, 2):
        raise ValueError(f"corners must be (9, 2): the top-left corner of each cell, got {tuple(getattr(corners, 'shape', ()))}")
    if not 1 <= cell <= 9 or cell == 5:
        raise ValueError(f"cell must be a neighbour of the centre, 1..9 but not 5, got {cell!r}")
    if not isinstance(label, int) or not 0 <= label <= 7:
        raise ValueError(f"label must be the pair's class, 0..7 (patch_position.label_to_cell gives its cell), "
                         f"got {label!r}")
    x = image[None]  # (1, C, S, S)
    patches = crop_at(x.expand(9, -1, -1, -1), corners, patch_size)  # (9, C, p, p)
    gray = {"cmap": "gray", "vmin": 0, "vmax": 1}
    fig = plt.figure(figsize=(9, 3.3))
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [3, 3, 1.2, 1.2]})
    axes[0].imshow(_as_hwc(x[0]), **gray)
    for k, (r, c) in enumerate(corners.tolist()):
        colour = "tab:orange" if k == 4 else "tab:cyan" if k + 1 == cell else "white"
        axes[0].add_patch(Rectangle((c - 0.5, r - 0.5), patch_size, patch_size, fill=False, ec=colour, lw=1.5))
        axes[0].text(c + 1, r + 1, str(k + 1), color=colour, fontsize=9, va="top", weight="bold")
    axes[0].set_title(title, fontsize=9)
    step = patch_size + 2
    mosaic = torch.ones(x.shape[1], 3 * patch_size + 4, 3 * patch_size + 4)  # white 2-px separators
    for k in range(9):
        r, c = divmod(k, 3)
        mosaic[:, r * step:r * step + patch_size, c * step:c * step + patch_size] = patches[k]
    axes[1].imshow(_as_hwc(mosaic), **gray)
    axes[1].set_title("the nine patches, side by side", fontsize=9)
    axes[2].imshow(_as_hwc(patches[4]), **gray)
    axes[2].set_title("patch 5 (centre)", fontsize=9, color="tab:orange")
    axes[3].imshow(_as_hwc(patches[cell - 1]), **gray)
    axes[3].set_title(f"patch {cell}", fontsize=9, color="tab:cyan")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"X = (patch 5, patch {cell});  Y = {label}", fontsize=11)
    fig.tight_layout()
    return fig


def plot_ab_bins(centres: torch.Tensor, values: dict[str, torch.Tensor] | None = None, lightness: float = 65.0,
                 log: Sequence[str] = ()) -> plt.Figure:
    """The quantised ab plane of colorization: one square per bin centre (Q, 2). The first panel shows
    each bin in its own colour (at L = ``lightness``); every entry of ``values`` (name -> (Q,)) adds a
    panel coloured by that value (log scale for the names in ``log``)."""
    from matplotlib.colors import LogNorm

    from course_lib.colour import lab_to_rgb

    if centres.dim() != 2 or centres.shape[1] != 2:
        raise ValueError(f"centres must be (Q, 2), got {tuple(centres.shape)}")
    values = values or {}
    for name, v in values.items():
        if v.shape != (len(centres),):
            raise ValueError(f"values[{name!r}] must have shape ({len(centres)},), got {tuple(v.shape)}")
    lab = torch.cat([torch.full((len(centres), 1), float(lightness)), centres.float().cpu()], dim=1)  # (Q, 3)
    colours = lab_to_rgb(lab.T[None, :, :, None])[0, :, :, 0].T.numpy()  # (Q, 3)
    a, b = centres[:, 0].cpu().numpy(), centres[:, 1].cpu().numpy()
    fig, axes = plt.subplots(1, 1 + len(values), figsize=(3.6 * (1 + len(values)), 3.4), squeeze=False)
    axes = axes[0]
    axes[0].scatter(a, b, c=colours, marker="s", s=22)
    axes[0].set_title(f"{len(centres)} bins (colours at L = {lightness:g})", fontsize=9)
    for ax, (name, v) in zip(axes[1:], values.items(), strict=True):
        v = v.detach().cpu().float().numpy()
        norm = LogNorm(vmin=max(v[v > 0].min(), 1e-8), vmax=v.max()) if name in log and (v > 0).any() else None
        points = ax.scatter(a, b, c=v, marker="s", s=22, cmap="viridis", norm=norm)
        fig.colorbar(points, ax=ax, fraction=0.046)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_xlabel("a (green - red)")
        ax.set_ylabel("b (blue - yellow)")
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def plot_distance_histograms(d: torch.Tensor, same: torch.Tensor, threshold: float | None = None,
                             title: str = "", max_distance: float = 4.0, bins: int = 40,
                             names: tuple[str, str] = ("same class", "different classes")) -> plt.Figure:
    """Histograms of squared distances (P,) for same pairs and different pairs (``same`` (P,) bool), on
    [0, ``max_distance``] (4: opposite unit vectors); ``threshold`` draws the decision line "same if below";
    ``names``: what a same and a different pair are (e.g. "same face", "other faces")."""
    d, same = torch.as_tensor(d).detach().float().cpu(), torch.as_tensor(same).bool().cpu()
    if d.shape != same.shape or d.dim() != 1:
        raise ValueError(f"d and same must be 1-D of the same length, got {tuple(d.shape)} and {tuple(same.shape)}")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    edges = np.linspace(0, max_distance, bins + 1)
    ax.hist(d[same].numpy(), edges, alpha=0.6, label=f"{names[0]} ({int(same.sum())} pairs)", color="tab:green")
    ax.hist(d[~same].numpy(), edges, alpha=0.6, label=f"{names[1]} ({int((~same).sum())})", color="tab:red",
            hatch="//")
    if threshold is not None:
        ax.axvline(threshold, c="black", ls="--", label=f"threshold {threshold:.2f}")
    ax.set_xlim(0, max_distance)
    ax.set_xlabel("squared distance between the two embeddings (0 = identical, 4 = opposite)")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_roc(curves: dict[str, tuple[Sequence[float], Sequence[float]]], title: str = "") -> plt.Figure:
    """ROC curves, one per name: (false-positive rates, true-positive rates), with the chance diagonal."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):  # a line style each: not the colour alone
        ax.plot(np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float), label=name, ls=_LINES[i % len(_LINES)])
    ax.plot([0, 1], [0, 1], ls="--", c="gray", label="chance")
    ax.set_xlabel("false-positive rate (different pairs called same)")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
