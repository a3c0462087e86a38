"""Load-or-train: train once, then reload in a second.

A checkpoint is keyed by its *config* (a dict of everything that changes the
result: profile, method, seed...) and by the *code* that trains it (a hash of the
source files of the method's own module and of every course module it imports,
directly or through others: models, augmentations, loader, data, training loop...). Change either and the key changes, so the model retrains
instead of silently loading stale weights -- weights trained by older code never
satisfy a newer notebook's claims. A checkpoint that does not fit the model
(missing or extra keys, other shapes) or whose stored config or history is not
what was asked for is retrained *from the model's seeded initial weights*, never
from a half-loaded state. A run cut short by a time budget is reused only by a
run whose own budget would have cut it too. Writes are atomic (``files.atomic_write``: a
temporary file renamed into place), so an interrupted run never leaves a corrupt checkpoint;
loading uses ``torch.load(weights_only=True)``, which cannot run code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from course_lib.config import cache_dir, time_budgets_enabled
from course_lib.files import atomic_write
from course_lib.history import History


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-serialisable config (str, number, bool, None, list, dict only)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    try:  # no default=str: an object whose str() hides what changes the result must not become a key
        text = json.dumps(config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must be JSON-serialisable (dict of str/number/bool/None/list/dict): {e}") from e
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def weights_digest(module: nn.Module) -> str:
    """A digest of ``module``: its structure and settings as printed (``repr``: the layers and what their
    ``extra_repr`` says, e.g. a patch encoder's patch size and stride, which are no weights) and every
    parameter and buffer (names, dtypes, shapes, values, whatever the device or memory layout): equal
    modules give equal digests, and any changed value or setting another one. Part of the key of what is
    computed from trained weights (an evaluation, a probe by depth, an ablation)."""
    digest = hashlib.sha256(repr(module).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


# What every trained model depends on: the code of a train_fn defined outside the course (a notebook, a test).
CORE_MODULES = ("course_lib.models", "course_lib.augment", "course_lib.loader", "course_lib.datasets",
                "course_lib.train")


def code_version(*modules: str) -> str:
    """A short hash of the source files of ``modules`` (import names), e.g. ``code_version("course_lib.rotation")``.

    Part of every checkpoint's key: editing the code that trains a model retrains it.
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise ValueError(f"no Python source for module {name!r}")
        digest.update(name.encode() + b"\0" + Path(spec.origin).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_path(name: str, config: dict, folder: Path | None = None,
                    code: tuple[str, ...] = CORE_MODULES) -> Path:
    """Where the checkpoint of ``config`` trained by ``code`` (module names) lives."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"checkpoint name must be letters, digits, '-' or '_', got {name!r}")
    key = config_key({"config": config, "code": code_version(*code)})
    return Path(folder or cache_dir() / "checkpoints") / f"{name}-{key}.pt"


def course_imports(module: str) -> tuple[str, ...]:
    """The course modules that ``module``'s source imports: every import statement, those inside functions
    (lazy imports) included, read from the source (nothing is imported). ``from course_lib import x``
    counts as ``course_lib.x``; the ``course_lib`` package itself (its docstring) does not count."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"no Python source for module {module!r}")
    found = set()
    for node in ast.walk(ast.parse(Path(spec.origin).read_text(), spec.origin)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return tuple(sorted(name for name in found if name.startswith("course_lib.") and _is_module(name)))


def _is_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # ``from course_lib.models import Backbone``: course_lib.models.Backbone is no module
        return False
    return spec is not None and spec.origin is not None and spec.origin.endswith(".py")


def code_of(what: Callable | str) -> tuple[str, ...]:
    """The modules whose source is part of a checkpoint's key: the course module that defines ``what`` (a
    function, or a module name) and every course module it imports, transitively (:func:`course_imports`),
    so that a module added later -- or split out of another -- is covered without a list to update.
    :data:`CORE_MODULES` for code defined outside the course (a notebook, a test)."""
    module = what if isinstance(what, str) else getattr(what, "__module__", "") or ""
    if not module.startswith("course_lib."):
        return CORE_MODULES
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(course_imports(name))
    return tuple(sorted(seen))


def load_or_train(
    name: str,
    config: dict,
    model: nn.Module,
    train_fn: Callable[[], History],
    folder: Path | None = None,
    retrain: bool = False,
    time_budget_s: float | None = None,
    code: tuple[str, ...] | None = None,
) -> History:
    """Load ``model``'s weights for ``config`` if a valid checkpoint exists, else train and save.

    ``train_fn()`` trains ``model`` in place and returns its :class:`History`, which is stored
    beside the weights so that loss plots survive a reload.

    Args:
        time_budget_s: the budget this run would train under (None: none, or budgets switched off).
            A checkpoint cut short by a budget is reused only if this budget would have cut it too.
        code: modules whose source is part of the key; default: :func:`code_of` ``train_fn`` (the
            course module that defines it and everything it imports).
    """
    code = code if code is not None else code_of(train_fn)
    if not time_budgets_enabled():
        time_budget_s = None
    path = checkpoint_path(name, config, folder, code)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the seeded starting point
    if path.exists() and not retrain:
        reason = _reuse(path, config, model, time_budget_s)
        if reason is None:
            model.eval()
            return History.from_dict(load_checkpoint(path)["history"])
        print(f"checkpoint {path.name} not reused ({reason}); training from the initial weights")
        model.load_state_dict(initial)  # a failed load may have copied some tensors before it raised
    history = train_fn()
    model.eval()
    save_checkpoint(path, {"config": _as_json(config), "model": model.state_dict(), "history": history.as_dict(),
                           "time_budget_s": time_budget_s})
    return history


def _as_json(config):
    """``config`` as its JSON round trip: the form the cache key hashes (a tuple becomes a list)."""
    return json.loads(json.dumps(config))


def _reuse(path: Path, config: dict, model: nn.Module, time_budget_s: float | None) -> str | None:
    """Load the checkpoint into ``model``; None if it was reused, else why not (``model`` may be half-loaded)."""
    try:
        state = load_checkpoint(path)
        if _as_json(state.get("config")) != _as_json(config):  # tuples and lists alike, as in the key
            return "its stored config differs"
        history = History.from_dict(state["history"])
        if history.stopped_by_budget and (time_budget_s is None or time_budget_s > history.seconds):
            return (f"it was cut short by a time budget after {history.seconds:.0f} s, and this run "
                    + ("has no budget" if time_budget_s is None else f"has {time_budget_s:.0f} s"))
        model.load_state_dict(state["model"])  # strict: missing or extra keys and other shapes raise
        return None
    except Exception as e:  # an unreadable or mismatched file is retrained, not trusted
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def load_or_compute(name: str, config: dict, compute: Callable[[], dict], folder: Path | None = None,
                    code: tuple[str, ...] | None = None) -> dict:
    """Like :func:`load_or_train` for a JSON-serialisable result (e.g. an evaluation), keyed by config and code
    (default: the evaluation protocol and :func:`code_of` ``compute``)."""
    code = code if code is not None else tuple(sorted({*code_of(compute), "course_lib.evaluate"}))
    path = checkpoint_path(name, config, folder, code).with_suffix(".json")
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored["config"] == json.loads(json.dumps(config)) and isinstance(stored["result"], dict):
                return stored["result"]
        except (ValueError, KeyError, TypeError):
            pass  # unreadable or of another shape: compute again
    result = compute()
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"config": config, "result": result}, indent=1)))
    return result
