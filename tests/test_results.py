"""Behaviour tests for the results store (course_lib.results) that notebook 10 reads."""

import json

import pytest

from course_lib.evaluate import Evaluation
from course_lib.results import (
    drop_rows,
    format_table,
    gains,
    load_results,
    results_path,
    row_line,
    save_results,
)


def row(method: str, p10: float, p100: float, pall: float, knn: float) -> Evaluation:
    return Evaluation(method, {"10": p10, "100": p100, "all": pall}, knn)


def test_save_then_load_round_trip(tmp_path):
    rows = [row("rotation", 0.5, 0.6, 0.7, 0.65), row("simclr", 0.61, 0.72, 0.8123, 0.79)]
    path = save_results(rows, "fast", tmp_path, source="08_simclr.ipynb")
    assert path == results_path("fast", tmp_path) == tmp_path / "results-fast.json"
    loaded = load_results("fast", tmp_path)
    assert loaded == {"rotation": rows[0], "simclr": rows[1]}
    stored = json.loads(path.read_text())
    assert stored["simclr"]["source"] == "08_simclr.ipynb"
    assert stored["simclr"]["saved"]  # a timestamp


def test_a_row_keeps_the_code_it_was_computed_with_and_rows_can_be_dropped(tmp_path):
    path = save_results([row("a", 0.1, 0.2, 0.3, 0.4), row("b", 0.5, 0.6, 0.7, 0.8)], "fast", tmp_path,
                        code={"a": "abc123", "z": "unused"})
    stored = json.loads(path.read_text())
    assert stored["a"]["code"] == "abc123" and "code" not in stored["b"], "only the rows given a code"
    drop_rows(["a", "not stored"], "fast", tmp_path)
    assert list(load_results("fast", tmp_path)) == ["b"]
    assert json.loads(path.read_text())["b"] == stored["b"], "the other rows as they were"
    drop_rows(["b"], "full", tmp_path)  # no store of that profile: nothing to drop, nothing written
    assert not results_path("full", tmp_path).exists()


def test_profiles_have_separate_files(tmp_path):
    save_results(row("a", 0.1, 0.2, 0.3, 0.4), "fast", tmp_path)
    save_results(row("a", 0.5, 0.6, 0.7, 0.8), "full", tmp_path)
    assert load_results("fast", tmp_path)["a"].knn == 0.4
    assert load_results("full", tmp_path)["a"].knn == 0.8


def test_missing_file_means_no_results(tmp_path):
    assert load_results("fast", tmp_path) == {}


def test_saving_replaces_a_method_and_keeps_the_others(tmp_path):
    save_results([row("rotation", 0.1, 0.2, 0.3, 0.4), row("simclr", 0.5, 0.6, 0.7, 0.8)], "fast", tmp_path)
    new = row("rotation", 0.15, 0.25, 0.35, 0.45)
    save_results(new, "fast", tmp_path)
    loaded = load_results("fast", tmp_path)
    assert sorted(loaded) == ["rotation", "simclr"]
    assert loaded["rotation"] == new
    assert loaded["simclr"] == row("simclr", 0.5, 0.6, 0.7, 0.8)


def test_saving_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    save_results(row("a", 0.1, 0.2, 0.3, 0.4), "fast", tmp_path)
    path = results_path("fast", tmp_path)
    good = path.read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dumps", crash)
    with pytest.raises(KeyboardInterrupt):
        save_results(row("b", 0.1, 0.2, 0.3, 0.4), "fast", tmp_path)
    monkeypatch.undo()
    assert path.read_text() == good
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == [path.name]  # no temporary file


@pytest.mark.parametrize("content", ["{truncated", "", "not json"])
def test_corrupt_file_is_a_clear_value_error(tmp_path, content):
    path = results_path("fast", tmp_path)
    path.write_text(content)
    with pytest.raises(ValueError, match=r"results-fast\.json.*delete it"):
        load_results("fast", tmp_path)
    with pytest.raises(ValueError, match="delete it"):
        save_results(row("a", 0.1, 0.2, 0.3, 0.4), "fast", tmp_path)
    assert path.read_text() == content  # a broken file is reported, not silently overwritten


@pytest.mark.parametrize("content", ["[1, 2]", '{"a": 3}', '{"a": {"method": "a"}}'])
def test_a_file_of_the_wrong_shape_is_a_clear_value_error(tmp_path, content):
    results_path("fast", tmp_path).write_text(content)
    with pytest.raises(ValueError, match="delete it"):
        load_results("fast", tmp_path)


def test_format_table_has_one_row_per_method_with_percentages():
    rows = [row("rotation", 0.5, 0.6049, 0.7, 0.65), row("simclr", 0.61, 0.72, 0.8123, 0.7999)]
    lines = format_table(rows).splitlines()
    assert lines[0] == ("| method | probe 10/class | probe 100/class | probe all/class | kNN | LP-FT, 10 labels/class "
                        "| images seen | steps | seconds |")
    assert lines[1] == "|---" * 9 + "|"
    assert len(lines) == 2 + 2
    assert lines[2] == "| rotation | 50.0 | 60.5 | 70.0 | 65.0 | – | – | – | – |"
    assert lines[3] == "| simclr | 61.0 | 72.0 | 81.2 | 80.0 | – | – | – | – |"


def test_format_table_shows_mean_and_std_over_draws_fine_tuning_and_compute():
    e = Evaluation("rotation", {"10": [0.5, 0.6, 0.7], "all": [0.8]}, 0.75, finetune=[0.6, 0.62, 0.64],
                   compute={"images": 9984, "steps": 312, "seconds": 41.6})
    line = format_table([e]).splitlines()[2]
    # mean ± sample std (std of 0.5, 0.6, 0.7 is 0.1; of 0.6, 0.62, 0.64 is 0.02)
    assert line == "| rotation | 60.0 ± 10.0 | 80.0 | 75.0 | 62.0 ± 2.0 | 9,984 | 312 | 42 |"


def test_format_table_fractions_and_missing_budgets():
    rows = [row("a", 0.5, 0.6, 0.8123, 0.25), Evaluation("b", {"10": 0.3}, 0.1)]
    lines = format_table(rows, percent=False).splitlines()
    assert lines[2] == "| a | 0.500 | 0.600 | 0.812 | 0.250 | – | – | – | – |"
    assert lines[3] == "| b | 0.300 | – | – | 0.100 | – | – | – | – |"
    assert format_table([]) == "(no results)"


def test_gains_are_differences_of_means_per_budget_and_fine_tuning():
    a = Evaluation("m", {"10": [0.6, 0.7], "100": [0.8]}, 0.5, finetune=[0.7, 0.9])
    b = Evaluation("random init", {"10": [0.5, 0.5], "100": [0.75]}, 0.5, finetune=[0.6, 0.6])
    g = gains([b, a], "m")
    assert g == pytest.approx({"10": 0.15, "100": 0.05, "fine-tune": 0.2})
    with pytest.raises(KeyError, match="nope"):
        gains([a, b], "nope")


def test_old_rows_with_one_number_per_budget_still_load():
    old = {"method": "x", "probe": {"10": 0.5}, "knn": 0.4}
    e = Evaluation.from_dict(old)
    assert e.probe == {"10": [0.5]} and e.finetune == [] and e.compute == {}


def test_saving_a_row_keeps_the_other_rows_source_and_time(tmp_path):
    from course_lib.results import load_rows

    save_results(row("rotation", 0.5, 0.6, 0.7, 0.65), "fast", tmp_path, source="03_rotation")
    before = load_rows("fast", tmp_path)["rotation"]
    save_results(row("exemplar", 0.4, 0.5, 0.6, 0.55), "fast", tmp_path, source="02_exemplar")
    rows = load_rows("fast", tmp_path)
    assert rows["rotation"] == before and rows["rotation"]["source"] == "03_rotation"
    assert rows["exemplar"]["source"] == "02_exemplar"


def _save_many(folder, prefix, n, barrier):
    barrier.wait()  # both processes start saving at the same moment
    for i in range(n):
        save_results(row(f"{prefix}{i}", 0.1, 0.2, 0.3, 0.4), "fast", folder, source=prefix)


def test_two_processes_saving_at_once_lose_no_row(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_save_many, args=(tmp_path, prefix, 150, barrier)) for prefix in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    expected = [f"{prefix}{i}" for prefix in "ab" for i in range(150)]
    assert sorted(load_results("fast", tmp_path)) == sorted(expected)  # a read-modify-write race would drop rows


def test_saving_something_else_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="Evaluation"):
        save_results({"method": "x"}, "fast", tmp_path)
    assert not results_path("fast", tmp_path).exists()


# ---------------------------------------------------------------- how results are shown


def test_markdown_table_writes_a_header_a_rule_and_one_line_per_row():
    from course_lib.results import markdown_table

    text = markdown_table(["a", "b"], [[1, "x"], (2.5, "y")])
    assert text == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |"
    assert markdown_table(["only"], []) == "| only |\n|---|"  # a table with no rows yet is still a table


def test_markdown_table_escapes_a_pipe_so_it_never_splits_a_column():
    from course_lib.results import markdown_table

    line = markdown_table(["a", "b"], [["x | y", "z"]]).splitlines()[2]
    assert line == "| x \\| y | z |" and line.replace("\\|", "").count("|") == 3


@pytest.mark.parametrize("header, rows, error, message", [
    ([], [], ValueError, "header"),
    ("ab", [], ValueError, "header"),
    (["a", "b"], [[1]], ValueError, "row 0 has 1 cells for 2 columns"),
    (["a", "b"], [[1, 2], [1, 2, 3]], ValueError, "row 1 has 3 cells"),
    (["a"], "x", TypeError, "rows must be a sequence"),
    (["a"], ["x"], TypeError, "row 0 must be a sequence"),
    (["a"], [5], TypeError, "row 0 must be a sequence"),
])
def test_markdown_table_rejects_what_is_not_a_table(header, rows, error, message):
    from course_lib.results import markdown_table

    with pytest.raises(error, match=message):
        markdown_table(header, rows)


def test_format_table_is_a_markdown_table_with_the_cost_in_three_columns():
    text = format_table([Evaluation("a", {"10": [0.5, 0.6]}, 0.7, compute={"images": 1200, "steps": 3, "seconds": 4.4}),
                         Evaluation("b", {"10": [0.5]}, 0.7)])
    lines = text.splitlines()
    assert lines[0] == ("| method | probe 10/class | kNN | LP-FT, 10 labels/class | images seen | steps | seconds |")
    assert lines[2] == "| a | 55.0 ± 7.1 | 70.0 | – | 1,200 | 3 | 4 |"
    assert lines[3] == "| b | 50.0 | 70.0 | – | – | – | – |"


def test_rows_trained_with_labels_are_marked_and_explained():
    """The supervised baseline (kind "supervised": its columns are networks trained on that many labels, no kNN)
    is marked with a dagger that a note under the table explains; a table without such a row has no note."""
    rows = [row("random init", 0.5, 0.6, 0.7, 0.65),
            Evaluation("supervised (labels only)", {"10": [0.6, 0.7], "100": [0.8], "all": [0.9]}, kind="supervised")]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[3] == "| supervised (labels only) † | 65.0 ± 7.1 | 80.0 | 90.0 | – | – | – | – | – |"
    assert lines[4] == "" and lines[5].startswith("† trained with labels") and len(lines) == 6
    assert "†" not in format_table(rows[:1])


def test_show_table_displays_the_table_as_markdown(monkeypatch):
    import IPython.display

    from course_lib.results import show_table

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    rows = [row("a", 0.5, 0.6, 0.7, 0.8)]
    show_table(rows, extra={"a": {"note": "n"}})
    [markdown] = shown
    assert isinstance(markdown, IPython.display.Markdown) and markdown.data == format_table(rows, extra={"a": {"note": "n"}})


def test_headline_prints_the_line_the_course_runner_reads(capsys):
    from course_lib.results import HEADLINE_PREFIX, headline
    from course_lib.tools.runner import _find_headline

    headline("probe 12.5%")
    out = capsys.readouterr().out
    assert out == "Headline: probe 12.5%\n" and out.startswith(HEADLINE_PREFIX)

    class Notebook:
        cells = [{"outputs": [{"text": "other\n" + out}]}]

    assert _find_headline(Notebook()) == "probe 12.5%"
    with pytest.raises(ValueError, match="one line"):
        headline("two\nlines")
    with pytest.raises(TypeError, match="line of text"):
        headline(3)


def test_a_row_line_says_probe_or_trained():
    probed = Evaluation("SimCLR", {"100": [0.82, 0.83, 0.84]}, knn=0.8)
    assert row_line(probed, "100") == "SimCLR       probe 100/class: 83.0 ± 1.0 %"
    assert row_line(probed, "100", knn=True).endswith("   kNN 80.0 %")
    labelled = Evaluation("supervised (labels only)", {"100": [0.85, 0.85, 0.85]}, kind="supervised")
    assert row_line(labelled, "100", knn=True) == ("supervised (labels only) trained 100/class: 85.0 ± 0.0 % "
                                                   "(trained on those labels alone)")
    facenet = Evaluation("FaceNet", {"100": [0.84]}, knn=0.82, kind="supervised")  # labels, but frozen features
    assert row_line(facenet, "100").startswith("FaceNet      probe 100/class: 84.0")
