"""The one training loop of the course, and what every method's training shares.

Every method in every notebook trains with :func:`train`. What differs between
methods is only the *step function*: it takes a batch and returns the loss (and,
optionally, a few metrics to log). The loop does the rest: train mode during the
run and eval mode after it, gradients, optimiser step, progress bar, loss history
and an optional time budget.

Around the loop: :func:`effective_budget` and :func:`check_budget` (time budgets),
:func:`config_from_table` (a method's config from its per-profile table),
:func:`recalibrate_batchnorm` (fresh batch-norm statistics after training),
:func:`pretrain_and_cache` (train once, reload from the cache afterwards) and
:func:`pretrain_method`, the body of every method's ``pretrain``: the method's
``setup`` describes its run (:class:`PretrainSetup`: its heads, step, loader data...),
and the wiring here does the rest the same way for every method, returning a
:class:`Pretrained`.
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from course_lib.checkpoints import code_of, load_or_train
from course_lib.config import Profile, get_device, time_budgets_enabled
from course_lib.datasets import ImageData
from course_lib.history import History
from course_lib.loader import DeviceLoader
from course_lib.models import Backbone, build_backbone

StepOutput = torch.Tensor | dict[str, torch.Tensor]
StepFn = Callable[[object], StepOutput]


def effective_budget(*budgets: float | None) -> float | None:
    """The time budget that applies when several are set: the smallest; None if none is."""
    for b in budgets:
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0):
            raise ValueError(f"a time budget must be a positive number of seconds or None, got {b!r}")
    given = [float(b) for b in budgets if b is not None]
    return min(given) if given else None



def check_budget(value: float | None) -> None:
    """A config's ``time_budget_s`` check: ``ValueError`` naming the field unless positive or None."""
    try:
        effective_budget(value)
    except ValueError as e:
        raise ValueError(f"time_budget_s: {e}") from None


def profile_row(table: dict[str, dict], profile: Profile) -> dict:
    """A copy of ``profile``'s row of a method's per-profile ``table``: the row of its name, else ``fast``'s."""
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a course_lib.config.Profile, got {type(profile).__name__}")
    return dict(table.get(profile.name, table["fast"]))


def config_from_table(cls: type, table: dict[str, dict], profile, overrides: dict, what: str,
                      default_budget: float | None = None):
    """``cls(**values)``: the profile's row of a method's per-profile ``table`` (:func:`profile_row`), then
    ``overrides``. Unless overridden, the time budget is the smaller of the row's (``default_budget`` when
    the row has none) and the profile's; unknown names are a ``TypeError`` naming ``what`` (the method) and
    the known fields. The body of every method's ``config_for`` (values it derives from the profile's own
    fields, e.g. its batch size, come in with ``overrides``, below the caller's)."""
    values = profile_row(table, profile)
    values.update(overrides)
    if "time_budget_s" not in overrides:
        values["time_budget_s"] = effective_budget(values.get("time_budget_s", default_budget), profile.time_budget_s)
    check_fields(cls, values, what)
    return cls(**values)


def check_fields(cls: type, names, what: str) -> None:
    """``TypeError`` naming ``what`` (the method) and the known fields unless every name in ``names`` is a
    field of the config dataclass ``cls``."""
    known = set(cls.__dataclass_fields__)
    unknown = set(names) - known
    if unknown:
        raise TypeError(f"unknown {what} setting(s) {sorted(unknown)}: expected some of {sorted(known)}")


@dataclass
class Adversary:
    """A second player trained in the same loop with its own optimiser: a GAN's discriminator.

    With an adversary, a step is played in two halves. ``step(batch)`` returns the model's forward and
    the adversary's loss under ``"adversary_loss"`` (built on detached outputs, so it reaches the
    adversary only); the loop updates the adversary with ``optimizer``; then ``finish(first)`` builds the
    model's loss against the *updated* adversary (frozen, so the model's optimiser never moves it) and
    returns the usual ``{"loss": ..., metrics}``.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    finish: Callable[[dict[str, Tensor]], dict[str, Tensor]]


def train(
    modules: nn.Module | Iterable[nn.Module],
    step: StepFn,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    num_epochs: int,
    time_budget_s: float | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    amp: bool = False,
    desc: str = "train",
    progress: bool = True,
    adversary: Adversary | None = None,
    after_step: Callable[[int, int], None] | None = None,
) -> History:
    """Run ``step`` on every batch of ``loader`` for ``num_epochs`` epochs.

    Args:
        modules: the module(s) being trained; put in train mode, then eval mode at the end.
        step: ``step(batch) -> loss`` or ``-> {"loss": loss, "acc": ...}``.
        time_budget_s: stop (cleanly, after a whole step) once this many seconds have passed.
        amp: bf16 autocast on CUDA (ignored elsewhere).
        adversary: a second player with its own optimiser, updated inside every step (:class:`Adversary`).
        after_step: called as ``after_step(steps_done, images_done)`` after every optimiser step (snapshots
            along a run: :func:`pretrain_and_cache`).
    """
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    if not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a positive int, got {num_epochs!r}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive or None, got {time_budget_s!r}")
    if not time_budgets_enabled():  # make test: every run completes, so every asserted claim sees one
        time_budget_s = None
    device = next(modules[0].parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else nullcontext()

    history = History()
    pending: list[dict[str, torch.Tensor]] = []  # values not yet copied off the device

    def flush() -> None:
        for out in pending:
            for name, value in out.items():
                history.metrics.setdefault(name, []).append(float(value))
        pending.clear()

    for m in modules:
        m.train()
    start = time.perf_counter()
    steps_done = 0
    total = num_epochs * len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0, leave=True)
    try:
        for _epoch in range(num_epochs):
            for batch in loader:
                with autocast:
                    out = step(batch)
                    if adversary is not None:  # the adversary's update, then the model's loss against it
                        adversary.optimizer.zero_grad(set_to_none=True)
                        out["adversary_loss"].backward()
                        adversary.optimizer.step()
                        out = adversary.finish(out)
                out = {"loss": out} if torch.is_tensor(out) else dict(out)
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                pending.append({k: v.detach() for k, v in out.items()})
                history.images += len(batch.x) if hasattr(batch, "x") else 0
                steps_done += 1
                if after_step is not None:
                    after_step(steps_done, history.images)
                bar.update(1)
                if len(pending) >= 20:
                    flush()
                    bar.set_postfix(loss=f"{history.losses[-1]:.3f}", refresh=False)
                if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                    history.stopped_by_budget = True
                    break
            if history.stopped_by_budget:
                break
    finally:
        flush()
        bar.close()
        for m in modules:
            m.eval()
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def recalibrate_batchnorm(modules: nn.Module | Iterable[nn.Module], forward: Callable[[object], object],
                          loader: Iterable, num_batches: int = 20) -> None:
    """Re-estimate every batch-norm layer's running mean/variance with ``forward(batch)`` on ``num_batches``.

    Training keeps an exponential moving average of batch statistics while the weights
    still move (a constant learning rate, a run cut by a time budget), so the averages lag
    behind the final weights and eval-mode outputs suffer: in a fast-profile rotation run
    (linear head) the 270° rotation fell to 55% test accuracy while the others stayed above
    94%. A pass in train mode with a cumulative average (momentum None) over fresh batches
    fixes it (the "precise BN" of Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm").
    ``forward`` runs the method's own pretext inputs through the modules. Modes and momenta
    are restored afterwards.
    """
    modules = nn.ModuleList([modules] if isinstance(modules, nn.Module) else list(modules))
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
        raise ValueError(f"num_batches must be an int >= 0, got {num_batches!r}")
    norms = [m for m in modules.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or num_batches == 0:
        return
    momenta = [m.momentum for m in norms]
    modes = [m.training for m in modules.modules()]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    modules.train()
    try:
        done = 0
        while done < num_batches:
            for batch in loader:
                forward(batch)
                done += 1
                if done == num_batches:
                    break
            if done == 0:
                raise ValueError("loader yielded no batch to recalibrate batch norm with")
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, mode in zip(modules.modules(), modes, strict=True):
            m.training = mode


# Where along its run a pre-training keeps a copy of its backbone: after these fractions of its planned steps
# (the accuracy-against-compute curves of notebook 10 read them; the last point is the run's own end).
SNAPSHOT_FRACTIONS: tuple[float, ...] = (1 / 16, 1 / 4)


@dataclass
class Pretrained:
    """What every method's ``pretrain`` returns: the encoder, its training history, and the pretext heads."""

    backbone: nn.Module  # the encoder the protocol evaluates (in eval mode)
    history: History
    heads: nn.ModuleDict  # the pretext task's head(s), by name; the protocol never looks at them
    along: list[tuple[dict, nn.Module]] = field(default_factory=list)  # ({"steps", "images"}, backbone then)


def pretrain_and_cache(name: str, key: dict, backbone: nn.Module, heads: dict[str, nn.Module], step: StepFn,
                       loader, lr: float, weight_decay: float, num_epochs: int, time_budget_s: float | None,
                       amp: bool = False, recalibrate: Callable[[object], object] | None = None,
                       recalibration_batches: int = 0, progress: bool = True,
                       schedule: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
                       | None = None, adversary: Adversary | None = None) -> Pretrained:
    """AdamW + :func:`train` (+ batch-norm recalibration), run once and cached by
    ``checkpoints.load_or_train`` under ``key`` (a dict of everything that changes the result). A
    checkpoint cut by a time budget is not reused by a run without one. ``schedule(optimizer,
    total_steps)``, if given, makes the learning-rate scheduler stepped after every optimiser step (the
    method's config, and so ``key``, must say which schedule it is). ``adversary``: a second player with
    its own optimiser (its module is one of ``heads``)."""
    model = nn.ModuleDict({"backbone": backbone, **heads})
    along = nn.ModuleList([copy.deepcopy(backbone) for _ in SNAPSHOT_FRACTIONS])  # the backbone part-way

    def run() -> History:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        total = num_epochs * len(loader)
        scheduler = None if schedule is None else schedule(opt, total)
        marks = snapshot_steps(total)
        taken: list[dict] = []

        def snapshot(steps: int, images: int) -> None:  # a copy of the weights; the run itself is not touched
            for i, at in enumerate(marks):
                if at == steps:
                    along[i].load_state_dict(backbone.state_dict())
                    taken.append({"steps": steps, "images": images})

        history = train(model, step, loader, opt, num_epochs, time_budget_s=time_budget_s, scheduler=scheduler,
                        amp=amp, desc=name, progress=progress, adversary=adversary, after_step=snapshot)
        history.snapshots = taken
        if recalibrate is not None:
            recalibrate_batchnorm(model, recalibrate, loader, recalibration_batches)
        return history

    # the key holds the code too: the method's module (where its step function lives) and all it imports
    saved = nn.ModuleDict({"model": model, "along": along})
    history = load_or_train(name, key, saved, run, time_budget_s=time_budget_s, code=code_of(step))
    saved.eval()
    return Pretrained(backbone, history, nn.ModuleDict(heads), list(zip(history.snapshots, along, strict=False)))


def snapshot_steps(total_steps: int) -> list[int]:
    """The steps after which a run of ``total_steps`` planned steps keeps a copy of its backbone: each of
    :data:`SNAPSHOT_FRACTIONS` of them, rounded, at least 1; a mark that equals an earlier one or the run's
    last step is dropped (the run's end is its own point)."""
    marks: list[int] = []
    for fraction in SNAPSHOT_FRACTIONS:
        at = max(1, round(fraction * total_steps))
        marks.append(at if at < total_steps and at not in marks else -1)  # -1: never reached
    return marks


def pretrain_key(method: str, profile, cfg, train_data) -> dict:
    """The cache key of a pre-training run: the whole profile and the whole method config (all but their
    time budgets, which ``load_or_train`` handles, and the cell time limit of executed notebooks) and the
    training set's size and image shape."""
    drop = {"time_budget_s", "cell_timeout_s"}
    return {"method": method,
            "profile": {k: v for k, v in profile.as_dict().items() if k not in drop},
            "config": {k: v for k, v in cfg.as_dict().items() if k not in drop},
            "train": len(train_data), "image_shape": list(train_data.images.shape[1:])}


# --------------------------------------------------------------------------- the seam of every method's pretrain


@dataclass
class PretrainSetup:
    """What a method's ``setup(train_data, profile, cfg, device)`` returns: the parts of its pre-training
    run that are its own. :func:`pretrain_method` does the rest the same way for every method (the
    checks, the loader, compiling, the optimiser and the loop, batch-norm recalibration, the cache)."""

    backbone: Backbone  # the encoder, from seeded_backbone: the random-init baseline's weights
    heads: dict[str, nn.Module]  # the pretext task's modules, by name
    step: StepFn  # step(batch) -> {"loss": ..., "acc": ...} for the one loop
    forward: Callable[[object], object]  # forward(batch): the pretext inputs through the modules (batch-norm recalibration)
    images: Tensor  # uint8 (N, C, H, W): what the loader draws batches from
    batch_size: int  # images per batch
    lr: float  # AdamW's learning rate (the profile's, or the config's own)
    weight_decay: float
    labels: Tensor | None = None  # labels for the loader (None: self-supervised, never looked at)
    schedule: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler] | None = None
    adversary: Adversary | None = None  # a second player with its own optimiser (its module is in heads)
    key: dict = field(default_factory=dict)  # what else changes the result, beside the profile, config and data


def seeded_backbone(profile: Profile, in_channels: int, device: torch.device | None) -> Backbone:
    """The profile's backbone with the random-init baseline's weights: seeded with ``profile.seed`` right before
    it is built, so that a pre-trained encoder and its baseline start from the same point."""
    torch.manual_seed(profile.seed)
    return build_backbone(profile, in_channels).to(device)


def check_train_data(train_data) -> None:
    """``TypeError`` unless ``train_data`` is an ``ImageData`` with uint8 images (N, C, H, W)."""
    images = getattr(train_data, "images", None)
    if not isinstance(train_data, ImageData) or not isinstance(images, Tensor) or images.dtype != torch.uint8 \
            or images.dim() != 4:
        raise TypeError(f"train_data must be an ImageData with uint8 images (N, C, H, W), got "
                        f"{type(train_data).__name__} with images {getattr(images, 'dtype', type(images))}")


def method_module(method: str):
    """The module ``method`` (an import name, ``"course_lib.rotation"``); ``ValueError`` unless it has the
    contract's ``config_for(profile)`` and ``setup(train_data, profile, cfg, device)``."""
    module = importlib.import_module(method)
    if not (callable(getattr(module, "config_for", None)) and callable(getattr(module, "setup", None))):
        raise ValueError(f"{method} has no config_for(profile) and setup(train_data, profile, cfg, device): it does "
                         "not follow the method contract (docs/adding-a-method.md)")
    return module


def method_setup(method: str, train_data: ImageData, profile: Profile, cfg=None,
                 device: torch.device | None = None) -> tuple[object, PretrainSetup, DeviceLoader]:
    """Everything of ``method``'s pre-training run but the training: its config (``cfg``, default
    ``config_for(profile)``, checked to be of the method's config class), its ``setup`` and the loader.

    ``method`` is the module's import name (``"course_lib.rotation"``). Bad input raises before any
    training: a ``TypeError`` for a config or data of the wrong kind, a ``ValueError`` from the method's
    own checks or for a batch larger than the training set.
    """
    module = method_module(method)
    expected = type(module.config_for(profile))
    cfg = module.config_for(profile) if cfg is None else cfg
    if not isinstance(cfg, expected):
        raise TypeError(f"cfg must be a {expected.__name__} ({module.__name__.rsplit('.', 1)[-1]}.config_for(profile)), "
                        f"got {type(cfg).__name__}")
    check_train_data(train_data)
    device = device or get_device()
    run = module.setup(train_data, profile, cfg, device)
    if run.batch_size > len(run.images):
        raise ValueError(f"batch_size {run.batch_size} is larger than the {len(run.images)} training images")
    loader = DeviceLoader(run.images, run.labels, run.batch_size, device=device, seed=profile.seed)
    return cfg, run, loader


def pretrain_method(method: str, train_data: ImageData, profile: Profile, cfg=None,
                    device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """The body of every method's ``pretrain``: :func:`method_setup`, then :func:`pretrain_and_cache` with the
    config's epochs, time budget and recalibration batches, under :func:`pretrain_key` (plus the setup's
    own ``key`` entries). Returns ``Pretrained(backbone, history, heads)`` in eval mode."""
    cfg, run, loader = method_setup(method, train_data, profile, cfg, device)
    if profile.compile:
        run.backbone.compile()
    name = method.rsplit(".", 1)[-1]
    key = {**pretrain_key(name, profile, cfg, train_data), **run.key}
    return pretrain_and_cache(name, key, run.backbone, run.heads, run.step, loader, run.lr, run.weight_decay,
                              cfg.num_epochs, cfg.time_budget_s, amp=profile.amp, recalibrate=run.forward,
                              recalibration_batches=cfg.recalibration_batches, progress=progress,
                              schedule=run.schedule, adversary=run.adversary)
