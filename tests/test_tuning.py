"""The tuning pass (course_lib.tuning, `python -m course_lib tune --seeds 0 1 2`): the same budget and rules for
every method, scored on the validation split of the training images only, resumable, recorded with what made it,
and a choice that a gain within the seeds' noise does not move."""

import json
import os

import pytest
import torch
from torch import nn

from course_lib import tuning
from course_lib.config import BUDGETS_ENV, get_profile
from course_lib.datasets import ImageData
from course_lib.evaluate import split_validation
from course_lib.tools import cli

pytestmark = pytest.mark.usefixtures("restore_torch")  # the pass seeds every run as a notebook does


def test_every_grid_keeps_the_rules_and_bad_grids_are_refused_before_any_training():
    fast = get_profile("fast")
    for name in ("fast", "grade", "full"):
        tuning.check_grids(tuning.GRIDS, get_profile(name))
    assert set(tuning.GRIDS) == {"exemplar", "rotation", "patch position", "context encoder", "colorization", "CPC",
                                 "SimCLR"}, "every self-supervised method, FaceNet (trained with labels) not"
    assert all(len(g) <= tuning.BUDGET == 8 and g[0] == {} for g in tuning.GRIDS.values())
    with pytest.raises(ValueError, match="today's recipe {} first"):
        tuning.check_grids({"rotation": [{"flip_p": 0.0}, {}]}, fast)
    with pytest.raises(ValueError, match="at most 8"):
        tuning.check_grids({"rotation": [{}, *({"flip_p": p / 10} for p in range(8))]}, fast)
    with pytest.raises(ValueError, match="appears twice"):
        tuning.check_grids({"rotation": [{}, {"flip_p": 0.0}, {"flip_p": 0.0}]}, fast)
    with pytest.raises(ValueError, match=r"\['temprature'\] are not fields of its config.*temperature"):
        tuning.check_grids({"SimCLR": [{}, {"temprature": 0.1}]}, fast)
    with pytest.raises(ValueError, match=r"changes \['num_epochs'\]"):
        tuning.check_grids({"SimCLR": [{}, {"num_epochs": 40}]}, fast)
    with pytest.raises(ValueError, match=r"changes \['batch_size'\]"):
        tuning.check_grids({"rotation": [{}, {"batch_size": 64}]}, fast)
    with pytest.raises(ValueError, match="unknown self-supervised method 'FaceNet'"):
        tuning.check_grids({"FaceNet": [{}]}, fast)


def test_a_rate_goes_to_the_config_that_has_one_else_to_the_profile():
    fast = get_profile("fast")
    profile, cfg = tuning.apply("rotation", fast, {"lr": 6e-3, "flip_p": 0.0})
    assert profile.lr == 6e-3 and cfg.flip_p == 0.0 and fast.lr == 2e-3, "rotation trains at the profile's rate"
    assert profile.seed == fast.seed and profile.batch_size == fast.batch_size
    profile, cfg = tuning.apply("SimCLR", fast, {"lr": 1.5e-2})
    assert profile == fast and cfg.lr == 1.5e-2, "SimCLR has a rate of its own"


def grid_images(per_class: int = 60, classes: int = 10, shift_val: bool = False, profile=None):
    """Images of 4x4 pixels whose pixel c lights for class c. With ``shift_val``, the validation images (the
    protocol's split of these labels) light pixel c + 1 instead."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    lit = labels.clone()
    if shift_val:
        from course_lib.evaluate import protocol_for

        protocol = protocol_for(profile)
        _, val = split_validation(labels, protocol.validation_per_class, protocol.seed)
        lit[val] = (lit[val] + 1) % classes
    images = torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8)
    images.view(len(labels), 16)[torch.arange(len(labels)), lit] = 255
    return ImageData(images, labels, [str(c) for c in range(classes)])


def test_the_validation_reading_fits_on_the_pool_and_scores_on_the_validation_images_only():
    """A pixel per class: the probe is exact on held-out images of the same kind (100 %, no spread over the draws).
    When only the validation images light the next class's pixel, a probe fitted on the pool is wrong on every one
    of them (0 %): the score is measured on the validation split, and the draws never include it."""
    profile = get_profile("fast", max_images_per_class=100)  # a validation split of 20 images per class
    flat = nn.Flatten()
    assert tuning.validation_reading(flat, grid_images(), profile, 10) == {"validation": 1.0, "validation_std": 0.0}
    shifted = grid_images(shift_val=True, profile=profile)
    assert tuning.validation_reading(flat, shifted, profile, 10) == {"validation": 0.0, "validation_std": 0.0}


def test_a_pass_scores_every_configuration_per_seed_in_its_cache_and_records_what_made_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(BUDGETS_ENV, raising=False)
    monkeypatch.setattr(tuning, "GRIDS", {"rotation": ({}, {"flip_p": 0.0}), "SimCLR": ({}, {"temperature": 0.5})})
    calls = []

    def scorer(row, profile, overrides, device):
        calls.append((row, profile.seed, json.dumps(overrides), os.environ["COURSE_CACHE"], os.environ.get(BUDGETS_ENV)))
        return {"validation": (80 + profile.seed + (2 if overrides else 0)) / 100, "validation_std": 0.0,
                "steps": 10, "images": 100}

    out = tmp_path / "results" / "tuning-fast.json"
    with pytest.raises(ValueError, match="unknown self-supervised method 'rotations'"):
        tuning.run_tuning("fast", [0], ["rotations"], out, scorer=scorer)
    assert not calls and not out.exists(), "bad input fails before any run"

    def interrupted(row, profile, overrides, device):
        if len(calls) == 3:
            raise KeyboardInterrupt
        return scorer(row, profile, overrides, device)

    with pytest.raises(KeyboardInterrupt):
        tuning.run_tuning("fast", [0, 1], None, out, say=lambda _: None, scorer=interrupted)
    assert not out.exists(), "no recorded file from an interrupted pass"

    calls.clear()
    tuning.run_tuning("fast", [0, 1], None, out, say=lambda _: None, scorer=scorer)
    assert [c[:3] for c in calls] == [("rotation", 0, "{}"), ("rotation", 0, '{"flip_p": 0.0}'), ("SimCLR", 0, "{}"),
                                      ("SimCLR", 0, '{"temperature": 0.5}'), ("rotation", 1, "{}"),
                                      ("rotation", 1, '{"flip_p": 0.0}'), ("SimCLR", 1, "{}"),
                                      ("SimCLR", 1, '{"temperature": 0.5}')]
    assert {c[3] for c in calls[:4]} == {str(tmp_path / "cache")} and calls[4][3] == str(tmp_path / "cache" / "seed-1")
    assert all(c[4] == "off" for c in calls), "complete runs: time budgets off"
    record = tuning.load_tuning(out)
    assert record["command"] == "python -m course_lib tune --seeds 0 1" and record["passes"][0]["revision"]
    assert [p["command"] for p in record["passes"]] == ["python -m course_lib tune --seeds 0 1"]
    assert record["code"] == {"rotation": tuning.score_code("rotation"), "SimCLR": tuning.score_code("SimCLR")}
    assert record["budget"] == 8 and record["labels_per_class"] == 100
    assert record["methods"]["rotation"][1] == {"overrides": {"flip_p": 0.0}, "seeds": {
        "0": {"validation": 0.82, "validation_std": 0.0, "steps": 10, "images": 100},
        "1": {"validation": 0.83, "validation_std": 0.0, "steps": 10, "images": 100}}}
    assert "| rotation | today's recipe | 80.0 | 81.0 | 80.5 ± 0.7 |" in tuning.tuning_table(record)
    assert "|  | flip_p=0.0 ← kept | 82.0 | 83.0 | 82.5 ± 0.7 |" in tuning.tuning_table(record)

    calls.clear()  # a seed added to the pass: the recorded seeds are kept, not trained again
    tuning.run_tuning("fast", [2], None, out, say=lambda _: None, scorer=scorer, add=True)
    assert [c[:2] for c in calls] == [("rotation", 2), ("rotation", 2), ("SimCLR", 2), ("SimCLR", 2)]
    added = tuning.load_tuning(out)
    assert added["command"] == "python -m course_lib tune --seeds 0 1 2"
    assert [p["command"] for p in added["passes"]] == ["python -m course_lib tune --seeds 0 1",
                                                       "python -m course_lib tune --seeds 2 --add"]
    assert added["methods"]["rotation"][1]["seeds"] == {**record["methods"]["rotation"][1]["seeds"], "2": {
        "validation": 0.84, "validation_std": 0.0, "steps": 10, "images": 100}}
    calls.clear()  # a recorded seed given again is scored again
    tuning.run_tuning("fast", [1, 2], None, out, say=lambda _: None, scorer=scorer, add=True)
    assert {c[1] for c in calls} == {1, 2} and tuning.load_tuning(out)["methods"] == added["methods"]

    calls.clear()
    with pytest.raises(ValueError, match="no recorded pass in .*none.json to add seeds to"):
        tuning.run_tuning("fast", [3], None, tmp_path / "none.json", scorer=scorer, add=True)
    with pytest.raises(ValueError, match=r"records profile 'fast' and methods \['rotation', 'SimCLR'\]; .*\['rotation'\]"):
        tuning.run_tuning("fast", [3], ["rotation"], out, scorer=scorer, add=True)
    changed = json.loads(out.read_text())
    changed["code"]["SimCLR"] = "0" * 12
    out.write_text(json.dumps(changed))
    with pytest.raises(ValueError, match="code SimCLR's scores depend on has changed"):
        tuning.run_tuning("fast", [3], None, out, scorer=scorer, add=True)
    monkeypatch.setattr(tuning, "GRIDS", {"rotation": ({}, {"flip_p": 0.5}), "SimCLR": ({}, {"temperature": 0.5})})
    with pytest.raises(ValueError, match="rotation's grid is not the one"):
        tuning.run_tuning("fast", [3], None, out, scorer=scorer, add=True)
    assert not calls, "a seed that cannot join the pass fails before any run"

    monkeypatch.setattr(tuning, "GRIDS", {**tuning.GRIDS, "patch position": ({},)})
    tuning.run_tuning("fast", [2], ["patch position"], tmp_path / "one.json", say=lambda _: None, scorer=scorer)
    assert tuning.load_tuning(tmp_path / "one.json")["command"] == "python -m course_lib tune --seeds 2 --methods 'patch position'"


def test_the_code_a_score_depends_on_is_its_methods_and_the_protocols_not_the_recording():
    assert tuning.score_code("rotation") == tuning.score_code("rotation") != tuning.score_code("SimCLR")
    assert len(tuning.score_code("CPC")) == 12
    with pytest.raises(ValueError, match="unknown self-supervised method 'FaceNet'"):
        tuning.score_code("FaceNet")


def test_the_choice_keeps_todays_recipe_unless_another_is_better_beyond_the_seeds_noise():
    def config(*values):
        return {"overrides": {}, "seeds": {str(s): {"validation": v} for s, v in enumerate(values)}}

    today = config(0.80, 0.81, 0.79)
    steady = config(0.82, 0.83, 0.81)  # +2 points on every seed: differences with std 0
    noisy = config(0.85, 0.78, 0.80)  # mean +1 point, differences +5, -3, +1 (std 4)
    assert tuning.chosen([today, steady]) == 1
    assert tuning.chosen([today, noisy]) == 0, "a gain within the spread of the per-seed differences"
    assert tuning.chosen([today, noisy, steady]) == 2
    assert tuning.chosen([today, config(0.80, 0.81, 0.79)]) == 0, "a tie keeps today's"
    assert tuning.chosen([today, config(0.90)]) == 1, "compared on the seeds all share (seed 0): one seed, no spread"
    with pytest.raises(ValueError, match="no configurations"):
        tuning.chosen([])


def test_a_recorded_pass_that_is_not_one_is_refused(tmp_path):
    assert tuning.load_tuning(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    good = {"format": 2, "passes": [{"command": "c", "revision": "r"}], "code": {"rotation": "x"},
            "methods": {"rotation": [{"overrides": {}, "seeds": {"0": {"validation": 0.8}}}]}}
    assert tuning.load_tuning(bad.parent / "good.json") is None
    (bad.parent / "good.json").write_text(json.dumps(good))
    assert tuning.load_tuning(bad.parent / "good.json") == good
    for text in ("not json", json.dumps({"format": 1}), json.dumps({"format": 3, "methods": {}}),
                 json.dumps({**good, "format": 1}), json.dumps({**good, "code": {}}),
                 json.dumps({**good, "passes": [{"command": "c"}]}),
                 json.dumps({**good, "methods": {"rotation": [{"overrides": {}, "seeds": {"0": {}}}]}})):
        bad.write_text(text)
        with pytest.raises(ValueError, match="not a recorded tuning pass.*tune --seeds 0 1 2"):
            tuning.load_tuning(bad)


def test_the_command_line_runs_the_pass_and_prints_its_table(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run(profile_name, seeds, methods, out, add=False):
        seen.update(profile=profile_name, seeds=seeds, methods=methods, out=out, add=add)
        path = tmp_path / "t.json"
        path.write_text(json.dumps({"format": 2, "passes": [], "code": {"rotation": "x"}, "methods": {"rotation": [
            {"overrides": {}, "seeds": {"0": {"validation": 0.8}}}]}}))
        return path

    monkeypatch.setattr(tuning, "run_tuning", fake_run)
    assert cli.main(["tune", "--seeds", "0", "1", "--methods", "rotation", "patch position"]) == 0
    assert seen == {"profile": "fast", "seeds": [0, 1], "methods": ["rotation", "patch position"], "out": None,
                    "add": False}
    assert cli.main(["tune", "--seeds", "2", "--add"]) == 0 and seen["add"] is True
    assert "| rotation | today's recipe ← kept | 80.0 | 80.0 ± 0.0 |" in capsys.readouterr().out


def test_a_configuration_trains_through_the_methods_cached_pretrain_with_its_rate(one_thread, tmp_path, monkeypatch):
    """Rotation on the grade profile (a few steps): a configuration with another rate is another run (another
    cache entry, other weights, the same steps), scored on the validation split; both are cached."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setenv(BUDGETS_ENV, "off")  # complete runs, as the pass trains them: a busy machine cuts none short
    grade, cpu = get_profile("grade"), torch.device("cpu")
    today = tuning.score("rotation", grade, {}, cpu)
    faster = tuning.score("rotation", grade, {"lr": 6e-3}, cpu)
    assert today["steps"] == faster["steps"] > 0 and today["images"] == faster["images"]
    assert 0.1 < today["validation"] <= 1.0 and today != faster
    monkeypatch.setattr(tuning, "validation_reading", lambda *a: pytest.fail("cached: nothing is measured again"))
    assert tuning.score("rotation", grade, {}, cpu) == today
