"""The recorded comparison over training seeds (course_lib.sweep, `python -m course_lib compare --seeds`):
one cache per seed, complete runs, resumable after an interruption, a recorded file that says what made it,
and each row's gain per seed with its spread over seeds, checked against numbers worked by hand."""

import functools
import json
import os

import pytest

from course_lib import comparison, sweep
from course_lib.config import BUDGETS_ENV, cache_dir, get_profile, seed_cache_dir
from course_lib.evaluate import PROTOCOL_VERSION, Evaluation
from course_lib.tools import cli
from tests.test_comparison import METHODS_ABC, fake_baselines, row

pytestmark = pytest.mark.usefixtures("restore_torch")  # a sweep seeds every run as a notebook does


def seeded_train(calls):
    """A stand-in for a method's pre-training and protocol: its accuracy depends on the seed; records the
    call and the environment it ran in (cache, time budgets)."""

    def train(method, profile, device):
        calls.append((method.row, profile.seed, os.environ["COURSE_CACHE"], os.environ.get(BUDGETS_ENV)))
        base = {"a method": 0.72, "b method": 0.75}[method.row]
        return row(method.row, base + 0.01 * profile.seed)

    return train


def test_seed_caches_keep_two_seeds_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "c"))
    assert seed_cache_dir(0) == cache_dir() == tmp_path / "c"
    assert seed_cache_dir(3) == tmp_path / "c" / "seed-3"
    with pytest.raises(ValueError, match="seed"):
        seed_cache_dir(-1)


def test_a_sweep_records_every_seeds_rows_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(BUDGETS_ENV, raising=False)
    calls = []
    train = seeded_train(calls)
    interrupted = {"left": 3}

    def stops_after_three(method, profile, device):
        if not interrupted["left"]:
            raise KeyboardInterrupt
        interrupted["left"] -= 1
        return train(method, profile, device)

    collect = functools.partial(comparison.collect, methods=METHODS_ABC, compute_baselines=fake_baselines)
    out = tmp_path / "results" / "seeds-fast.json"
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep("fast", [0, 1], out, collect=functools.partial(collect, train=stops_after_three),
                        say=lambda _: None)
    assert not out.exists(), "no recorded file from an interrupted sweep"
    assert [c[:2] for c in calls] == [("a method", 0), ("b method", 0), ("a method", 1)]  # lecture order
    assert all(c[3] == "off" for c in calls), "complete runs: time budgets off while sweeping"
    assert calls[0][2] == str(tmp_path / "cache") and calls[2][2] == str(tmp_path / "cache" / "seed-1")
    assert os.environ["COURSE_CACHE"] == str(tmp_path / "cache") and BUDGETS_ENV not in os.environ, "restored"

    calls.clear()

    def curves(profile, collected, device):  # a stand-in for comparison.curve, run in the seed's own cache
        assert os.environ["COURSE_CACHE"].endswith("cache" if profile.seed == 0 else f"seed-{profile.seed}")
        return {"a method": [{"steps": 2, "images": 20, "probe": 0.6 + profile.seed / 100, "probe_std": 0.0, "knn": 0.5},
                             {"steps": 8, "images": 80, "probe": collected.row("a method").mean("100"),
                              "probe_std": 0.01, "knn": 0.6}]}

    def flops(profile, names, device):  # a stand-in for comparison.flops_per_image of the curves' methods
        assert names == ["a method"] and profile.seed == 0
        return {"a method": 123.0}

    sweep.run_sweep("fast", [0, 1], out, collect=functools.partial(collect, train=train), say=lambda _: None,
                    curves=curves, flops=flops)
    assert [c[:2] for c in calls] == [("b method", 1)], "only the row the interruption lost is computed again"
    record = json.loads(out.read_text())
    assert record["command"] == "python -m course_lib compare --seeds 0 1"
    assert record["protocol_version"] == PROTOCOL_VERSION and record["revision"]
    assert sorted(record["seeds"]) == ["0", "1"]
    assert record["seeds"]["1"]["a method"]["probe"]["100"] == pytest.approx([0.73, 0.74, 0.72])

    recorded = sweep.load_sweep(out, "fast")
    assert recorded.seeds == [0, 1] and "compare --seeds 0 1" in recorded.describe()
    assert isinstance(recorded.rows[0]["random init"], Evaluation)
    assert recorded.curves[1]["a method"][0]["probe"] == pytest.approx(0.61)
    assert recorded.curves[1]["a method"][1]["probe"] == pytest.approx(recorded.rows[1]["a method"].mean("100"))
    assert record["flops_per_image"] == {"a method": 123.0} and recorded.flops == {"a method": 123.0}
    del record["curves"], record["flops_per_image"]  # a file recorded before the curves: its rows load, without curves
    out.write_text(json.dumps(record))
    assert sweep.load_sweep(out, "fast").curves == {} and sweep.load_sweep(out, "fast").seeds == [0, 1]
    assert sweep.load_sweep(out, "fast").flops == {}


def test_a_sweep_added_to_computes_only_the_rows_whose_code_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(BUDGETS_ENV, raising=False)
    version = {"b method": "v1"}  # the code each row is computed with: a stand-in for comparison.row_code
    monkeypatch.setattr(comparison, "known_codes", lambda names: {n: version.get(n, "v1") for n in names})
    calls = []
    collect = functools.partial(comparison.collect, methods=METHODS_ABC, compute_baselines=fake_baselines,
                                train=seeded_train(calls))
    asked = []

    def curves(profile, collected, device):
        asked.append((profile.seed, sorted(r.method for r in collected.rows if r.method.endswith("method"))))
        return {m: [{"steps": 8, "images": 80, "probe": collected.row(m).mean("100") + (version.get(m) == "v2"),
                     "probe_std": 0.0, "knn": 0.6}] for m in ("a method", "b method") if m in asked[-1][1]}

    def flops(profile, names, device):
        return {n: 1.0 for n in names}

    out = tmp_path / "seeds-fast.json"
    run = functools.partial(sweep.run_sweep, "fast", out=out, collect=collect, say=lambda _: None, curves=curves,
                            flops=flops)
    with pytest.raises(ValueError, match="no recorded sweep in .*seeds-fast.json to add to"):
        run([0], add=True)
    run([0, 1])
    first = json.loads(out.read_text())
    assert first["code"] == {n: "v1" for n in ("a method", "b method", *comparison.BASELINES)}
    assert [p["command"] for p in first["passes"]] == ["python -m course_lib compare --seeds 0 1"]

    version["b method"] = "v2"  # b's code changes: the store's b rows and the recorded ones are stale
    calls.clear(), asked.clear()
    with pytest.raises(ValueError, match="seed 0 of .* holds rows that today's code would compute otherwise "
                                         r"\(b method\); give it in --seeds too"):
        run([1], add=True)
    assert not calls and not asked, "refused before any work"
    run([0, 1], add=True)
    assert [c[:2] for c in calls] == [("b method", 0), ("b method", 1)], "only b is trained again"
    assert asked == [(0, ["b method"]), (1, ["b method"])], "only b's curve is read again"
    added = json.loads(out.read_text())
    assert added["code"]["b method"] == "v2" and added["command"] == "python -m course_lib compare --seeds 0 1"
    assert [p["command"] for p in added["passes"]] == ["python -m course_lib compare --seeds 0 1",
                                                       "python -m course_lib compare --seeds 0 1 --add"]
    for seed in ("0", "1"):
        assert added["seeds"][seed]["a method"] == first["seeds"][seed]["a method"], "a kept as recorded"
        assert added["curves"][seed]["a method"] == first["curves"][seed]["a method"]
        assert added["curves"][seed]["b method"][0]["probe"] == pytest.approx(first["curves"][seed]["b method"][0]["probe"] + 1)

    calls.clear(), asked.clear()  # a new seed: computed in full, the recorded ones kept as they are
    run([2], add=True)
    assert {c[1] for c in calls} == {2} and len(calls) == 2
    more = json.loads(out.read_text())
    assert sorted(more["seeds"]) == ["0", "1", "2"] and more["command"] == "python -m course_lib compare --seeds 0 1 2"
    assert {s: more["seeds"][s] for s in ("0", "1")} == {s: added["seeds"][s] for s in ("0", "1")}
    assert sweep.load_sweep(out, "fast").seeds == [0, 1, 2]


def test_seed_gains_against_numbers_worked_by_hand():
    """Probe means at 100 labels/class: random init 0.68 (all seeds); 'a method' 0.72, 0.75, 0.70 -> gains
    +4, +7, +2 points: mean 4.333, sample std sqrt(((-1/3)^2 + (8/3)^2 + (-7/3)^2) / 2) = 2.517."""
    rows = {s: {"random init": row("random init", 0.68), "a method": row("a method", acc)}
            for s, acc in ((0, 0.72), (1, 0.75), (2, 0.70))}
    recorded = sweep.Sweep("fast", "cmd", "abc", PROTOCOL_VERSION, rows)
    g = sweep.seed_gains(recorded, "100")["a method"]
    assert g.per_seed == pytest.approx({0: 0.04, 1: 0.07, 2: 0.02})
    assert g.mean == pytest.approx(0.043333, abs=1e-6) and g.seed_std == pytest.approx(0.025166, abs=1e-6)
    assert g.label_std == pytest.approx(0.01)  # each row's draws are acc, acc + 0.01, acc - 0.01
    ft = sweep.seed_gains(recorded, "10", column="fine-tune")["a method"]  # fine-tune: acc - 0.1 vs 0.58
    assert ft.per_seed == pytest.approx({0: 0.04, 1: 0.07, 2: 0.02})
    labels_only = Evaluation("supervised", {"10": [0.60] * 3}, kind="supervised")
    for s in rows:
        rows[s]["supervised"] = labels_only
    vs = sweep.seed_gains(recorded, "10", over="supervised", column="fine-tune")["a method"]
    assert vs.per_seed == pytest.approx({0: 0.02, 1: 0.05, 2: 0.0})  # 0.62, 0.65, 0.60 against its 0.60
    table = sweep.seed_summary(recorded, "100")
    assert "| a method | +4.0 | +7.0 | +2.0 | +4.3 ± 2.5 | 1.0 | tie |" in table  # 4.3 < 2 x 2.5: a tie
    assert "supervised" not in sweep.seed_summary(recorded, "100", names=["a method"])
    assert "| supervised † |" in sweep.seed_summary(recorded, "10", over="random init")  # trained with labels
    steady = sweep.SeedGain("m", {0: 0.03, 1: 0.04, 2: 0.035}, 0.01)  # mean 3.5, std 0.5: above
    assert steady.verdict == "above"
    assert sweep.SeedGain("m", {0: -0.03, 1: -0.04, 2: -0.035}, 0.01).verdict == "below"
    assert sweep.SeedGain("m", {0: 0.05, 1: -0.001, 2: 0.05}, 0.01).verdict == "tie"  # one seed disagrees
    assert sweep.SeedGain("m", {0: 0.05}, 0.01).verdict == "one seed"
    with pytest.raises(ValueError, match="column"):
        sweep.seed_gains(recorded, column="knn")
    with pytest.raises(KeyError, match="no row 'raw pixels'"):
        sweep.seed_gains(recorded, over="raw pixels")


def test_bad_seeds_and_bad_files_are_refused_before_any_work(tmp_path):
    never = functools.partial(pytest.fail, "no work for bad input")
    for seeds, match in (([], "at least one"), ([0, 0], "different"), ([-1], "seed"), (["1"], "seed")):
        with pytest.raises((ValueError, TypeError), match=match):
            sweep.run_sweep("fast", seeds, tmp_path / "x.json", collect=never)
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        sweep.run_sweep("huge", [0], tmp_path / "x.json", collect=never)
    assert sweep.load_sweep(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not a recorded sweep.*compare --seeds"):
        sweep.load_sweep(bad)
    old = {"format": 1, "profile": "fast", "command": "c", "revision": "r", "protocol_version": PROTOCOL_VERSION - 1,
           "seeds": {"0": {"random init": row("random init").as_dict()}}}
    bad.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=f"protocol v{PROTOCOL_VERSION - 1}"):
        sweep.load_sweep(bad)
    bad.write_text(json.dumps({**old, "protocol_version": PROTOCOL_VERSION}))
    with pytest.raises(ValueError, match="'fast' profile's sweep, not 'full'"):
        sweep.load_sweep(bad, "full")


def test_the_course_command_runs_another_seed_in_its_own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_SEED", "0")  # the command sets both: restored after the test
    seen = {}
    monkeypatch.setattr(cli, "_course", lambda args: seen.update(seed=os.environ["COURSE_SEED"],
                                                                 cache=os.environ["COURSE_CACHE"]) or 0)
    monkeypatch.setattr(cli, "_compare", lambda args: 0)
    assert cli.main(["course", "--seed", "2", "--no-html"]) == 0
    assert seen == {"seed": "2", "cache": str(tmp_path / "cache" / "seed-2")}
    assert get_profile().seed == 2  # the kernels inherit the variable
    with pytest.raises(SystemExit):
        cli.main(["course", "--seed", "-1"])


def test_equal_compute_reads_every_seeds_curve_at_each_budget_against_numbers_worked_by_hand():
    """Curves of two seeds (FLOPs per image 10): 'a' reaches 1e3, 4e3 and 1.6e4 FLOPs; read at 2e3 (halfway on a
    log axis) it gives 0.55 on seed 0 and 0.65 on seed 1 (mean 0.60, sample std 0.0707); at 2e4 no run reached it."""
    def curve(*probes):
        return [{"steps": i + 1, "images": images, "probe": p, "probe_std": 0.0, "knn": 0.5}
                for i, (images, p) in enumerate(zip((100, 400, 1600), probes, strict=True))]

    recorded = sweep.Sweep("fast", "cmd", "abc", PROTOCOL_VERSION, {0: {}, 1: {}},
                           {0: {"a": curve(0.5, 0.6, 0.8)}, 1: {"a": curve(0.6, 0.7, 0.9)}})
    readings = sweep.equal_compute(recorded, {"a": 10.0}, [2e3, 2e4])
    assert readings["a"][2e3] == pytest.approx({0: 0.55, 1: 0.65}) and 2e4 not in readings["a"]
    table = sweep.equal_compute_table(recorded, {"a": 10.0}, [2e3, 2e4])
    assert "| a | 60.0 ± 7.1 (2 seeds) | – |" in table
    with pytest.raises(KeyError, match="no FLOPs per image for 'a'"):
        sweep.equal_compute(recorded, {}, [2e3])
    assert sweep.equal_compute(sweep.Sweep("fast", "cmd", "abc", PROTOCOL_VERSION, {0: {}}), {}, [1e3]) == {}


def test_where_on_curves_places_a_run_among_the_recorded_curves_against_numbers_worked_by_hand():
    """Three methods, two seeds, 1e9 FLOPs per image unless said. 'a' reaches 0.1, 0.4 and 1.6 TFLOP, probe
    0.5/0.6/0.8 on seed 0 and 0.6/0.7/0.9 on seed 1; 'b' (2e9) 0.2, 0.8, 3.2 TFLOP, 0.70/0.75/0.78 on both seeds; 'c'
    0.1, 0.4, 2.0 TFLOP, 0.40/0.45/0.50 on both. Own budgets 1.6, 3.2, 2.0: notebook 10 reads at 1.6 (the smallest)
    and 2.0 (the median). At 1.6 (log axis): b 0.75 + 0.03 ln 2 / ln 4 = 0.765, c 0.45 + 0.05 ln 4 / ln 5 = 0.4931;
    a - b = +0.035 and +0.135 (mean 0.085 < twice its std 0.0707: level), a - c = +0.307 and +0.407 (clearly
    above). At 2.0: a's run has ended; b 0.75 + 0.03 ln 2.5 / ln 4 = 0.7698, clearly above c (0.5) on both seeds."""
    def curve(probes, images=(100, 400, 1600)):
        return [{"steps": steps, "images": n, "probe": p, "probe_std": 0.0, "knn": 0.5}
                for steps, n, p in zip((1, 4, 16), images, probes, strict=True)]

    c = curve((0.4, 0.45, 0.5), (100, 400, 2000))
    curves = {0: {"a": curve((0.5, 0.6, 0.8)), "b": curve((0.7, 0.75, 0.78)), "c": c},
              1: {"a": curve((0.6, 0.7, 0.9)), "b": curve((0.7, 0.75, 0.78)), "c": c}}
    flops = {"a": 1e9, "b": 2e9, "c": 1e9}
    recorded = sweep.Sweep("fast", "python -m course_lib compare --seeds 0 1", "abc", PROTOCOL_VERSION,
                           {0: {}, 1: {}}, curves, flops)
    a = sweep.where_on_curves(recorded, "a")
    assert a.startswith("Recorded by `python -m course_lib compare --seeds 0 1` at revision abc") and "seeds 0, 1):" in a
    assert "| copy after 1/16 of the steps | 1 | 100 | 0.10 | 55.0 ± 7.1 | 50.0 ± 0.0 |" in a  # train.SNAPSHOT_FRACTIONS
    assert "| copy after 1/4 of the steps | 4 | 400 | 0.40 | 65.0 ± 7.1 | 50.0 ± 0.0 |" in a
    assert "| end of the run (this notebook's length) | 16 | 1,600 | 1.60 | 85.0 ± 7.1 | 50.0 ± 0.0 |" in a
    assert ("Its own budget, 1.60 TFLOP, is the smallest of the 3 self-supervised methods' own budgets "
            "(TFLOP: **a 1.60**, c 2.00, b 3.20)") in a
    assert ("- At 1.60 TFLOP (the smallest of the methods' own budgets, where notebook 10 compares them): probe "
            "85.0 ± 7.1 % (mean ± std over seeds); clearly above c; level with b.") in a
    assert "- At 2.00 TFLOP (the median of the methods' own budgets, where notebook 10 compares them): no reading, " \
           "its run ends at 1.60 TFLOP." in a
    b = sweep.where_on_curves(recorded, "b")
    assert "is the largest of the 3" in b and "(TFLOP: a 1.60, c 2.00, **b 3.20**)" in b
    assert "compares them): probe 76.5 ± 0.0 % (mean ± std over seeds); clearly above c; level with a." in b
    assert "compares them): probe 77.0 ± 0.0 % (mean ± std over seeds); clearly above c." in b
    assert "clearly below a, b" in sweep.where_on_curves(recorded, "c")
    assert "*Clearly above / below*: on every seed" in b
    late = {s: {**curves[s], "b": curve((0.7, 0.75, 0.78), (1000, 4000, 16000))} for s in curves}  # from 2 TFLOP
    assert "no reading, its first copy lies beyond it, at 2.00 TFLOP" in sweep.where_on_curves(
        sweep.Sweep("fast", "cmd", "abc", PROTOCOL_VERSION, {0: {}, 1: {}}, late, flops), "b")
    old = sweep.Sweep("fast", "cmd", "abc", PROTOCOL_VERSION, {0: {}}, {}, {})  # recorded before curves and FLOPs
    assert "compare --seeds 0 1 2" in sweep.where_on_curves(old, "a")
    cut = {**curves, 1: {**curves[1], "a": curve((0.6, 0.7, 0.9))[:2]}}  # seed 1's run of 'a' stopped early
    with pytest.raises(ValueError, match="stopped at different points"):
        sweep.where_on_curves(sweep.Sweep("fast", "cmd", "abc", PROTOCOL_VERSION, {0: {}, 1: {}}, cut, flops), "a")
    assert [sweep._place(r, 7) for r in (1, 2, 4, 5, 7)] == ["the smallest", "the 2nd smallest", "the median",
                                                             "the 3rd largest", "the largest"]
    assert sweep.clear_gaps(recorded, flops, 1.6e12) == ["a > c (+35.7 ± 7.1)", "b > c (+27.2 ± 0.0)"]
    assert sweep.clear_gaps(recorded, flops, 2.0e12) == ["b > c (+27.0 ± 0.0)"]  # a's run has ended
    assert sweep.pair_gain(recorded, flops, "a", "b", 1.6e12).per_seed == pytest.approx({0: 0.035, 1: 0.135})
    assert sweep.pair_gain(recorded, flops, "a", "b", 2.0e12) is None


def test_recorded_place_reads_the_committed_file_or_says_how_to_record_one(tmp_path, monkeypatch):
    curves = {0: {"a": [{"steps": 1, "images": 10, "probe": 0.5, "probe_std": 0.0, "knn": 0.4},
                        {"steps": 4, "images": 40, "probe": 0.6, "probe_std": 0.0, "knn": 0.5}]}}
    record = {"format": sweep.FORMAT, "profile": "fast", "protocol_version": PROTOCOL_VERSION, "command": "cmd",
              "revision": "abc", "seeds": {"0": {"random init": row("random init", 0.7).as_dict()}},
              "curves": {"0": curves[0]}, "flops_per_image": {"a": 1e10}}
    (tmp_path / "seeds-fast.json").write_text(json.dumps(record))
    monkeypatch.setattr(sweep, "recorded_path", lambda name: tmp_path / f"seeds-{name}.json")
    assert sweep.recorded_place("fast", "a") == sweep.where_on_curves(sweep.load_sweep(tmp_path / "seeds-fast.json"), "a")
    assert "| end of the run (this notebook's length) | 4 | 40 | 0.40 | 60.0 ± 0.0 | 50.0 ± 0.0 |" in sweep.recorded_place("fast", "a")
    said = sweep.recorded_place("full", "a")
    assert "No recorded sweep for the 'full' profile" in said and "compare --seeds 0 1 2 --profile full" in said
