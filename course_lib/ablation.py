"""Ablations: short runs of a method with a knob changed, each trained once and measured once.

Notebooks 07 (CPC: the loss, the number of negatives), 08 (SimCLR: temperature, batch size,
augmentations) and 09 (FaceNet: the miner) ask "what if this knob were different?". Each answer
is a run of the method with its config changed, then a measurement of what that run learned.
:func:`ablation_run` does both:

* the run through the method's own ``pretrain`` (cached: its checkpoint is keyed by the whole
  config and the code, so a run asked for twice -- the base run of several studies -- trains once);
* the measurement through ``checkpoints.load_or_compute``, keyed by the method, the profile, the
  changed config, the run's training set, the weights it learned and ``measure_key`` (what the
  measurement itself depends on: a protocol, label budgets, patch sizes...), so a notebook run
  again (a live lecture) measures nothing again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from course_lib.checkpoints import CORE_MODULES, load_or_compute, weights_digest
from course_lib.config import Profile, Settings
from course_lib.datasets import ImageData
from course_lib.train import History, Pretrained


@dataclass(frozen=True)
class AblationRun:
    """One run of an ablation: the config it trained with, what it trained, and what was measured."""

    cfg: Settings  # the method's config with the changes applied
    pretrained: Pretrained
    measures: dict  # what ``measure`` returned (JSON-ready)

    @property
    def history(self) -> History:
        return self.pretrained.history

    @property
    def backbone(self) -> nn.Module:
        return self.pretrained.backbone


def ablation_run(method: ModuleType, base_cfg: Settings, train_data: ImageData, profile: Profile,
                 measure: Callable[[Pretrained], dict], measure_key: dict, device: torch.device | None = None,
                 progress: bool = False, **changes) -> AblationRun:
    """Pre-train ``method`` (a method module: ``course_lib.simclr``...) on ``train_data`` with
    ``base_cfg.replace(**changes)``, then ``measure(pretrained)`` -- a dict of JSON-ready numbers -- cached.

    ``measure_key`` names everything the measurement depends on beyond the run itself (its code lives in
    the notebook, so the cache cannot see it): e.g. ``{"probe": protocol.as_dict()}``."""
    if not isinstance(method, ModuleType) or not callable(getattr(method, "pretrain", None)):
        raise TypeError(f"method must be a method module with pretrain (e.g. course_lib.simclr), got {method!r}")
    if not isinstance(base_cfg, Settings):
        raise TypeError(f"base_cfg must be the method's config (config_for(profile)), got {type(base_cfg).__name__}")
    if not callable(measure):
        raise TypeError(f"measure must be a function of the Pretrained run, got {type(measure).__name__}")
    if not isinstance(measure_key, dict):
        raise TypeError(f"measure_key must be a dict of what the measurement depends on, got {type(measure_key).__name__}")
    fields = set(base_cfg.as_dict())
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"{type(base_cfg).__name__} has no field {', '.join(unknown)} (fields: {sorted(fields)})")
    cfg = base_cfg.replace(**changes)
    pre = method.pretrain(train_data, profile, cfg, device, progress=progress)
    key = {"method": method.__name__, "profile": profile.as_dict(), "config": cfg.as_dict(), "train": len(train_data),
           "weights": weights_digest(nn.ModuleDict({"backbone": pre.backbone, **pre.heads})), "measure": measure_key}

    def compute() -> dict:
        result = measure(pre)
        if not isinstance(result, dict):
            raise TypeError(f"measure must return a dict of numbers, got {type(result).__name__}")
        return result

    measures = load_or_compute("ablation", key, compute,
                               code=(*CORE_MODULES, method.__name__, "course_lib.evaluate", __name__))
    return AblationRun(cfg, pre, measures)
