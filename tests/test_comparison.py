"""Notebook 10's comparison (course_lib.comparison): the registry against the notebooks, the table's rows
from a results store (missing, empty, malformed), FLOP counting and the achieved GFLOP/s."""

import json
import math
import re
from pathlib import Path

import nbformat
import pytest
import torch

from course_lib import comparison
from course_lib.comparison import BASELINES, METHODS, Method
from course_lib.config import get_profile
from course_lib.evaluate import Evaluation
from course_lib.results import format_table, load_rows, results_path, save_results

ROOT = Path(__file__).resolve().parents[1]


def row(method: str, acc: float = 0.7, images: int = 1000, seconds: float = 5.0) -> Evaluation:
    return Evaluation(method, probe={"10": [acc - 0.1, acc - 0.08, acc - 0.12], "100": [acc, acc + 0.01, acc - 0.01],
                                     "all": [acc + 0.05]}, knn=acc, finetune=[acc - 0.1] * 3,
                      compute={"images": images, "steps": images // 100, "seconds": seconds})


# ------------------------------------------------------------------ FLOPs


def test_flops_of_a_linear_step_are_exact():
    """A linear layer y = x W^T + b on a batch (B, in): 2 B in out FLOPs forward (a multiply and an add per
    weight and example); backward, the gradient of W is one more product of that size and the gradient of x
    another, so 3x in all -- 2x when x needs no gradient (the first layer of a network)."""
    B, n_in, n_out = 8, 5, 3
    layer = torch.nn.Linear(n_in, n_out)
    forward = 2 * B * n_in * n_out
    x = torch.randn(B, n_in)
    assert comparison.count_flops(lambda: layer(x)) == forward
    assert comparison.step_flops(lambda b: layer(b).sum(), x.clone().requires_grad_()) == 3 * forward
    assert comparison.step_flops(lambda b: {"loss": layer(b).square().mean()}, x) == 2 * forward


def test_training_flops_per_image_counts_the_methods_own_step(one_thread):
    """The counter takes the step and loader that rotation.pretrain trains with, from the same seam
    (train.method_setup; nothing is trained): its count equals one rotation step built by hand on the
    first batch, divided by that batch's images."""
    from course_lib import rotation
    from course_lib.datasets import load_dataset
    from course_lib.loader import DeviceLoader
    from course_lib.models import build_backbone

    profile = get_profile("grade")
    method = next(m for m in METHODS if m.row == "rotation")
    per_image = comparison.training_flops_per_image(method, profile, torch.device("cpu"))
    cfg = rotation.config_for(profile)
    data = profile.limit(load_dataset(profile.dataset, "train"))
    backbone = build_backbone(profile, 1)
    head = rotation.make_head(backbone.feature_dim, cfg)
    batch = next(iter(DeviceLoader(data.images, None, cfg.batch_size, device="cpu", seed=0)))
    by_hand = comparison.step_flops(rotation.rotation_step(backbone, head, cfg), batch)
    assert per_image == by_hand / cfg.batch_size > 0


def test_the_supervised_baselines_flops_are_a_training_step_of_backbone_and_head(one_thread):
    """Its step: the backbone and a linear head forward, the cross-entropy's backward. Each convolution and
    the head cost their forward once more for the weights' gradient and once more for the inputs' -- except
    the first convolution, whose input (the images) needs none: 3x the forward less the first layer's share."""
    from course_lib.models import LinearHead, build_backbone

    profile = get_profile("grade")
    per_image = comparison.supervised_flops_per_image(profile, torch.device("cpu"))
    net = build_backbone(profile, 1)
    head = LinearHead(net.feature_dim, 10)
    x = torch.rand(4, 1, 28, 28)
    forward = comparison.count_flops(lambda: head(net.forward_features(x))) / 4
    first = comparison.count_flops(lambda: net.stages[0][0](x)) / 4  # the first convolution
    assert per_image == pytest.approx(3 * forward - first, rel=1e-9)


def test_training_flops_needs_a_method_that_trains_through_the_course_loop():
    with pytest.raises(ValueError, match="method contract"):
        comparison.training_flops_per_image(Method("x", "course_lib.results", "99_x"), get_profile("grade"), "cpu")


def test_achieved_gflops_and_the_compute_columns():
    assert comparison.achieved_gflops(2e9, {"images": 1000, "steps": 10, "seconds": 10.0}) == 200.0
    assert math.isnan(comparison.achieved_gflops(2e9, {"images": 0, "steps": 0, "seconds": 0.0}))
    rows = [row("random init", images=0, seconds=0.0), row("rotation", images=1000, seconds=10.0)]
    cols = comparison.compute_columns(rows, {"rotation": 2e9}, peak_gflops=800.0)
    assert cols["rotation"] == {"training TFLOP": "2.0", "GFLOP/s": "200.0", "% of peak": "25%"}
    assert cols["random init"]["GFLOP/s"] == "–"
    table = comparison.efficiency_table(rows, {"rotation": 2e9}, 800.0)
    assert table.splitlines()[2] == "| rotation | 2.000 | 1,000 | 10 | 2.0 | 200.0 | 25% |"
    with pytest.raises(ValueError, match="peak_gflops"):
        comparison.compute_columns(rows, {}, 0.0)


def test_format_table_extra_columns():
    text = format_table([row("a"), row("b")], extra={"b": {"GFLOP/s": "3.0"}})
    head, sep, a, b = text.splitlines()
    assert head.endswith("| seconds | GFLOP/s |") and sep.count("|---") == 10
    assert a.endswith("| – |") and b.endswith("| 3.0 |")


def test_matmul_peak_is_measured_once_and_cached(cache, monkeypatch):
    from course_lib import peak

    assert peak.matmul_gflops(64, repeats=2) > 0
    with pytest.raises(ValueError, match="size"):
        peak.matmul_gflops(0)
    calls = []
    monkeypatch.setattr(peak, "matmul_gflops", lambda n, **kw: calls.append(n) or float(n))
    first = peak.machine_peak(1)
    assert first["gflops"] == max(peak.PEAK_SIZES["cpu"]) and first["threads"] == 1
    assert peak.machine_peak(1) == first and len(calls) == len(peak.PEAK_SIZES["cpu"])  # cached


# ------------------------------------------------------------------ the registry against the notebooks


def notebook_code(name: str) -> str:
    path = ROOT / "notebooks" / f"{name}.ipynb"
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


EVALUATE_AND_SAVE = re.compile(r'evaluate_and_save\(\s*(?:method=)?("[^"]*"|None), (?:encoder=)?(\w+), (?:train_data=)?(\w+), '
                               r'(?:test_data=)?(\w+),\s*(?:profile=)?profile,\s*(?:device=)?device,\s*'
                               r'source="([^"]+)"(?:,\s*with_labels=True)?(?:,\s*show=(?:True|False))?\)')


@pytest.mark.parametrize("method", METHODS, ids=[m.row for m in METHODS])
def test_registry_entry_matches_its_notebook(method):
    """What train_row does for a missing row is what the entry's notebook does: its module follows the method
    contract, and the notebook pre-trains with config_for(profile) on the entry's data, loads the protocol's data
    with evaluation_data (through the entry's inputs function, if any), and evaluates and saves the row in one
    call, evaluate_and_save, under the entry's name with the entry's notebook as source."""
    module = method.load()
    assert callable(module.config_for) and callable(module.pretrain) and callable(module.setup)
    code = notebook_code(method.notebook)
    [(row, pre, x, y, source)] = EVALUATE_AND_SAVE.findall(code)
    assert (row, source) == (f'"{method.row}"', method.notebook)
    name = method.module.rsplit(".", 1)[1]
    [alias] = re.findall(rf"from course_lib import (?:\w+, )*{name}(?: as (\w+))?(?:, \w+)*\n", code)
    alias = alias or name
    [(data, cfg)] = re.findall(rf"\n{pre} = {alias}\.pretrain\((\w+), profile, (\w+), device\)", code)
    assert re.search(rf"\n{cfg} = {alias}\.config_for\(profile\)\s", code)  # the profile's config, no overrides
    assert re.findall(r"\ntrain_data, test_data = evaluation_data\(profile\)", code) == ["\ntrain_data, test_data = evaluation_data(profile)"]
    if method.data is None:
        assert data == "train_data"  # pre-trained on the protocol's training images
    else:
        dataset = {"config": f"{cfg}.pretrain_dataset"}.get(method.data, f'"{method.data}"')
        assert f'\n{data} = profile.limit(load_dataset({dataset}, "train"))' in "\n" + code
    if method.inputs:
        assert callable(getattr(module, method.inputs))
        assert f"{x}, {y} = {alias}.{method.inputs}(train_data), {alias}.{method.inputs}(test_data)" in code
    else:
        assert (x, y) == ("train_data", "test_data")


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_evaluate_through_the_one_call(path):
    """No notebook writes out the evaluation glue itself: the protocol's data come from evaluation_data, rows are
    saved by evaluate_and_save (notebooks 01-09, once each, with the notebook's own name as source) and tables are
    rendered by the library (results.markdown_table, show_table); nothing but the graded test cells (their
    honesty checks) imports from the instructor tools."""
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"\b(save_results|format_table|compare_with_baselines)\b", code)
    assert "load_dataset(profile.dataset" not in code
    assert not re.search(r'Markdown\(\s*f?"\|', code) and '"|---' not in code  # no table built by hand
    calls = EVALUATE_AND_SAVE.findall(code)
    if path.stem == "10_comparison":
        assert calls == []  # it only reads the store
    else:
        assert [source for *_, source in calls] == [path.stem]
        assert (calls[0][0] == "None") == (path.stem == "01_learning_paradigms")  # 01 saves the baselines alone
    def graded_test(cell) -> bool:
        grading = cell.metadata.get("nbgrader", {})
        return grading.get("grade", False) and not grading.get("solution", False)

    lecture = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not graded_test(c))
    assert "course_lib.tools" not in lecture, "the lecture's cells read only the lecture side of course_lib"


def test_registry_names_are_unique_and_lecture_ordered():
    assert len({m.row for m in METHODS}) == len(METHODS) and not {m.row for m in METHODS} & set(BASELINES)
    with pytest.raises(ValueError, match="unique"):
        comparison.collect(get_profile(), methods=[*METHODS, METHODS[0]], train_missing=False)


# ------------------------------------------------------------------ the table's rows from a results store


METHODS_ABC = (Method("b method", "course_lib.rotation", "05_b"), Method("a method", "course_lib.rotation", "03_a"))


def fake_baselines(profile, device):
    supervised = Evaluation("supervised (labels only)", {"10": [0.7] * 3, "100": [0.84] * 3, "all": [0.9]},
                            compute={"images": 1000, "steps": 10, "seconds": 1.0}, kind="supervised")
    return [row("raw pixels", 0.69, 0, 0.0), row("random init", 0.68, 0, 0.0), supervised]


def test_empty_store_lists_every_row_missing(tmp_path):
    got = comparison.collect(get_profile(), methods=METHODS_ABC, folder=tmp_path, train_missing=False)
    assert got.rows == [] and got.trained == []
    assert got.missing == ["raw pixels", "random init", "supervised (labels only)", "a method", "b method"]
    assert not results_path("fast", tmp_path).exists()


def test_missing_rows_are_trained_once_saved_and_said(tmp_path):
    trained, said = [], []

    def fake_train(method, profile, device):
        trained.append(method.row)
        return row(method.row, 0.75)

    save_results(row("a method", 0.72), "fast", tmp_path, source="03_a")
    save_results(row("extra", 0.5), "fast", tmp_path, source="09_extra")  # a notebook not registered yet
    got = comparison.collect(get_profile(), methods=METHODS_ABC, folder=tmp_path, train=fake_train,
                             compute_baselines=fake_baselines, say=said.append)
    assert trained == ["b method"] and got.trained == ["raw pixels", "random init", "supervised (labels only)",
                                                       "b method"]
    assert [r.method for r in got.rows] == ["raw pixels", "random init", "supervised (labels only)", "a method",
                                            "b method", "extra"]
    assert got.sources == {"raw pixels": "10_comparison", "random init": "10_comparison",
                           "supervised (labels only)": "10_comparison", "a method": "03_a",
                           "b method": "10_comparison", "extra": "09_extra"}
    assert got.row("supervised (labels only)").kind == "supervised" and math.isnan(got.row("supervised (labels only)").knn)
    assert got.row("a method").mean("100") == pytest.approx(0.72) and got.missing == []
    assert any("b method: missing from the results store" in line for line in said)
    stored = load_rows("fast", tmp_path)
    assert stored["b method"]["source"] == "10_comparison" and stored["a method"]["source"] == "03_a"

    def no_training(*args):
        raise AssertionError("nothing should train when every row is stored")

    again = comparison.collect(get_profile(), methods=METHODS_ABC, folder=tmp_path, train=no_training,
                               compute_baselines=no_training, say=None)
    assert again.trained == [] and again.rows == got.rows


def test_a_method_trained_with_labels_is_marked_so(tmp_path):
    """FaceNet's entry says it trains with labels: its row is of kind "supervised" whatever its notebook saved,
    and only such a row may leave kNN unmeasured."""
    labelled = Method("c method", "course_lib.rotation", "09_c", labels=True)
    save_results(row("c method"), "fast", tmp_path, source="09_c")
    got = comparison.collect(get_profile(), methods=[labelled], folder=tmp_path, train_missing=False)
    assert got.row("c method").kind == "supervised"
    comparison.check_row("s", Evaluation("s", {"10": [0.7]}, compute=row("x").compute, kind="supervised"), ["10"])
    with pytest.raises(ValueError, match="kNN accuracy must lie in"):
        comparison.check_row("s", Evaluation("s", {"10": [0.7]}, compute=row("x").compute), ["10"])


def test_a_trainer_must_return_the_methods_row(tmp_path):
    with pytest.raises(ValueError, match="must give its Evaluation row"):
        comparison.collect(get_profile(), methods=METHODS_ABC[:1], folder=tmp_path, compute_baselines=fake_baselines,
                           train=lambda m, p, d: row("something else"), say=None)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["probe"].update({"all": [1.7]}), "probe accuracies with all labels must lie in"),
    (lambda r: r["probe"].pop("100"), "no probe accuracy with 100 labels"),
    (lambda r: r.update(knn=-0.1), "kNN accuracy must lie in"),
    (lambda r: r["compute"].pop("seconds"), r"compute\['seconds'\] must be a number"),
    (lambda r: r.update(method="other"), "holds the evaluation of 'other'"),
])
def test_a_malformed_row_is_a_clear_error(tmp_path, change, message):
    save_results([row("a method")], "fast", tmp_path, source="03_a")
    path = results_path("fast", tmp_path)
    rows = json.loads(path.read_text())
    change(rows["a method"])
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=message) as info:
        comparison.collect(get_profile(), methods=METHODS_ABC, folder=tmp_path, train_missing=False)
    assert "'a method'" in str(info.value) and "03_a" in str(info.value) and str(path) in str(info.value)


def test_a_store_that_is_not_a_results_file_is_a_clear_error(tmp_path):
    path = results_path("fast", tmp_path)
    path.write_text('{"a method": {"probe": {}}}')  # no method, no knn
    with pytest.raises(ValueError, match="not a valid results file"):
        comparison.collect(get_profile(), methods=METHODS_ABC, folder=tmp_path, train_missing=False)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a valid results file"):
        comparison.collect(get_profile(), methods=METHODS_ABC, folder=tmp_path, train_missing=False)


def test_plot_accuracy_against_compute():
    from course_lib.plots import plot_accuracy_vs_compute

    rows = [row("random init"), row("a method"), row("b method", 0.8)]
    fig = plot_accuracy_vs_compute(rows, {"a method": 1e12, "b method": 3e12}, xlabel="training FLOPs")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_lines()) >= 3
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["a method", "b method",
                                                                         "random init (no pre-training)"]
    with pytest.raises(ValueError, match="compute must be > 0"):
        plot_accuracy_vs_compute(rows, {"a method": 0.0})
    labelled = row("supervised", 0.9)
    labelled.kind = "supervised"
    fig = plot_accuracy_vs_compute([*rows, labelled], {"a method": 1e12, "supervised": 2e11})
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert "supervised (trained with labels) †" in legend and "a method" in legend
    lines = {c.get_label(): c[0] for c in fig.axes[0].containers}  # errorbar containers: (line, caps, bars)
    assert lines["supervised (trained with labels) †"].get_markerfacecolor() == "none"  # open: trained with labels
    assert lines["a method"].get_marker() != lines["supervised (trained with labels) †"].get_marker()
    assert "† trained on the labels" in fig.axes[0].get_ylabel()


def test_make_bench_prints_the_achieved_gflops_against_the_peak(cache, monkeypatch, capsys, one_thread):
    """`python -m course_lib bench --efficiency` (and `make bench`, after the notebooks) prints notebook 10's
    compute table from the results store: here a stored rotation row, its FLOPs counted, a fixed peak."""
    from course_lib import peak
    from course_lib.tools import bench
    from course_lib.tools.cli import main

    assert bench.training_efficiency() == ""  # nothing stored yet
    assert main(["bench", "--efficiency"]) == 1 and "run the notebooks first" in capsys.readouterr().out
    monkeypatch.setattr(peak, "matmul_gflops", lambda n, **kw: 1000.0)
    save_results(row("rotation", images=10_000, seconds=20.0), "fast", source="03_rotation")
    per_image = comparison.flops_per_image([m for m in METHODS if m.row == "rotation"], get_profile())["rotation"]
    assert main(["bench", "--efficiency"]) == 0
    out = capsys.readouterr().out
    rate = per_image * 10_000 / 20.0 / 1e9
    assert "Machine peak: 1000.0 GFLOP/s" in out
    assert f"| rotation | {per_image / 1e9:.3f} | 10,000 | 20 |" in out and f"| {rate:.1f} | {rate / 10:.0f}% |" in out


def test_pretraining_data_from_the_entry_the_config_or_the_profile():
    profile = get_profile("grade")
    assert Method("a", "course_lib.rotation", "03_a").dataset(profile) == profile.dataset
    assert Method("a", "course_lib.rotation", "03_a", data="photos").dataset(profile) == "photos"

    class WithData:
        pretrain_dataset = "photos"

    assert Method("a", "course_lib.rotation", "03_a", data="config").dataset(profile, WithData()) == "photos"
    with pytest.raises(ValueError, match="pretrain_dataset"):
        Method("a", "course_lib.rotation", "03_a", data="config").dataset(profile)  # RotationConfig has none
    photos = comparison.pretrain_data(Method("a", "course_lib.rotation", "03_a", data="photos"), profile)
    assert photos.images.shape[1] == 3 and len(photos) <= 50 * photos.num_classes


# ------------------------------------------------------------------ accuracy against compute


def test_at_budget_reads_the_curve_linearly_in_log_flops_and_never_extrapolates():
    points = [{"images": 100, "probe": 0.5}, {"images": 400, "probe": 0.6}, {"images": 1600, "probe": 0.8}]
    read = lambda flops: comparison.at_budget(points, 10.0, flops)  # noqa: E731 -- 1e3, 4e3 and 1.6e4 FLOPs
    assert read(2e3) == pytest.approx(0.55)  # halfway between 1e3 and 4e3 on a log axis
    assert read(8e3) == pytest.approx(0.7)
    assert read(4e3) == pytest.approx(0.6) and read(1e3) == pytest.approx(0.5) and read(1.6e4) == pytest.approx(0.8)
    assert math.isnan(read(999.0)) and math.isnan(read(1.7e4))  # before the first point, after the run's end
    assert read(1.6e4 * (1 + 1e-12)) == pytest.approx(0.8) and read(1e3 * (1 - 1e-12)) == pytest.approx(0.5)  # rounding
    assert comparison.at_budget(points[:1], 10.0, 1e3) == 0.5 and math.isnan(comparison.at_budget(points[:1], 10.0, 2e3))
    with pytest.raises(ValueError, match="order"):
        comparison.at_budget(points[::-1], 10.0, 2e3)
    with pytest.raises(ValueError, match="> 0"):
        comparison.at_budget(points, 0.0, 2e3)


def test_equal_budgets_are_the_smallest_and_the_median_of_the_methods_own_budgets():
    end = lambda images: [{"images": images // 4}, {"images": images}]  # noqa: E731 -- a run's last point is its own
    flops = {"a": 10.0, "b": 20.0, "c": 5.0}
    curves = {"a": end(100), "b": end(100), "c": end(1000)}  # own budgets 1e3, 2e3 and 5e3 FLOPs
    assert comparison.equal_budgets(curves, flops) == [1e3, 2e3]
    assert comparison.equal_budgets({"a": end(100), "b": end(100)}, flops) == [1e3, 1.5e3]  # median of two: their mean
    assert comparison.equal_budgets({"a": end(100)}, flops) == [1e3]  # smallest and median coincide: one budget
    with pytest.raises(KeyError, match=r"no FLOPs per image for \['d'\]"):
        comparison.equal_budgets({**curves, "d": end(10)}, flops)
    with pytest.raises(ValueError, match="at least one"):
        comparison.equal_budgets({}, flops)


def test_a_curve_reads_each_copy_along_the_run_as_the_table_reads_its_end(one_thread, tmp_path, monkeypatch):
    """comparison.curve on rotation (grade profile: a few steps): one point per copy the run kept, read as the
    table reads an encoder (evaluate_features on the features of the re-estimated copy, protocol_features, for
    the curves' one label budget), then the run's end from the table's row -- the same reading of the final
    backbone as the curve's own; in order of images seen; cached; a row of another run is refused."""
    from course_lib import evaluate as E

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    profile, cpu = get_profile("grade"), torch.device("cpu")
    rotation = next(m for m in METHODS if m.row == "rotation")
    pre = comparison.pretrained(rotation, profile, cpu, progress=False)
    train, test = comparison.evaluation_data(profile, rotation)
    row = E.evaluate("rotation", pre.backbone, train, test, profile, finetune=False, compute=pre.history.compute())
    points = comparison.curve(rotation, profile, row, cpu)
    assert len(pre.along) >= 1 and len(points) == len(pre.along) + 1 and points[-1]["images"] == pre.history.images
    assert [p["images"] for p in points] == sorted(p["images"] for p in points)
    assert [p["steps"] for p in points[:-1]] == [mark["steps"] for mark, _ in pre.along]
    assert comparison.curve_budget(profile) == 10  # the grade profile has no 100-label budget
    protocol = E.protocol_for(profile, labels_per_class=(10,))
    for point, (_, backbone) in zip([*points[:-1], points[-1]], [*pre.along, (None, pre.backbone)], strict=True):
        h_train, h_test = E.protocol_features(backbone, train, test, protocol)
        by_hand = E.evaluate_features("rotation", h_train, train.labels, h_test, test.labels, protocol)
        assert (point["probe"], point["probe_std"], point["knn"]) == (by_hand.mean("10"), by_hand.std("10"), by_hand.knn)
    monkeypatch.setattr(E, "evaluate_features", lambda *a: pytest.fail("cached: nothing is measured again"))
    assert comparison.curve(rotation, profile, row, cpu) == points
    row.compute["images"] += 1
    with pytest.raises(ValueError, match="rerun notebook 03_rotation"):
        comparison.curve(rotation, profile, row, cpu)
    with pytest.raises(ValueError, match="rotation"):
        comparison.curve(rotation, profile, Evaluation("exemplar"), cpu)


def test_plot_compute_curves_draws_each_run_as_a_line_with_its_own_marker():
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_compute_curves

    fig = plot_compute_curves({"a": ([0.1, 0.4, 1.6], [0.7, 0.72, 0.75]), "b": ([0.5, 2.0], [0.71, 0.8])},
                              {"random init": 0.74, "raw pixels": 0.8}, budgets=[0.4, 1.6])
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert ax.get_xscale() == "log"
    assert list(lines["a"].get_xdata()) == [0.1, 0.4, 1.6] and list(lines["a"].get_ydata()) == pytest.approx([70, 72, 75])
    assert lines["a"].get_marker() != lines["b"].get_marker()
    assert lines["random init"].get_linestyle() != lines["raw pixels"].get_linestyle()
    assert [t.get_text() for t in ax.texts] == ["0.4", "1.6"]  # the equal-compute budgets, marked
    plt.close(fig)
    with pytest.raises(ValueError, match="as many accuracies"):
        plot_compute_curves({"a": ([0.1, 0.0], [0.7, 0.8])}, {})
    with pytest.raises(ValueError, match="no curve"):
        plot_compute_curves({}, {})
