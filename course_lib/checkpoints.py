"""Load-or-train: train once, then reload in a second.

A checkpoint is keyed by its *config* (a dict of everything that changes the
result: profile, method, seed...). Change the config and the key changes, so the
model retrains instead of silently loading stale weights. Writes are atomic (a
temporary file renamed into place), so an interrupted run never leaves a corrupt
checkpoint; loading uses ``torch.load(weights_only=True)``, which cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from course_lib.config import cache_dir
from course_lib.train import History


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-serialisable config."""
    try:
        text = json.dumps(config, sort_keys=True, default=str)
    except TypeError as e:
        raise TypeError(f"config must be JSON-serialisable (dict of str/number/list): {e}") from e
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_path(name: str, config: dict, folder: Path | None = None) -> Path:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"checkpoint name must be letters, digits, '-' or '_', got {name!r}")
    return Path(folder or cache_dir() / "checkpoints") / f"{name}-{config_key(config)}.pt"


def load_or_train(
    name: str,
    config: dict,
    model: nn.Module,
    train_fn: Callable[[], History],
    folder: Path | None = None,
    retrain: bool = False,
    time_budget_s: float | None = None,
) -> History:
    """Load ``model``'s weights for ``config`` if a checkpoint exists, else train and save.

    ``train_fn()`` trains ``model`` in place and returns its :class:`History`,
    which is stored beside the weights so that loss plots survive a reload.
    ``time_budget_s`` is the current run's budget: a checkpoint that a budget cut short is
    reused only by a run that has a budget too (a run without one trains to the end).
    """
    path = checkpoint_path(name, config, folder)
    if path.exists() and not retrain:
        try:
            state = load_checkpoint(path)
            history = History.from_dict(state["history"])
            if history.stopped_by_budget and time_budget_s is None:
                print(f"checkpoint {path.name} was cut by a time budget and this run has none; retraining")
            else:
                model.load_state_dict(state["model"])
                model.eval()
                return history
        except Exception as e:  # an unreadable file is retrained, not trusted
            print(f"checkpoint {path.name} unreadable ({type(e).__name__}: {e}); retraining")
    history = train_fn()
    model.eval()
    save_checkpoint(path, {"config": config, "model": model.state_dict(), "history": history.as_dict()})
    return history


def load_or_compute(name: str, config: dict, compute: Callable[[], dict], folder: Path | None = None) -> dict:
    """Like :func:`load_or_train` for a JSON-serialisable result (e.g. an evaluation)."""
    path = checkpoint_path(name, config, folder).with_suffix(".json")
    if path.exists():
        try:
            return json.loads(path.read_text())["result"]
        except (ValueError, KeyError):
            pass  # unreadable: compute again
    result = compute()
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"config": config, "result": result}, indent=1)))
    return result
