"""Behaviour tests for the shared figures (course_lib.plots) and the knob helper (course_lib.widgets)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from course_lib.evaluate import Evaluation  # noqa: E402
from course_lib.plots import (  # noqa: E402
    plot_decision_boundaries,
    plot_embedding,
    plot_label_efficiency,
    plot_losses,
    plot_retrieval,
    show_images,
)
from course_lib.widgets import slider_plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def uint8_images(n: int, c: int = 1, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)


# ---------------------------------------------------------------- plots


@pytest.mark.parametrize("n,ncols,grid", [(5, 3, (2, 3)), (4, 8, (1, 4)), (1, 8, (1, 1)), (16, 8, (2, 8))])
def test_show_images_grid(n, ncols, grid):
    fig = show_images(uint8_images(n), ncols=ncols)
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == grid[0] * grid[1]
    assert sum(len(ax.images) for ax in fig.axes) == n  # spare cells stay empty


def test_show_images_scales_uint8_and_float_the_same_way():
    img = uint8_images(2, c=3)
    shown_u8 = show_images(img).axes[0].images[0].get_array()
    shown_float = show_images(img.float() / 255).axes[0].images[0].get_array()
    assert shown_u8.shape == (8, 8, 3)
    np.testing.assert_allclose(shown_u8, img[0].permute(1, 2, 0).numpy() / 255, atol=1e-6)
    np.testing.assert_allclose(shown_float, shown_u8, atol=1e-6)


def test_show_images_titles():
    fig = show_images(uint8_images(3), titles=["a", "b", "c"], suptitle="grid")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert fig._suptitle.get_text() == "grid"


def test_show_images_rejects_mismatched_titles():
    with pytest.raises(ValueError, match="3 images but 2 titles"):
        show_images(uint8_images(3), titles=["a", "b"])


@pytest.mark.parametrize("images", [
    torch.zeros(2, 2, 8, 8, dtype=torch.uint8),  # two channels
    torch.zeros(2, 8, 8),  # no channel axis
    torch.zeros(2, 4, 8, 8),  # RGBA
])
def test_show_images_rejects_bad_shapes(images):
    with pytest.raises(ValueError, match=r"shape \(1 or 3, H, W\)"):
        show_images(images)


def test_show_images_rejects_nothing_to_show():
    with pytest.raises(ValueError, match="no images"):
        show_images(torch.zeros(0, 1, 8, 8))


def test_plot_losses_one_line_per_curve_smoothed():
    losses = list(np.linspace(2, 1, 50))
    fig = plot_losses({"rotation": losses, "simclr": [3.0, 2.0, 1.0]}, smooth=10, chance=np.log(4))
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"rotation", "simclr", "chance"}
    assert len(lines["rotation"].get_ydata()) == 50 - 10 + 1  # running mean, 'valid' part
    assert lines["rotation"].get_ydata()[0] == pytest.approx(np.mean(losses[:10]))
    assert list(lines["simclr"].get_ydata()) == [3.0, 2.0, 1.0]  # shorter than the window: left as is
    assert lines["chance"].get_ydata()[0] == pytest.approx(np.log(4))


def test_plot_label_efficiency_places_the_all_budget_with_error_bars():
    rows = [Evaluation("a", {"10": [0.5, 0.6], "100": [0.6], "all": [0.7]}, 0.6),
            Evaluation("b", {"10": [0.4], "all": [0.8]}, 0.7)]
    fig = plot_label_efficiency(rows, all_labels=600)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    containers = {c.get_label(): c for c in ax.containers}
    line_a, _, (bars_a,) = containers["a"]
    assert list(line_a.get_xdata()) == [10, 100, 600]
    assert list(line_a.get_ydata()) == pytest.approx([55, 60, 70])  # means over the draws
    segments = bars_a.get_segments()  # one vertical bar per point: mean ± std
    assert segments[0][:, 1] == pytest.approx([55 - 100 * np.std([0.5, 0.6], ddof=1), 55 + 100 * np.std([0.5, 0.6], ddof=1)])
    assert list(containers["b"][0].get_xdata()) == [10, 600]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "100", "all (600)"]  # the budgets, by name
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1  # outside the axes, covering no data
    with pytest.raises(ValueError, match="all_labels"):
        plot_label_efficiency(rows)


def test_eleven_rows_get_eleven_colours_and_a_labelled_row_says_so_once():
    rows = [Evaluation(f"m{i}", {"10": [0.5], "100": [0.6]}, 0.6) for i in range(10)]
    rows.append(Evaluation("supervised (labels only)", {"10": [0.7], "100": [0.8]}, kind="supervised"))
    ax = plot_label_efficiency(rows).axes[0]
    colours = {tuple(c[0].get_color()) if not isinstance(c[0].get_color(), str) else c[0].get_color()
               for c in ax.containers}
    assert len(colours) == 11, "the default cycle has ten colours: the eleventh row must not reuse the first's"
    assert "supervised (labels only) †" in [t.get_text() for t in ax.get_legend().get_texts()]  # not "(... with labels)"
    markers = [c[0].get_marker() for c in ax.containers]
    assert len(set(markers[:11])) == 11, "every row its own marker: the colour is not the only thing that tells them apart"


def test_plot_bars_sorts_writes_values_and_starts_at_zero():
    from course_lib.plots import plot_bars

    fig = plot_bars({"acc": [0.9, 0.6, 0.95]}, ["x", "y", "z"], chance=None, sort_by="acc",
                    errors={"acc": [0.01, 0.02, 0.03]})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["y", "x", "z"]  # smallest first
    assert [b.get_height() for b in ax.patches] == pytest.approx([60, 90, 95])
    low, high = ax.get_ylim()
    assert low == 0 and high > 98  # a bar's length is its value: a 1-point gap looks like one
    assert [t.get_text() for t in ax.texts] == ["60.0", "90.0", "95.0"]  # each bar's number, in sorted order
    two = plot_bars({"a": [0.5, 0.6], "b": [0.4, 0.7]}, ["x", "y"]).axes[0]
    assert [b.get_hatch() for b in two.patches] == [None, None, "//", "//"]  # the second series is hatched
    zoomed = plot_bars({"acc": [0.9, 0.6, 0.95]}, ["x", "y", "z"], zoom=True).axes[0].get_ylim()
    assert 40 < zoomed[0] < 58  # zoom=True: the axis starts near the smallest bar
    with pytest.raises(ValueError, match="sort_by"):
        plot_bars({"acc": [1, 2, 3]}, ["x", "y", "z"], sort_by="nope")
    with pytest.raises(ValueError, match="errors"):
        plot_bars({"acc": [1, 2, 3]}, ["x", "y", "z"], errors={"acc": [1]})


def test_plot_bars_draws_differences_below_a_zero_line():
    from course_lib.plots import plot_bars

    ax = plot_bars({"gain": [0.03, -0.01]}, ["a", "b"], ylabel="points over random init").axes[0]
    low, high = ax.get_ylim()
    assert low < -1 < 3 < high
    assert [t.get_text() for t in ax.texts] == ["3.0", "-1.0"]
    assert any(list(line.get_ydata()) == [0, 0] for line in ax.lines)  # the zero line the bars grow from


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_plot_embedding_one_axis_one_group_per_class(method):
    g = torch.Generator().manual_seed(0)
    n = 40 if method == "tsne" else 12
    h = torch.randn(n, 6, generator=g)
    labels = torch.arange(n) % 3
    with threadpool_limits(1):  # t-SNE's OpenMP threads crawl on a busy 2-core machine
        fig = plot_embedding(h, labels, classes=["x", "y", "z"], method=method)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.collections) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y", "z"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == n


def test_plot_embedding_pca_uses_the_top_two_directions():
    # most variance along feature 0, the rest along feature 1 (orthogonal, zero-mean columns)
    h = torch.zeros(20, 4)
    h[:, 0] = torch.linspace(-10, 10, 20)
    h[:, 1] = torch.tensor([1.0, -1.0, -1.0, 1.0]).repeat(5)
    fig = plot_embedding(h, torch.zeros(20, dtype=torch.long))
    xy = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(np.abs(xy[:, 0]), np.abs(h[:, 0].numpy()), atol=1e-4)
    np.testing.assert_allclose(np.abs(xy[:, 1]), np.abs(h[:, 1].numpy()), atol=1e-4)
    var0, var1 = float((h[:, 0] ** 2).sum()), float((h[:, 1] ** 2).sum())  # the axes give each direction's share
    assert fig.axes[0].get_xlabel() == f"direction 1 ({100 * var0 / (var0 + var1):.0f} % of the variance)"
    assert fig.axes[0].get_ylabel() == f"direction 2 ({100 * var1 / (var0 + var1):.0f} % of the variance)"


def test_plot_embedding_draws_side_by_side_on_given_axes():
    fig, axes = plt.subplots(1, 2)
    for ax, legend in zip(axes, (False, True), strict=True):
        assert plot_embedding(torch.randn(9, 3), torch.arange(9) % 3, ax=ax, legend=legend) is fig
    assert axes[0].get_legend() is None and len(axes[1].get_legend().get_texts()) == 3
    assert all(len(ax.collections) == 3 for ax in axes)
    plt.close(fig)


def test_plot_embedding_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="'pca' or 'tsne'"):
        plot_embedding(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), method="umap")


def test_show_patch_grid_draws_the_grid_its_patches_and_the_pair_with_the_lecture_label():
    from course_lib.plots import show_patch_grid

    image = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(0))
    corners = torch.tensor([[r, c] for r in (0, 10, 20) for c in (1, 11, 21)])  # cells 1..9, reading order
    fig = show_patch_grid(image, corners, 8, label=3, cell=4, title="30-px image")
    assert fig._suptitle.get_text() == "X = (patch 5, patch 4);  Y = 3"
    grid, mosaic, centre, neighbour = fig.axes
    assert grid.get_title() == "30-px image" and len(grid.patches) == 9 and len(grid.texts) == 9
    np.testing.assert_allclose(centre.get_images()[0].get_array(), image[0, 10:18, 11:19].numpy())
    np.testing.assert_allclose(neighbour.get_images()[0].get_array(), image[0, 10:18, 1:9].numpy())  # cell 4
    assert mosaic.get_images()[0].get_array().shape == (28, 28)  # 3 patches of 8 and two 2-px separators


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(1, 30, 30, dtype=torch.uint8), torch.zeros(9, 2, dtype=torch.long), 8, 3, 4), "float image"),
    ((torch.rand(1, 30, 30), torch.zeros(8, 2, dtype=torch.long), 8, 3, 4), r"corners must be \(9, 2\)"),
    ((torch.rand(1, 30, 30), torch.zeros(9, 2, dtype=torch.long), 8, 3, 5), "neighbour of the centre"),
    ((torch.rand(1, 30, 30), torch.full((9, 2), 25), 8, 3, 4), "outside"),
    ((torch.rand(1, 30, 30), torch.zeros(9, 2, dtype=torch.long), 8, 8, 4), "label must be the pair's class, 0..7"),
    ((torch.rand(1, 30, 30), torch.zeros(9, 2, dtype=torch.long), 8, -1, 4), "label must be"),
])
def test_show_patch_grid_rejects_what_it_cannot_draw(args, message):
    from course_lib.plots import show_patch_grid

    with pytest.raises(ValueError, match=message):
        show_patch_grid(*args)


def test_plot_retrieval_rows_are_queries_and_neighbours_by_cosine():
    gallery = uint8_images(6)
    h_gallery = torch.eye(6)
    h_query = torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    queries = uint8_images(2)
    labels_g = torch.tensor([0, 0, 1, 1, 2, 2])
    fig = plot_retrieval(queries, gallery, h_query, h_gallery, k=2, query_labels=torch.tensor([1, 0]),
                         gallery_labels=labels_g)
    assert len(fig.axes) == 2 * (2 + 1)
    axes = np.array(fig.axes).reshape(2, 3)
    # query 0: gallery 2 (cos 0.89), then 3 (cos 0.45); query 1: gallery 0, then 5
    np.testing.assert_allclose(axes[0, 1].images[0].get_array(), gallery[2, 0].numpy() / 255, atol=1e-6)
    np.testing.assert_allclose(axes[0, 2].images[0].get_array(), gallery[3, 0].numpy() / 255, atol=1e-6)
    np.testing.assert_allclose(axes[1, 1].images[0].get_array(), gallery[0, 0].numpy() / 255, atol=1e-6)
    assert axes[0, 1].get_title() == f"{2 / 5 ** 0.5:.2f}"
    assert axes[1, 1].title.get_color() == "black" and axes[1, 2].title.get_color() == "red"
    assert axes[1, 2].get_title().endswith(" ✗") and "✗" not in axes[1, 1].get_title()  # a sign, not colour alone


def test_plot_decision_boundaries_one_panel_per_strategy():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 2)).astype(np.float32)
    labels = (points[:, 0] > 0).astype(int)
    predictors = {"left/right": lambda p: (p[:, 0] > 0).astype(int), "all zero": lambda p: np.zeros(len(p), int)}
    fig = plot_decision_boundaries(points, labels, np.array([0, 1, 2]), predictors, scores={"left/right": 0.97},
                                   resolution=20)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "left/right\ntest acc 97%"
    assert fig.axes[1].get_title() == "all zero"
    labelled = fig.axes[0].collections[-2:]  # one scatter per class: its own marker, not only its own colour
    assert [len(c.get_offsets()) for c in labelled] == [int((labels[[0, 1, 2]] == k).sum()) for k in (0, 1)]
    assert labelled[0].get_paths()[0] != labelled[1].get_paths()[0]


def test_plot_distance_histograms_names_its_pairs_and_bins_to_the_axis():
    from course_lib.plots import plot_distance_histograms

    d, same = torch.tensor([0.1, 0.2, 0.5, 0.7]), torch.tensor([True, True, False, False])
    ax = plot_distance_histograms(d, same, 0.3, max_distance=0.8, bins=8, names=("same face", "other faces")).axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"same face (2 pairs)", "other faces (2)"}
    assert ax.get_xlim()[1] <= 0.85


# ---------------------------------------------------------------- widgets


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, **values):
        self.calls.append(values)
        fig, ax = plt.subplots()
        ax.set_title(str(values))
        return fig


def controls_of(box):
    return {c.description: c for c in box.children[0].children}


def test_slider_plot_draws_once_with_initial_values_then_on_change():
    draw = Recorder()
    box = slider_plot(draw, labels=(1, 20, 1), temperature=(0.05, 1.0, 0.05), method=["pca", "tsne"])
    assert draw.calls == [{"labels": 1, "temperature": 0.05, "method": "pca"}]
    controls = controls_of(box)
    assert type(controls["labels"]).__name__ == "IntSlider"
    assert type(controls["temperature"]).__name__ == "FloatSlider"
    assert type(controls["method"]).__name__ == "Dropdown"
    assert (controls["labels"].min, controls["labels"].max, controls["labels"].step) == (1, 20, 1)
    controls["labels"].value = 7
    assert draw.calls[-1] == {"labels": 7, "temperature": 0.05, "method": "pca"}
    controls["method"].value = "tsne"
    assert len(draw.calls) == 3
    assert draw.calls[-1] == {"labels": 7, "temperature": 0.05, "method": "tsne"}
    assert plt.get_fignums() == []  # each drawn figure is shown and closed, not leaked


def test_slider_plot_accepts_a_draw_that_returns_nothing():
    calls = []
    slider_plot(lambda k: calls.append(k), k=(1, 3, 1))
    assert calls == [1]


@pytest.mark.parametrize("spec", [(1, 2), "abc", 5, (1, 2, 3, 4), {"a": 1}])
def test_bad_knob_spec_is_a_type_error(spec):
    draw = Recorder()
    with pytest.raises(TypeError, match="knob 'x'"):
        slider_plot(draw, x=spec)
    assert draw.calls == []


def test_slider_plot_needs_a_knob():
    with pytest.raises(ValueError, match="at least one knob"):
        slider_plot(Recorder())


def test_headless_slider_plot_shows_the_figure_without_a_live_widget(monkeypatch):
    """Executed by the course's tools (COURSE_HEADLESS=1): one plain figure output, no Output widget."""
    shown = []
    monkeypatch.setattr("course_lib.widgets.display", shown.append)
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    draw = Recorder()
    assert slider_plot(draw, labels=(1, 20, 1), method=["pca", "tsne"]) is None
    assert draw.calls == [{"labels": 1, "method": "pca"}]
    assert len(shown) == 1 and isinstance(shown[0], plt.Figure)
    assert plt.get_fignums() == []
    with pytest.raises(TypeError, match="knob 'x'"):  # bad input is still refused before drawing
        slider_plot(draw, x=(1, 2))


def test_live_slider_plot_puts_the_figure_in_an_output_widget(monkeypatch):
    import ipywidgets

    shown = []
    monkeypatch.setattr("course_lib.widgets.display", shown.append)
    monkeypatch.setenv("COURSE_HEADLESS", "0")
    box = slider_plot(Recorder(), labels=(1, 20, 1))
    assert shown[-1] is box and isinstance(box.children[1], ipywidgets.Output)


def test_distance_histograms_and_roc_draw_what_they_are_given():
    from course_lib.plots import plot_distance_histograms, plot_roc

    d, same = torch.tensor([0.1, 0.2, 0.3, 2.0, 3.5]), torch.tensor([True, True, True, False, False])
    fig = plot_distance_histograms(d, same, threshold=1.1)
    ax = fig.axes[0]
    heights = [sum(p.get_height() for p in c) for c in ax.containers]
    assert heights == [3, 2] and ax.get_xlim() == (0.0, 4.0)
    assert [line.get_xdata()[0] for line in ax.lines] == [1.1]
    with pytest.raises(ValueError, match="same length"):
        plot_distance_histograms(d, same[:3])
    fig = plot_roc({"a": ([0, 0.5, 1], [0, 0.9, 1]), "b": ([0, 0.2, 1], [0, 0.6, 1])})
    assert [line.get_label() for line in fig.axes[0].lines] == ["a", "b", "chance"]
    assert fig.axes[0].lines[0].get_linestyle() != fig.axes[0].lines[1].get_linestyle()  # not the colour alone
    plt.close("all")
