"""The one training loop of the course.

Every method in every notebook trains with :func:`train`. What differs between
methods is only the *step function*: it takes a batch and returns the loss (and,
optionally, a few metrics to log). The loop does the rest: gradients, optimiser
step, progress bar, loss history and an optional time budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib.config import time_budgets_enabled

StepOutput = torch.Tensor | dict[str, torch.Tensor]
StepFn = Callable[[object], StepOutput]


@dataclass
class History:
    """What a training run logged: one value per step for the loss and each metric."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_by_budget: bool = False

    @property
    def losses(self) -> list[float]:
        return self.metrics.get("loss", [])

    @property
    def steps(self) -> int:
        return len(self.losses)

    def as_dict(self) -> dict:
        return {"metrics": self.metrics, "seconds": self.seconds, "stopped_by_budget": self.stopped_by_budget}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(metrics={k: list(v) for k, v in d["metrics"].items()}, seconds=float(d["seconds"]),
                   stopped_by_budget=bool(d["stopped_by_budget"]))


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
) -> History:
    """Run ``step`` on every batch of ``loader`` for ``num_epochs`` epochs.

    Args:
        modules: the module(s) being trained; put in train mode, then eval mode at the end.
        step: ``step(batch) -> loss`` or ``-> {"loss": loss, "acc": ...}``.
        time_budget_s: stop (cleanly, after a whole step) once this many seconds have passed.
        amp: bf16 autocast on CUDA (ignored elsewhere).
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
    total = num_epochs * len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0, leave=True)
    try:
        for _epoch in range(num_epochs):
            for batch in loader:
                with autocast:
                    out = step(batch)
                out = {"loss": out} if torch.is_tensor(out) else dict(out)
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                pending.append({k: v.detach() for k, v in out.items()})
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
