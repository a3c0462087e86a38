"""The ablation helper of notebooks 07-09 (course_lib.ablation): a method run with a knob changed, trained
once (the method's cached pretrain) and measured once (cached by the run's weights and the measure's key)."""

import types

import pytest
import torch
from conftest import make_image_data, tiny_profile

from course_lib import rotation
from course_lib.ablation import AblationRun, ablation_run
from course_lib.checkpoints import weights_digest

pytestmark = pytest.mark.usefixtures("one_thread")


def setup():
    profile = tiny_profile(batch_size=16)
    return profile, rotation.config_for(profile), make_image_data(32, size=16)


def test_a_run_is_trained_with_the_changes_and_measured_once(cache):
    profile, cfg, data = setup()
    measured = []

    def measure(pre):
        measured.append(weights_digest(pre.backbone))
        return {"norm": float(sum(p.detach().norm() for p in pre.backbone.parameters()))}

    run = ablation_run(rotation, cfg, data, profile, measure, {"what": "norm"}, torch.device("cpu"), flip_p=0.0)
    assert isinstance(run, AblationRun) and run.cfg == cfg.replace(flip_p=0.0)
    assert run.history.steps == 8 and run.backbone is run.pretrained.backbone  # 32 images, 4 (x 4 turns) a step
    direct = rotation.pretrain(data, profile, cfg.replace(flip_p=0.0), torch.device("cpu"), progress=False)
    assert weights_digest(direct.backbone) == measured[0]  # the method's own run, from its cache
    again = ablation_run(rotation, cfg, data, profile, measure, {"what": "norm"}, torch.device("cpu"), flip_p=0.0)
    assert again.measures == run.measures and len(measured) == 1  # asked twice: trained and measured once
    other = ablation_run(rotation, cfg, data, profile, measure, {"what": "norm"}, torch.device("cpu"))  # flip_p 0.5
    assert len(measured) == 2 and other.cfg == cfg
    ablation_run(rotation, cfg, data, profile, measure, {"what": "another measure"}, torch.device("cpu"))
    assert len(measured) == 3  # the measure's key is part of the cache key


def test_bad_input_is_a_clear_error_before_any_training(cache):
    profile, cfg, data = setup()

    def never(pre):
        raise AssertionError("nothing should be measured")

    with pytest.raises(ValueError, match="RotationConfig has no field temprature"):
        ablation_run(rotation, cfg, data, profile, never, {}, temprature=0.1)
    with pytest.raises(TypeError, match="method module"):
        ablation_run(types.SimpleNamespace(pretrain=rotation.pretrain), cfg, data, profile, never, {})
    with pytest.raises(TypeError, match="base_cfg"):
        ablation_run(rotation, {"flip_p": 0.5}, data, profile, never, {})
    with pytest.raises(TypeError, match="measure_key"):
        ablation_run(rotation, cfg, data, profile, never, None)
    with pytest.raises(TypeError, match="measure must be a function"):
        ablation_run(rotation, cfg, data, profile, "probe", {})
    assert not list(cache.glob("checkpoints/*"))  # nothing trained
    with pytest.raises(TypeError, match="must return a dict"):
        ablation_run(rotation, cfg, data, profile, lambda pre: 0.5, {}, torch.device("cpu"))
