"""load_or_train and load_or_compute never serve stale or half-loaded weights or results."""

import json
import types

import pytest
import torch
from torch import nn

from course_lib import checkpoints
from course_lib.checkpoints import (
    CORE_MODULES,
    checkpoint_path,
    code_version,
    config_key,
    load_or_compute,
    load_or_train,
)
from course_lib.config import BUDGETS_ENV
from course_lib.train import History


class Shifter:
    """A train_fn that adds a known constant to every parameter (so a retrain's start is visible)."""

    def __init__(self, model: nn.Module, shift: float = 1.0, stopped_by_budget: bool = False, seconds: float = 1.0):
        self.model, self.shift, self.calls = model, shift, 0
        self.stopped_by_budget, self.seconds = stopped_by_budget, seconds

    def __call__(self) -> History:
        self.calls += 1
        with torch.no_grad():
            for p in self.model.parameters():
                p += self.shift
        return History({"loss": [1.0]}, seconds=self.seconds, stopped_by_budget=self.stopped_by_budget)


def seeded(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def damaged_checkpoint(tmp_path, damage) -> None:
    """A checkpoint of `seeded(0)` trained +100 away from its start, then changed by ``damage(state)``."""
    trained = seeded(0)
    load_or_train("m", {"a": 1}, trained, Shifter(trained, shift=100.0), folder=tmp_path)
    path = checkpoint_path("m", {"a": 1}, tmp_path)
    state = torch.load(path, weights_only=True)
    damage(state)
    torch.save(state, path)


def assert_retrained_from_the_initial_weights(tmp_path) -> None:
    model = seeded(0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Shifter(model, shift=1.0)
    load_or_train("m", {"a": 1}, model, trainer, folder=tmp_path)
    assert trainer.calls == 1
    for k, v in model.state_dict().items():  # initial + 1, not the old checkpoint's +100
        assert torch.allclose(v, initial[k] + 1.0), k


def test_a_mismatched_checkpoint_retrains_from_the_seeded_initial_weights(tmp_path, capsys):
    def keep_first_layer(state):  # 0.* would load into the new model; 9.* is unknown, 1.* is missing
        state["model"] = {"0.weight": state["model"]["0.weight"], "0.bias": state["model"]["0.bias"],
                          "9.weight": torch.zeros(1)}

    damaged_checkpoint(tmp_path, keep_first_layer)
    assert_retrained_from_the_initial_weights(tmp_path)
    assert "not reused" in capsys.readouterr().out


@pytest.mark.parametrize("damage", [
    lambda state: state["model"].update({"1.weight": torch.zeros(3, 4)}),  # another shape
    lambda state: state.update(config={"a": 2}),  # another config
    lambda state: state.update(history={"metrics": "nonsense"}),  # a broken history
], ids=["shape", "config", "history"])
def test_a_checkpoint_with_other_shapes_config_or_history_is_not_reused(tmp_path, damage):
    damaged_checkpoint(tmp_path, damage)
    assert_retrained_from_the_initial_weights(tmp_path)


def test_config_key_refuses_objects_that_json_cannot_hold():
    with pytest.raises(TypeError, match="JSON-serialisable"):
        config_key({"path": object()})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        config_key({"lr": float("nan")})
    with pytest.raises(TypeError, match="must be a dict"):
        config_key([1, 2])


def test_code_version_changes_when_the_source_changes(tmp_path, monkeypatch):
    pkg = tmp_path / "fakecourse"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "method.py").write_text("LOSS = 'l2'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_version("fakecourse.method")
    assert code_version("fakecourse.method") == before  # stable
    (pkg / "method.py").write_text("LOSS = 'l1'\n")
    assert code_version("fakecourse.method") != before
    with pytest.raises(ValueError, match="no Python source"):
        code_version("fakecourse.does_not_exist")


def test_a_change_to_the_method_module_retrains(tmp_path, monkeypatch):
    """Weights trained by older code never satisfy newer code: the method module's source is in the key."""
    model = seeded(0)
    trainer = Shifter(model)
    code = (*CORE_MODULES, "json")  # any module with a source file stands in for the method's own
    load_or_train("m", {"a": 1}, model, trainer, folder=tmp_path, code=code)
    load_or_train("m", {"a": 1}, model, trainer, folder=tmp_path, code=code)
    assert trainer.calls == 1
    real = checkpoints.code_version
    monkeypatch.setattr(checkpoints, "code_version", lambda *m: real(*m) + ("x" if "json" in m else ""))
    load_or_train("m", {"a": 1}, model, trainer, folder=tmp_path, code=code)
    assert trainer.calls == 2


def test_the_default_code_is_the_course_module_of_the_train_fn_and_all_it_imports():
    fn = types.FunctionType((lambda: None).__code__, {})
    fn.__module__ = "course_lib.rotation"
    code = checkpoints.code_of(fn)
    assert code == checkpoints.code_of("course_lib.rotation") and "course_lib.rotation" in code
    assert set(CORE_MODULES) <= set(code)  # through rotation's imports and theirs
    assert "course_lib.evaluate" not in code  # what rotation does not import is not in its key
    # a lazy import counts too: comparison imports baselines (and, through it, results) inside its functions only
    assert {"course_lib.baselines", "course_lib.results"} <= set(checkpoints.code_of("course_lib.comparison"))
    fn.__module__ = "__main__"  # defined in a notebook: only the core
    assert checkpoints.code_of(fn) == CORE_MODULES
    assert "course_lib.train" in CORE_MODULES and "course_lib.models" in CORE_MODULES


def test_course_imports_reads_every_import_statement_without_importing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "probe_method.py").write_text(
        "import json\nfrom course_lib import models\nfrom course_lib.train import train\n"
        "def later():\n    from course_lib.checkpoints import load_or_train\n    import course_lib.loader\n")
    assert checkpoints.course_imports("probe_method") == (
        "course_lib.checkpoints", "course_lib.loader", "course_lib.models", "course_lib.train")


@pytest.mark.parametrize("budget, reused", [(None, False), (10.0, False), (4.0, True), (5.0, True)])
def test_a_budget_cut_checkpoint_is_reused_only_by_a_run_it_would_have_cut_too(tmp_path, budget, reused):
    model = seeded(0)
    load_or_train("m", {"a": 1}, model, Shifter(model, stopped_by_budget=True, seconds=5.0), folder=tmp_path,
                  time_budget_s=5.0)
    again = seeded(0)
    trainer = Shifter(again)
    load_or_train("m", {"a": 1}, again, trainer, folder=tmp_path, time_budget_s=budget)
    assert trainer.calls == (0 if reused else 1)


def test_with_budgets_switched_off_a_budget_cut_checkpoint_always_retrains(tmp_path, monkeypatch):
    model = seeded(0)
    load_or_train("m", {"a": 1}, model, Shifter(model, stopped_by_budget=True, seconds=5.0), folder=tmp_path,
                  time_budget_s=5.0)
    monkeypatch.setenv(BUDGETS_ENV, "off")
    trainer = Shifter(seeded(0))
    load_or_train("m", {"a": 1}, trainer.model, trainer, folder=tmp_path, time_budget_s=5.0)
    assert trainer.calls == 1


@pytest.mark.parametrize("content", [[1, 2, 3], {"config": {"x": 1}, "result": {"acc": 1}},
                                     {"config": {"eval": "probe"}, "result": [0.5]}, "text"])
def test_load_or_compute_recomputes_a_cached_file_of_the_wrong_shape(tmp_path, content):
    cfg = {"eval": "probe"}
    path = checkpoint_path("eval", cfg, tmp_path, (*CORE_MODULES, "course_lib.evaluate")).with_suffix(".json")
    path.write_text(json.dumps(content))
    calls = []
    result = load_or_compute("eval", cfg, lambda: calls.append(1) or {"acc": 0.5}, folder=tmp_path)
    assert result == {"acc": 0.5} and calls == [1]


@pytest.mark.parametrize("stored_as_tuple", [False, True], ids=["saved-now", "older-file-with-tuples"])
def test_a_config_holding_tuples_is_reused_from_disk(tmp_path, stored_as_tuple):
    """Profiles and method configs hold tuples (label budgets, crop scales); the file keeps what JSON keeps,
    so a second process must still find its own config equal to the stored one and reuse the weights."""
    config = {"profile": {"labels_per_class": (10, 100, None)}, "crop_scale": (0.08, 1.0)}
    trained = seeded(0)
    load_or_train("m", config, trained, Shifter(trained, shift=100.0), folder=tmp_path)
    if stored_as_tuple:  # a file written before configs were stored as their JSON round trip
        path = checkpoint_path("m", config, tmp_path)
        state = torch.load(path, weights_only=True)
        state["config"] = config
        torch.save(state, path)
    fresh = seeded(0)
    trainer = Shifter(fresh, shift=1.0)
    load_or_train("m", dict(config), fresh, trainer, folder=tmp_path)
    assert trainer.calls == 0, "the checkpoint of the same config was not reused"
    for k, v in fresh.state_dict().items():
        assert torch.allclose(v, trained.state_dict()[k]), k
