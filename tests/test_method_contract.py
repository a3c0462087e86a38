"""The method contract (docs/adding-a-method.md), tested once for every method of the registry
(`comparison.METHODS`): config, step, setup and pretrain have the same shape everywhere."""

import dataclasses
import importlib
import inspect
import math

import pytest
import torch
from conftest import make_image_data, tiny_profile

from course_lib.checkpoints import code_of, course_imports
from course_lib.comparison import METHODS
from course_lib.config import get_profile
from course_lib.models import build_backbone
from course_lib.train import Pretrained, PretrainSetup, method_setup

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# Per method: (the tiny data it trains on, the tiny config's overrides of config_for(tiny_profile())).
TINY = {
    "exemplar": ({}, {"num_exemplars": 16, "batch_size": 8}),
    "rotation": ({}, {"batch_size": 4, "head_hidden_dim": 8}),
    "patch position": ({}, {"batch_size": 8, "hidden_dim": 16}),
    "context encoder": ({}, {"batch_size": 8, "decoder_width": 4}),
    "colorization": ({"channels": 3, "size": 16}, {"batch_size": 8, "hidden_dim": 8, "crop_size": 12}),
    "CPC": ({"size": 16}, {"batch_size": 8, "pred_steps": 2, "context_dim": 8}),
    "SimCLR": ({}, {"batch_size": 8, "view_size": 10, "hidden_dim": 16, "proj_dim": 8}),
    "FaceNet": ({"num_classes": 10}, {"batch_size": 8, "embedding_dim": 8}),
}
# What a step logs in place of an accuracy, where its task has none to log (said in the step's docstring).
NO_ACCURACY = {"context encoder": "rec", "FaceNet": "active"}
BY_ROW = {m.row: m for m in METHODS}


def module_name(method) -> str:
    return method.module.rsplit(".", 1)[-1]


def tiny_run(row: str, **changes):
    """A method's module, tiny data, the tiny profile and its tiny config (``changes`` on top)."""
    method = BY_ROW[row]
    module = method.load()
    data_kwargs, overrides = TINY[row]
    data = make_image_data(**{"n": 32, "size": 12, **data_kwargs})
    profile = tiny_profile()
    cfg = module.config_for(profile, **{"num_epochs": 2, "recalibration_batches": 2, **overrides, **changes})
    return module, data, profile, cfg


def test_every_registered_method_has_a_tiny_run():
    assert set(TINY) == set(BY_ROW)


@pytest.mark.parametrize("row", list(BY_ROW))
def test_config_is_the_modules_config_class_with_the_shared_fields(row):
    module, _, profile, cfg = tiny_run(row)
    assert type(cfg).__name__.lower() == module_name(BY_ROW[row]).replace("_", "") + "config"
    assert getattr(module, type(cfg).__name__) is type(cfg)
    names = {f.name for f in dataclasses.fields(cfg)}
    assert {"batch_size", "num_epochs", "time_budget_s", "recalibration_batches"} <= names
    assert "images_per_batch" not in names
    with pytest.raises(ValueError, match="time_budget_s"):  # train.check_budget names the field
        module.config_for(profile, time_budget_s=-1.0)
    with pytest.raises(TypeError, match="not_a_knob"):
        module.config_for(profile, not_a_knob=1)


@pytest.mark.parametrize("row", list(BY_ROW))
def test_step_takes_the_generator_and_returns_the_loss_and_an_accuracy(row, cache):
    module, data, profile, cfg = tiny_run(row)
    step_fn = getattr(module, f"{module_name(BY_ROW[row])}_step")
    assert "generator" in inspect.signature(step_fn).parameters
    _, run, loader = method_setup(BY_ROW[row].module, data, profile, cfg, torch.device("cpu"))
    assert isinstance(run, PretrainSetup) and run.adversary is None
    out = run.step(next(iter(loader)))
    accuracy = NO_ACCURACY.get(row, "acc")
    assert {"loss", accuracy} <= set(out) and math.isfinite(out["loss"].item())
    if row in NO_ACCURACY:
        assert f'"{accuracy}"' in step_fn.__doc__ and "accuracy" in step_fn.__doc__


@pytest.mark.parametrize("row", list(BY_ROW))
def test_pretrain_is_deterministic_cached_and_keyed_by_the_config(row, cache):
    module, data, profile, cfg = tiny_run(row)
    name = module_name(BY_ROW[row])
    pre = module.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    assert isinstance(pre, Pretrained) and len(pre.heads) >= 1
    assert pre.history.steps >= 2 and all(math.isfinite(v) for v in pre.history.losses)
    assert not pre.backbone.training and not any(h.training for h in pre.heads.values()), "returned in eval mode"
    for p in list(cache.glob(f"checkpoints/{name}-*.pt")):  # a second run trains again from scratch ...
        p.unlink()
    again = module.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    assert again.history.metrics == pre.history.metrics  # ... to the same numbers, heads included
    for a, b in zip([*pre.backbone.state_dict().values(), *pre.heads.state_dict().values()],
                    [*again.backbone.state_dict().values(), *again.heads.state_dict().values()], strict=True):
        assert torch.equal(a, b)
    loaded = module.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)  # from the cache
    assert loaded.history.seconds == again.history.seconds, "loaded with its stored history, not trained again"
    torch.testing.assert_close(loaded.heads.state_dict(), pre.heads.state_dict())
    assert len(list(cache.glob(f"checkpoints/{name}-*.pt"))) == 1
    module.pretrain(data, profile, cfg.replace(recalibration_batches=1), torch.device("cpu"), progress=False)
    assert len(list(cache.glob(f"checkpoints/{name}-*.pt"))) == 2, "another config, another checkpoint"


@pytest.mark.parametrize("row", list(BY_ROW))
def test_pretrain_starts_from_the_random_init_weights_and_moves_them(row, cache):
    module, data, profile, cfg = tiny_run(row, num_epochs=1)
    torch.manual_seed(profile.seed)
    random_init = build_backbone(profile, 1 if row == "colorization" else data.images.shape[1])
    pre = module.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    moved = (pre.backbone.stages[0][0].weight - random_init.stages[0][0].weight).abs().max().item()
    assert 0 < moved < 0.1, "trained from the seeded random init, a few small steps"


@pytest.mark.parametrize("row", list(BY_ROW))
def test_pretrain_rejects_bad_input_before_training(row, cache):
    module, data, profile, cfg = tiny_run(row)
    with pytest.raises(TypeError, match=type(cfg).__name__):
        module.pretrain(data, profile, cfg.as_dict(), progress=False)
    with pytest.raises(TypeError, match="uint8"):
        module.pretrain(data.images, profile, cfg, progress=False)
    assert not list(cache.glob("checkpoints/*"))


@pytest.mark.parametrize("row", list(BY_ROW))
def test_full_profile_runs_a_few_steps_on_cifar_shaped_data(row, cache):
    """The full profile's config (ResNet-18, channels-last, bf16 on CUDA only) on random (24, 3, 32, 32) uint8."""
    module, full = BY_ROW[row].load(), get_profile("full")
    small = {"batch_size": 8, "num_epochs": 1, "recalibration_batches": 1}
    small.update({"exemplar": {"num_exemplars": 16}, "rotation": {"batch_size": 4}}.get(row, {}))
    cfg = module.config_for(full, **small)  # everything else as the full profile trains
    data = make_image_data(n=24, num_classes=10, size=32, channels=3)
    pre = module.pretrain(data, full, cfg, torch.device("cpu"), progress=False)
    assert pre.history.steps >= 1 and all(math.isfinite(v) for vs in pre.history.metrics.values() for v in vs)
    assert pre.backbone.feature_dim == 512 and pre.backbone.channels_last


@pytest.mark.parametrize("row", list(BY_ROW))
def test_pretrain_is_the_shared_wiring(row):
    """Every method's pretrain is the one seam: its module's setup, run by train.pretrain_method."""
    module = BY_ROW[row].load()
    assert callable(module.setup) and list(inspect.signature(module.setup).parameters) == \
        ["train_data", "profile", "cfg", "device"]
    assert list(inspect.signature(module.pretrain).parameters) == ["train_data", "profile", "cfg", "device", "progress"]
    assert "pretrain_method(__name__" in inspect.getsource(module.pretrain)


# ---------------------------------------------------------------- the code in the cache key


@pytest.mark.parametrize("row", list(BY_ROW))
def test_the_cache_key_holds_every_course_module_a_method_imports(row):
    method = BY_ROW[row].module
    code = code_of(method)
    assert method in code and {"course_lib.train", "course_lib.models", "course_lib.loader",
                               "course_lib.augment", "course_lib.history"} <= set(code)
    for m in code:  # closed under imports, lazy ones included
        assert set(course_imports(m)) <= set(code), m
    assert code_of(importlib.import_module(method).setup) == code


# ---------------------------------------------------------------- configs from tables, as they were by hand


def reference_exemplar(profile, **overrides):
    """exemplar.config_for as it was written by hand (if/else on the profile), fields as they are named now."""
    from course_lib.train import effective_budget

    train_images = {"cifar10": 50_000}.get(profile.dataset, 10_000)
    if profile.max_images_per_class is not None:
        train_images = min(train_images, 10 * profile.max_images_per_class)
    n, strength, budget = (8000, 1.0, None) if profile.name == "full" else (2000, 0.5, 150.0)
    n = overrides.get("num_exemplars", min(n, train_images))
    values = {"num_exemplars": n, "strength": strength, "num_epochs": max(1, round(profile.num_epochs * train_images / n)),
              "time_budget_s": effective_budget(budget, profile.time_budget_s), "max_degrees": 20.0,
              "recalibration_batches": 20, "batch_size": profile.batch_size}  # batch: the profile's, as the loader's
    return {**values, **overrides}


def reference_rotation(profile, **overrides):
    from course_lib.train import effective_budget

    all_rotations = overrides.get("all_rotations", True)
    per_step = max(1, profile.batch_size // 4) if all_rotations else profile.batch_size
    fast = profile.name not in ("full",)
    values = {"all_rotations": all_rotations, "batch_size": per_step, "num_epochs": 1 if fast else profile.num_epochs,
              "time_budget_s": effective_budget(80.0 if fast else None, profile.time_budget_s),
              "head_hidden_dim": 256, "flip_p": 0.5, "recalibration_batches": 20}
    return {**values, **overrides}


def reference_patch_position(profile, **overrides):
    from course_lib.train import effective_budget

    values = {"image_size": 32, "patch_size": 8, "gap": 2, "jitter": 2, "hidden_dim": 256,
              "num_epochs": profile.num_epochs, "time_budget_s": effective_budget(profile.time_budget_s),
              "recalibration_batches": 20, "batch_size": profile.batch_size}
    if profile.dataset == "stl10":
        values.update(image_size=96, patch_size=24, gap=6, jitter=6, hidden_dim=512)
    elif profile.backbone == "resnet18":
        values.update(hidden_dim=512)
    return {**values, **overrides}


PROFILES = {"fast": get_profile("fast"), "full": get_profile("full"), "grade": get_profile("grade"),
            "unknown name": get_profile("fast").replace(name="workshop"),
            "full with STL-10": get_profile("full", dataset="stl10"),
            "tiny": tiny_profile(), "fast, budget 30 s": get_profile("fast", time_budget_s=30.0)}


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
@pytest.mark.parametrize("overrides", [{}, {"num_epochs": 3}, {"time_budget_s": None}], ids=["", "epochs", "budget"])
@pytest.mark.parametrize("module, reference", [("exemplar", reference_exemplar), ("rotation", reference_rotation),
                                               ("patch_position", reference_patch_position)])
def test_table_configs_equal_the_hand_written_ones_they_replace(module, reference, profile, overrides):
    cfg = importlib.import_module(f"course_lib.{module}").config_for(profile, **overrides)
    assert dataclasses.asdict(cfg) == reference(profile, **overrides)


def test_configs_follow_overrides_that_change_derived_values():
    from course_lib import exemplar, rotation

    fast = get_profile("fast")
    assert dataclasses.asdict(exemplar.config_for(fast, num_exemplars=500)) == reference_exemplar(fast, num_exemplars=500)
    assert dataclasses.asdict(rotation.config_for(fast, all_rotations=False)) == \
        reference_rotation(fast, all_rotations=False)
