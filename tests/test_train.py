"""Behaviour tests for the training loop (course_lib.train) and load-or-train (course_lib.checkpoints)."""

import json
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checkpoints import CORE_MODULES, checkpoint_path, config_key, load_or_compute, load_or_train
from course_lib.config import get_profile
from course_lib.train import History, train

pytestmark = pytest.mark.usefixtures("one_thread")


def separable_problem(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes split by the line x0 + x1 = 0, with a margin."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x.sum(1) > 0).long()
    x = x + 0.5 * (2 * y[:, None] - 1)  # push the classes apart
    return x, y


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def classifier_step(model: nn.Module):
    def step(batch):
        x, y = batch
        logits = model(x)
        return {"loss": F.cross_entropy(logits, y), "acc": (logits.argmax(1) == y).float().mean()}
    return step


def full_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


# ---------------------------------------------------------------- the training loop


def test_training_lowers_the_loss_on_a_separable_problem():
    torch.manual_seed(0)
    x, y = separable_problem()
    model = nn.Linear(2, 2)
    before = full_loss(model, x, y)
    history = train(model, classifier_step(model), batches(x, y, 16), torch.optim.SGD(model.parameters(), lr=0.5),
                    num_epochs=10, progress=False)
    after = full_loss(model, x, y)
    assert after < 0.5 * before
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.95
    assert history.losses[-1] < history.losses[0]


def test_history_records_one_value_per_step_for_loss_and_metrics():
    x, y = separable_problem(40)
    model = nn.Linear(2, 2)
    loader = batches(x, y, 8)  # 5 batches
    seen = []

    def step(batch):
        out = classifier_step(model)(batch)
        seen.append((out["loss"].item(), out["acc"].item()))
        return out

    history = train(model, step, loader, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=3, progress=False)
    assert history.steps == 3 * 5 == len(seen)
    assert set(history.metrics) == {"loss", "acc"}
    assert len(history.metrics["acc"]) == 15
    assert history.losses == pytest.approx([s[0] for s in seen])
    assert history.metrics["acc"] == pytest.approx([s[1] for s in seen])
    assert not history.stopped_by_budget
    assert history.seconds > 0
    assert History.from_dict(json.loads(json.dumps(history.as_dict()))) == history


def test_more_than_twenty_steps_are_all_recorded():
    """Values are copied off the device in groups; none may be lost or duplicated."""
    model = nn.Linear(1, 1)
    counter = iter(range(1000))

    def step(_batch):
        return model.weight.sum() * 0 + next(counter)

    history = train(model, step, [None] * 9, torch.optim.SGD(model.parameters(), lr=0.0), num_epochs=5,
                    progress=False)
    assert history.losses == [float(i) for i in range(45)]


def test_step_may_return_a_bare_loss_tensor():
    x, y = separable_problem(16)
    model = nn.Linear(2, 2)
    history = train(model, lambda b: F.cross_entropy(model(b[0]), b[1]), batches(x, y, 8),
                    torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=2, progress=False)
    assert list(history.metrics) == ["loss"] and history.steps == 4


def test_time_budget_stops_early():
    model = nn.Linear(2, 2)
    x, y = separable_problem(16)

    def slow_step(batch):
        time.sleep(0.02)
        return F.cross_entropy(model(batch[0]), batch[1])

    loader = batches(x, y, 2)  # 8 batches x 10 epochs = 80 steps, about 1.6 s without a budget
    history = train(model, slow_step, loader, torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=10,
                    time_budget_s=0.1, progress=False)
    assert history.stopped_by_budget
    assert 1 <= history.steps < 80
    assert history.steps <= 10  # about 0.1 s / 0.02 s per step, with room for a slow machine
    assert history.seconds < 1.0


def test_modules_end_in_eval_mode_and_train_during_steps():
    a, b = nn.Linear(2, 2), nn.BatchNorm1d(2)
    modes = []

    def step(batch):
        modes.append((a.training, b.training))
        return b(a(batch[0])).sum()

    a.eval()
    b.eval()
    x, y = separable_problem(8)
    train([a, b], step, batches(x, y, 4), torch.optim.SGD([*a.parameters(), *b.parameters()], lr=0.1),
          num_epochs=1, progress=False)
    assert modes == [(True, True), (True, True)]
    assert not a.training and not b.training


def test_modules_end_in_eval_mode_even_when_a_step_fails():
    model = nn.Linear(2, 2)

    def step(_batch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(model, step, [None], torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=1, progress=False)
    assert not model.training


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_bad_num_epochs_raise_before_training(bad):
    model = nn.Linear(2, 2)
    calls = []
    with pytest.raises(ValueError, match="num_epochs"):
        train(model, lambda b: calls.append(b), [None], torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=bad,
              progress=False)
    assert calls == []


@pytest.mark.parametrize("bad", [0, -1.0])
def test_bad_time_budget_raises(bad):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="time_budget_s"):
        train(model, lambda b: None, [None], torch.optim.SGD(model.parameters(), lr=0.1), num_epochs=1,
              time_budget_s=bad, progress=False)


# ---------------------------------------------------------------- checkpoints


def test_config_key_is_stable_and_changes_with_the_config():
    cfg = {"method": "rotation", "lr": 1e-3, "seed": 0, "labels": [10, 100, None]}
    key = config_key(cfg)
    assert len(key) == 12 and all(c in "0123456789abcdef" for c in key)
    assert config_key(dict(reversed(list(cfg.items())))) == key  # key order does not matter
    assert config_key(json.loads(json.dumps(cfg))) == key
    assert config_key({**cfg, "seed": 1}) != key
    assert config_key({**cfg, "lr": 2e-3}) != key
    assert config_key({**cfg, "extra": True}) != key
    assert config_key(get_profile().as_dict()) != config_key(get_profile(num_epochs=1).as_dict())
    # a known value: the key must not depend on PYTHONHASHSEED, object ids or the Python session,
    # or every student's cache would be rebuilt on each run
    assert key == "b184db57e9f7"


class Trainer:
    """A train_fn for load_or_train that counts its calls and really changes the model."""

    def __init__(self, model: nn.Module):
        self.model, self.calls = model, 0

    def __call__(self) -> History:
        self.calls += 1
        x, y = separable_problem(32, seed=self.calls)
        return train(self.model, classifier_step(self.model), batches(x, y, 8),
                     torch.optim.SGD(self.model.parameters(), lr=0.5), num_epochs=2, progress=False)


def fresh_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_load_or_train_trains_once_then_reloads(tmp_path):
    cfg = {"method": "toy", "seed": 0}
    first = fresh_model(0)
    trainer = Trainer(first)
    h1 = load_or_train("toy", cfg, first, trainer, folder=tmp_path)
    assert trainer.calls == 1 and h1.steps == 8
    assert checkpoint_path("toy", cfg, tmp_path).exists()

    second = fresh_model(1)  # different initial weights
    second.train()
    trainer2 = Trainer(second)
    h2 = load_or_train("toy", cfg, second, trainer2, folder=tmp_path)
    assert trainer2.calls == 0
    assert_same_weights(first, second)
    assert h2 == h1
    assert not second.training


def test_retrain_flag_trains_again(tmp_path):
    cfg = {"method": "toy"}
    model = fresh_model(0)
    trainer = Trainer(model)
    load_or_train("toy", cfg, model, trainer, folder=tmp_path)
    load_or_train("toy", cfg, model, trainer, folder=tmp_path, retrain=True)
    assert trainer.calls == 2


def test_a_changed_config_retrains(tmp_path):
    model = fresh_model(0)
    trainer = Trainer(model)
    load_or_train("toy", {"lr": 0.1}, model, trainer, folder=tmp_path)
    load_or_train("toy", {"lr": 0.2}, model, trainer, folder=tmp_path)
    assert trainer.calls == 2
    assert len(list(tmp_path.glob("toy-*.pt"))) == 2
    load_or_train("toy", {"lr": 0.1}, model, trainer, folder=tmp_path)
    assert trainer.calls == 2


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04" + b"\x00" * 50])
def test_a_corrupt_checkpoint_is_retrained_not_trusted(tmp_path, content, capsys):
    cfg = {"method": "toy"}
    path = checkpoint_path("toy", cfg, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    model = fresh_model(0)
    trainer = Trainer(model)
    history = load_or_train("toy", cfg, model, trainer, folder=tmp_path)
    assert trainer.calls == 1 and history.steps == 8
    assert "not reused" in capsys.readouterr().out
    # the bad file was replaced by a good one
    reloaded = fresh_model(1)
    assert load_or_train("toy", cfg, reloaded, Trainer(reloaded), folder=tmp_path) == history
    assert_same_weights(model, reloaded)


def test_a_checkpoint_of_another_model_is_retrained(tmp_path):
    cfg = {"method": "toy"}
    other = nn.Linear(3, 3)
    load_or_train("toy", cfg, other, lambda: History(), folder=tmp_path)
    model = fresh_model(0)
    trainer = Trainer(model)
    load_or_train("toy", cfg, model, trainer, folder=tmp_path)
    assert trainer.calls == 1


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    cfg = {"method": "toy"}
    model = fresh_model(0)
    trainer = Trainer(model)
    load_or_train("toy", cfg, model, trainer, folder=tmp_path)
    path = checkpoint_path("toy", cfg, tmp_path)
    good = path.read_bytes()
    real_save = torch.save

    def half_save_then_die(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        data = open(f, "rb").read()
        with open(f, "wb") as out:
            out.write(data[: len(data) // 2])
        raise KeyboardInterrupt  # e.g. the student stops the kernel mid-write

    monkeypatch.setattr(torch, "save", half_save_then_die)
    with pytest.raises(KeyboardInterrupt):
        load_or_train("toy", cfg, model, trainer, folder=tmp_path, retrain=True)
    assert trainer.calls == 2
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left behind


def test_an_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    def die(obj, f, *args, **kwargs):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", die)
    model = fresh_model(0)
    with pytest.raises(OSError, match="disk full"):
        load_or_train("toy", {"a": 1}, model, Trainer(model), folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_loads_with_weights_only(tmp_path):
    cfg = {"profile": get_profile().as_dict(), "method": "toy"}  # tuples, None, floats, bools
    model = fresh_model(0)
    history = load_or_train("toy", cfg, model, Trainer(model), folder=tmp_path)
    state = torch.load(checkpoint_path("toy", cfg, tmp_path), weights_only=True)
    assert set(state) == {"config", "model", "history", "time_budget_s"}
    assert state["config"]["method"] == "toy"
    assert History.from_dict(state["history"]) == history
    for k, v in model.state_dict().items():
        assert torch.equal(state["model"][k], v)


@pytest.mark.parametrize("name", ["", "a/b", "../x", "has space", "dot.pt"])
def test_bad_checkpoint_name_raises(tmp_path, name):
    model = fresh_model(0)
    trainer = Trainer(model)
    with pytest.raises(ValueError, match="checkpoint name"):
        load_or_train(name, {}, model, trainer, folder=tmp_path)
    assert trainer.calls == 0


def test_checkpoint_path_accepts_plain_names(tmp_path):
    path = checkpoint_path("simclr_r18-v2", {"a": 1}, tmp_path)
    assert path.parent == tmp_path and path.name.startswith("simclr_r18-v2-") and path.suffix == ".pt"


def test_load_or_compute_caches_json(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"acc": 0.5, "rows": [1, 2]}

    cfg = {"eval": "probe"}
    assert load_or_compute("eval", cfg, compute, folder=tmp_path) == {"acc": 0.5, "rows": [1, 2]}
    assert load_or_compute("eval", cfg, compute, folder=tmp_path) == {"acc": 0.5, "rows": [1, 2]}
    assert len(calls) == 1
    path = checkpoint_path("eval", cfg, tmp_path, (*CORE_MODULES, "course_lib.evaluate")).with_suffix(".json")
    assert json.loads(path.read_text()) == {"config": cfg, "result": {"acc": 0.5, "rows": [1, 2]}}
    load_or_compute("eval", {"eval": "knn"}, compute, folder=tmp_path)
    assert len(calls) == 2
    path.write_text("{truncated")
    assert load_or_compute("eval", cfg, compute, folder=tmp_path) == {"acc": 0.5, "rows": [1, 2]}
    assert len(calls) == 3
    assert json.loads(path.read_text())["result"] == {"acc": 0.5, "rows": [1, 2]}
    assert not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------- what every method's training shares


def test_effective_budget_is_the_smallest_given_one():
    from course_lib.train import effective_budget

    assert effective_budget(None, None) is None
    assert effective_budget(80.0, None) == 80.0
    assert effective_budget(80.0, 5) == 5.0
    for bad in (0, -1.0, True, "10"):
        with pytest.raises(ValueError, match="time budget"):
            effective_budget(bad)


def test_history_final_and_compute():
    from course_lib.train import History

    h = History(metrics={"loss": [4.0, 3.0, 2.0, 1.0], "acc": [0.1, 0.2]}, seconds=12.34, images=512)
    assert h.final() == pytest.approx(2.5)  # fewer than 20 values: all of them
    assert h.final("loss", last=2) == pytest.approx(1.5)
    assert h.final("acc", last=1) == pytest.approx(0.2)
    assert h.compute() == {"images": 512, "steps": 4, "seconds": 12.3}
    assert History.from_dict(h.as_dict()) == h
    with pytest.raises(ValueError, match="no values logged for 'top5'"):
        h.final("top5")


def _tiny_module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_pretrain_and_cache_does_not_reuse_a_budget_cut_run_without_a_budget(tmp_path, monkeypatch):
    from course_lib.loader import DeviceLoader
    from course_lib.train import History, pretrain_and_cache

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    loader = DeviceLoader(images, batch_size=4, device="cpu")
    net = _tiny_module()

    def step(batch):
        return net(batch.x.float().flatten(1)[:, :3]).pow(2).mean()

    cut = History(metrics={"loss": [1.0]}, seconds=30.0, stopped_by_budget=True)  # cut by a 30 s budget
    from course_lib import checkpoints

    key = {"method": "toy"}
    import copy

    from course_lib.train import SNAPSHOT_FRACTIONS

    stored = nn.ModuleDict({"model": nn.ModuleDict({"backbone": net}),  # what pretrain_and_cache stores
                            "along": nn.ModuleList([copy.deepcopy(net) for _ in SNAPSHOT_FRACTIONS])})
    checkpoints.load_or_train("toy", key, stored, lambda: cut)  # a budget-cut checkpoint
    with_budget = pretrain_and_cache("toy", key, net, {}, step, loader, 1e-2, 0.0, 1, time_budget_s=30.0,
                                     progress=False)
    assert with_budget.history.stopped_by_budget  # a run its budget would cut as well reuses it
    without = pretrain_and_cache("toy", key, net, {}, step, loader, 1e-2, 0.0, 1, time_budget_s=None,
                                 progress=False)
    assert not without.history.stopped_by_budget and without.history.steps == 4  # trained to the end
    assert without.history.images == 16
    again = pretrain_and_cache("toy", key, net, {}, step, loader, 1e-2, 0.0, 1, time_budget_s=None, progress=False)
    assert again.history == without.history  # the complete run is reused


def test_recalibrate_batchnorm_checks_its_arguments_and_restores_modes():
    from course_lib.train import recalibrate_batchnorm

    net = _tiny_module().eval()
    batches = [torch.randn(8, 3) for _ in range(3)]
    recalibrate_batchnorm(net, lambda b: net(b), batches, num_batches=3)
    torch.testing.assert_close(net[1].running_mean, torch.cat([net[0](b) for b in batches]).mean(0).detach())
    assert not net.training and not net[1].training and net[1].momentum == 0.1
    with pytest.raises(ValueError, match="num_batches"):
        recalibrate_batchnorm(net, lambda b: net(b), batches, num_batches=-1)
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batchnorm(net, lambda b: net(b), [], num_batches=1)


def test_config_from_table_resolves_the_profile_row_overrides_and_budget():
    from dataclasses import dataclass

    from course_lib.config import get_profile
    from course_lib.train import config_from_table

    @dataclass(frozen=True)
    class Cfg:
        epochs: int = 1
        time_budget_s: float | None = None

    table = {"fast": {"epochs": 3, "time_budget_s": 90.0}, "full": {"epochs": 100}}
    assert config_from_table(Cfg, table, get_profile("fast"), {}, "toy") == Cfg(3, 90.0)
    assert config_from_table(Cfg, table, get_profile("full"), {}, "toy", default_budget=50.0) == Cfg(100, 50.0)
    grade = get_profile("grade")  # its own budget is smaller and wins, unless the budget is overridden
    assert config_from_table(Cfg, table, grade, {}, "toy").time_budget_s == grade.time_budget_s
    assert config_from_table(Cfg, table, grade, {"time_budget_s": None}, "toy").time_budget_s is None
    assert config_from_table(Cfg, table, get_profile("fast"), {"epochs": 7}, "toy").epochs == 7
    with pytest.raises(TypeError, match=r"unknown toy setting\(s\) \['lr'\].*epochs"):
        config_from_table(Cfg, table, get_profile("fast"), {"lr": 1.0}, "toy")
    with pytest.raises(TypeError, match="Profile"):
        config_from_table(Cfg, table, "fast", {}, "toy")
    with pytest.raises(ValueError, match="a time budget"):
        config_from_table(Cfg, {"fast": {"time_budget_s": -1.0}}, get_profile("fast"), {}, "toy")


def test_snapshot_steps_are_the_fractions_of_the_planned_steps_each_once_and_before_the_end():
    from course_lib.train import SNAPSHOT_FRACTIONS, snapshot_steps

    assert SNAPSHOT_FRACTIONS == (1 / 16, 1 / 4)
    assert snapshot_steps(64) == [4, 16]
    assert snapshot_steps(100) == [6, 25]  # rounded
    assert snapshot_steps(4) == [1, -1]  # 1/4 of 4 steps is step 1 again: one copy
    assert snapshot_steps(2) == [1, -1]
    assert snapshot_steps(1) == [-1, -1]  # the end is the run's own point


def test_snapshots_along_a_run_are_its_weights_part_way_and_leave_the_run_unchanged(tmp_path, monkeypatch):
    """pretrain_and_cache keeps a copy of the backbone after 1/16 and 1/4 of its steps: each equals the weights of
    the same run, by hand (train() with the same optimiser, seed and batches), after that many steps; the run's
    final weights are those of the run by hand to the end; a reload gives the same copies and marks; a run cut by
    its time budget before a mark has no copy for it."""
    import copy

    from course_lib.evaluate import Steps
    from course_lib.loader import DeviceLoader
    from course_lib.train import pretrain_and_cache

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def run_by_hand(steps):
        net = _tiny_module()
        opt = torch.optim.AdamW(nn.ModuleDict({"backbone": net}).parameters(), lr=1e-2, weight_decay=0.1)
        loader = DeviceLoader(images, batch_size=4, device="cpu", seed=0)
        train(net, lambda b: net(b.x.float().flatten(1)[:, :3] / 255).pow(2).mean(), Steps(loader, steps), opt, 1,
              progress=False)
        return net

    net = _tiny_module()
    loader = DeviceLoader(images, batch_size=4, device="cpu", seed=0)  # 16 steps an epoch, 2 epochs: marks 2 and 8

    def step(b):
        return net(b.x.float().flatten(1)[:, :3] / 255).pow(2).mean()

    pre = pretrain_and_cache("toy", {"method": "toy"}, net, {}, step, loader, 1e-2, 0.1, 2, None, progress=False)
    assert [mark for mark, _ in pre.along] == [{"steps": 2, "images": 8}, {"steps": 8, "images": 32}]
    assert pre.history.snapshots == [mark for mark, _ in pre.along] and pre.history.steps == 32
    for mark, copy_then in pre.along:
        assert torch.equal(copy_then[0].weight, run_by_hand(mark["steps"])[0].weight), mark
    assert torch.equal(net[0].weight, run_by_hand(32)[0].weight)  # the run itself: as if no copy were kept
    assert not torch.equal(pre.along[0][1][0].weight, pre.along[1][1][0].weight)
    again = pretrain_and_cache("toy", {"method": "toy"}, _tiny_module(), {}, step, loader, 1e-2, 0.1, 2, None,
                               progress=False)
    assert again.history.snapshots == pre.history.snapshots
    for (_, a), (_, b) in zip(again.along, pre.along, strict=True):
        assert torch.equal(a[0].weight, b[0].weight)
    clock = iter(range(0, 10_000, 10))  # each perf_counter call 10 s later
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    short = pretrain_and_cache("toy", {"method": "toy", "cut": True}, copy.deepcopy(_tiny_module()), {}, step, loader,
                               1e-2, 0.1, 2, 30.0, progress=False)
    assert short.history.stopped_by_budget and short.history.steps == 4  # 40 s > 30 s after the fourth step
    assert [mark["steps"] for mark, _ in short.along] == [2]  # the copy at step 8 was never taken
