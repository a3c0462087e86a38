"""The comparison: every method on one protocol (notebook 10).

Each method notebook (02 onwards) evaluates its encoder by the shared protocol and saves
its row in the results store (``results.py``). This file holds what notebook 10 needs to
put those rows side by side:

* :data:`METHODS`, the registry: one line per method -- the row name its notebook saves,
  the module that pre-trains it, the notebook, and the data it pre-trains on. Adding a
  method to the comparison is adding one line here.
* :func:`collect`: the stored rows in lecture order, baselines first; a method whose row
  is missing is pre-trained through its own cached ``pretrain`` and evaluated (or, with
  ``train_missing=False``, only reported missing), so the notebook also runs on a fresh clone.
* :func:`training_flops_per_image`: the floating-point operations of one training step of a
  method (forward and backward, counted by ``torch.utils.flop_counter.FlopCounterMode``), per
  image drawn; :func:`achieved_gflops` scales it by the images a run saw and divides by its
  wall time, to set against the machine's peak (``peak.py``).
"""

from __future__ import annotations

import importlib
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.flop_counter import FlopCounterMode

from course_lib.config import Profile, get_device
from course_lib.evaluate import Evaluation, budget_name
from course_lib.models import LinearHead
from course_lib.supervised import ROW as SUPERVISED
from course_lib.supervised import config_for as supervised_config

# the rows of baselines.py, computed once per profile: two without training, and the supervised baseline
# (kind "supervised": trained with labels, shown apart from the self-supervised ranking)
BASELINES = ("raw pixels", "random init", SUPERVISED)


@dataclass(frozen=True)
class Method:
    """One method of the comparison: where its row comes from and how to make it again."""

    row: str  # the row name its notebook saves: evaluate_and_save(row, ...)
    module: str  # the course module with config_for(profile) and pretrain(train_data, profile, cfg, device)
    notebook: str  # the notebook that trains it and saves the row: evaluate_and_save(..., source=notebook)
    data: str | None = None  # the dataset it pre-trains on (load_dataset(data, "train")); None: the profile's;
    #                          "config": its config's `pretrain_dataset` (a dataset that changes with the profile)
    inputs: str | None = None  # a function of its module that turns the protocol's images into what its encoder
    #                            takes (e.g. "lightness_data": the L channel); None: the images as they are
    labels: bool = False  # True if pre-training uses the class labels (supervised metric learning)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def dataset(self, profile: Profile, cfg=None) -> str:
        """The name of the dataset it pre-trains on under ``profile`` (``cfg``: its config, default
        ``config_for(profile)``)."""
        if self.data != "config":
            return self.data or profile.dataset
        cfg = cfg if cfg is not None else self.load().config_for(profile)
        name = getattr(cfg, "pretrain_dataset", None)
        if not isinstance(name, str):
            raise ValueError(f"{self.row}: data='config' needs a pretrain_dataset field in its config, "
                             f"got {type(cfg).__name__}")
        return name


# The registry, one line per method (the table follows the notebooks' order, whatever the order here).
METHODS: tuple[Method, ...] = (
    Method("exemplar", "course_lib.exemplar", "02_exemplar"),
    Method("rotation", "course_lib.rotation", "03_rotation"),
    Method("patch position", "course_lib.patch_position", "04_patch_position"),
    Method("context encoder", "course_lib.context_encoder", "05_context_encoder"),
    Method("colorization", "course_lib.colorization", "06_colorization", data="config", inputs="lightness_data"),
    Method("CPC", "course_lib.cpc", "07_cpc"),
    Method("SimCLR", "course_lib.simclr", "08_simclr"),
    Method("FaceNet", "course_lib.facenet", "09_facenet", labels=True),
)

SOURCE = "10_comparison"  # the source of rows this notebook had to compute itself


def _check_methods(methods: Sequence[Method]) -> list[Method]:
    methods = list(methods)
    if not all(isinstance(m, Method) for m in methods):
        raise TypeError("methods must be a sequence of comparison.Method")
    rows = [m.row for m in methods]
    if len(set(rows)) != len(rows) or set(rows) & set(BASELINES):
        raise ValueError(f"method rows must be unique and differ from the baselines {BASELINES}, got {rows}")
    return sorted(methods, key=lambda m: m.notebook)


def pretrain_data(method: Method, profile: Profile, cfg=None):
    """The images ``method`` pre-trains on with config ``cfg`` (default: its ``config_for(profile)``): its own
    dataset, its config's ``pretrain_dataset`` or the profile's (train split, cut by the profile)."""
    from course_lib.datasets import load_dataset

    return profile.limit(load_dataset(method.dataset(profile, cfg), "train"))


def evaluation_data(profile: Profile, method: Method | None = None):
    """The protocol's train and test splits (``evaluate.evaluation_data``, as every notebook loads them); turned
    into ``method``'s encoder inputs when its entry names an ``inputs`` function."""
    from course_lib.evaluate import evaluation_data as protocol_data

    train, test = protocol_data(profile)
    if method is not None and method.inputs:
        convert = getattr(method.load(), method.inputs)
        train, test = convert(train), convert(test)
    return train, test


# --------------------------------------------------------------------------- the table's rows


@dataclass
class Collected:
    """The comparison's rows in table order and where each came from."""

    rows: list[Evaluation]  # baselines, then the registered methods in notebook order, then any other stored row
    sources: dict[str, str] = field(default_factory=dict)  # row -> the notebook that saved it
    trained: list[str] = field(default_factory=list)  # rows computed by this call (missing from the store)
    missing: list[str] = field(default_factory=list)  # rows still missing (train_missing=False)

    def row(self, name: str) -> Evaluation:
        for r in self.rows:
            if r.method == name:
                return r
        raise KeyError(f"no row {name!r} among {[r.method for r in self.rows]}")


def check_row(name: str, row: Evaluation, budgets: Sequence[str] = ("10", "100", "all")) -> None:
    """Raise ``ValueError`` naming the row and the field unless ``row`` can stand in the table: a probe
    accuracy in [0, 1] for every budget, a kNN accuracy in [0, 1] (NaN, not measured, for a row of kind
    "supervised": the supervised baseline has no frozen features to vote with), and a compute of images,
    steps and seconds >= 0."""
    if row.method != name:
        raise ValueError(f"results row {name!r} holds the evaluation of {row.method!r}")
    for b in budgets:
        values = row.probe.get(b)
        if not values:
            raise ValueError(f"results row {name!r} has no probe accuracy with {b} labels per class "
                             f"(budgets stored: {sorted(row.probe)})")
        if not all(0 <= v <= 1 for v in values):
            raise ValueError(f"results row {name!r}: probe accuracies with {b} labels must lie in [0, 1], got {values}")
    if not (0 <= row.knn <= 1 or (row.kind == "supervised" and math.isnan(row.knn))):
        raise ValueError(f"results row {name!r}: kNN accuracy must lie in [0, 1], got {row.knn}")
    if not all(0 <= v <= 1 for v in row.finetune):
        raise ValueError(f"results row {name!r}: fine-tune accuracies must lie in [0, 1], got {row.finetune}")
    for key in ("images", "steps", "seconds"):
        value = row.compute.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"results row {name!r}: compute[{key!r}] must be a number >= 0, got {value!r} "
                             f"(compute: {row.compute})")


def pretrained(method: Method, profile: Profile, device: torch.device | None = None, progress: bool = True):
    """What ``method``'s notebook pre-trains: its ``pretrain`` (cached) on its data with its config for the
    profile; a ``train.Pretrained``."""
    module = method.load()
    cfg = module.config_for(profile)
    return module.pretrain(pretrain_data(method, profile, cfg), profile, cfg, device, progress=progress)


def train_row(method: Method, profile: Profile, device: torch.device | None = None) -> Evaluation:
    """What ``method``'s notebook does for its row: :func:`pretrained`, then the protocol
    (``compare_with_baselines``); returns the method's row."""
    from course_lib.baselines import compare_with_baselines

    pre = pretrained(method, profile, device)
    return compare_with_baselines(method.row, pre, *evaluation_data(profile, method), profile, device)[-1]


def baseline_rows(profile: Profile, device: torch.device | None = None) -> list[Evaluation]:
    """The baseline rows (``baselines.baselines``: computed once per profile and cached)."""
    from course_lib.baselines import baselines

    return baselines(*evaluation_data(profile), profile, device)


def collect(profile: Profile, device: torch.device | None = None, methods: Sequence[Method] = METHODS,
            folder: Path | None = None, train_missing: bool = True,
            train: Callable[[Method, Profile, torch.device | None], Evaluation] = train_row,
            compute_baselines: Callable[[Profile, torch.device | None], list[Evaluation]] = baseline_rows,
            say: Callable[[str], None] | None = print) -> Collected:
    """Every row of the comparison for ``profile``, read from the results store (in ``folder``, default the
    cache). Rows missing from it are computed -- a method's by ``train`` (default :func:`train_row`: its
    cached ``pretrain`` + the protocol), the baselines' by ``compute_baselines`` -- and saved with source
    ``"10_comparison"``; with ``train_missing=False`` they are only listed in ``missing``. Stored rows the
    registry does not know (a notebook not registered yet) come last. ``say`` gets a line per row computed.
    A store that is not a results file, or a row that cannot stand in the table, raises ``ValueError``."""
    from course_lib.results import load_rows, results_path, save_results

    methods = _check_methods(methods)
    say = say or (lambda _line: None)
    stored = load_rows(profile.name, folder)  # raises ValueError, naming the file, if it is not a results file
    path = results_path(profile.name, folder)
    rows = {name: Evaluation.from_dict(r) for name, r in stored.items()}
    budgets = [budget_name(b) for b in profile.labels_per_class]
    for name, row in rows.items():
        try:
            check_row(name, row, budgets)
        except ValueError as e:
            raise ValueError(f"{e} (in {path}: rerun the notebook that saved it, "
                             f"{stored[name].get('source') or 'unknown'}, or delete the file)") from None
    sources = {name: r.get("source", "") for name, r in stored.items()}
    trained, missing = [], []
    for method in methods:  # a method trained with labels is marked so, whatever its notebook saved
        if method.labels and method.row in rows:
            rows[method.row].kind = "supervised"

    def add(new: list[Evaluation]) -> None:
        for r in new:
            check_row(r.method, r, budgets)
        save_results(new, profile.name, folder, source=SOURCE, code=known_codes([r.method for r in new]))
        for r in new:
            rows[r.method], sources[r.method] = r, SOURCE
            trained.append(r.method)

    absent = [b for b in BASELINES if b not in rows]
    if absent and train_missing:
        say(f"{', '.join(absent)}: missing from the results store; computing the baselines (cached once per profile)")
        add([r for r in compute_baselines(profile, device) if r.method in absent])
    for method in methods:
        if method.row in rows:
            continue
        if train_missing:
            say(f"{method.row}: missing from the results store; pre-training it with {method.module}.pretrain "
                f"(cached) and evaluating it, as notebook {method.notebook} does")
            row = train(method, profile, device)
            if not isinstance(row, Evaluation) or row.method != method.row:
                raise ValueError(f"training {method.row!r} must give its Evaluation row, got {row!r}")
            if method.labels:
                row.kind = "supervised"
            add([row])
    missing = [n for n in (*BASELINES, *(m.row for m in methods)) if n not in rows]
    order = [*BASELINES, *(m.row for m in methods)]
    ordered = [rows[n] for n in order if n in rows] + [rows[n] for n in sorted(rows) if n not in order]
    return Collected(ordered, {r.method: sources.get(r.method, "") for r in ordered}, trained, missing)


# --------------------------------------------------------------------------- compute: FLOPs of training


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of ``fn()`` as ``FlopCounterMode`` counts them: matrix products and
    convolutions (forward and, if ``fn`` calls ``backward``, backward), 2 per multiply-add; element-wise
    operations (activations, normalisation, the optimiser) are not counted."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(step: Callable[[object], object], batch) -> int:
    """FLOPs of one training step of the course's loop: ``step(batch)``'s forward and the loss's backward."""

    def run() -> None:
        out = step(batch)
        loss = out if torch.is_tensor(out) else out["loss"]
        loss.backward()

    return count_flops(run)


def _adversarial_step_flops(run, batch) -> int:
    """FLOPs of one adversarial step: the first half, the adversary's backward, the model's loss and its backward
    (the adversary's optimiser step is element-wise, not counted)."""

    def go() -> None:
        first = run.step(batch)
        first["adversary_loss"].backward()
        run.adversary.finish(first)["loss"].backward()

    return count_flops(go)


def training_flops_per_image(method: Method, profile: Profile, device: torch.device | None = None) -> float:
    """FLOPs of one of ``method``'s training steps (forward + backward, its first batch at the real batch
    size) divided by the images that step drew: times a run's ``images`` it is the run's training FLOPs.
    The step, modules and loader are the method's own, from the seam its ``pretrain`` trains through
    (``train.method_setup``). Counted on a fresh model (the weights do not change the count); the global
    random state is restored."""
    from course_lib.train import method_module, method_setup

    device = device or get_device()
    profile = profile.replace(compile=False)  # the same arithmetic; the counter sees the eager operations
    with torch.random.fork_rng(devices=[]):
        cfg = method_module(method.module).config_for(profile)
        _, run, loader = method_setup(method.module, pretrain_data(method, profile, cfg), profile, cfg, device)
        for m in [run.backbone, *run.heads.values()]:
            m.train()
        batch = next(iter(loader))
        flops = step_flops(run.step, batch) if run.adversary is None else _adversarial_step_flops(run, batch)
    images = len(batch.x)
    if images == 0 or flops == 0:
        raise ValueError(f"{method.row}: a training step of {images} images counted {flops} FLOPs")
    return flops / images


def row_code(name: str) -> str:
    """A short hash of the code that row ``name`` of the comparison (and, for a method, its curve) depends on:
    this module and every course module it imports (the protocol, the baselines), and for a registered method
    its module and what that imports (``checkpoints.code_of``). Recorded beside a sweep's rows and the tuning
    pass's scores, so that what is kept from a recorded file is what today's code would compute again.
    ``ValueError`` for a name that is neither a baseline nor a registered method."""
    from course_lib.checkpoints import code_of, code_version

    modules = set(code_of(__name__))
    if name not in BASELINES:
        method = next((m for m in METHODS if m.row == name), None)
        if method is None:
            raise ValueError(f"unknown row {name!r}: expected one of {[*BASELINES, *(m.row for m in METHODS)]}")
        modules |= set(code_of(method.module))
    return code_version(*modules)


def known_codes(names: Sequence[str]) -> dict[str, str]:
    """:func:`row_code` of each of ``names`` that is a row of the comparison (others are left out)."""
    known = {*BASELINES, *(m.row for m in METHODS)}
    return {n: row_code(n) for n in names if n in known}


def _profile_key(profile: Profile) -> dict:
    """The profile as part of a cache key here: every field but the time limits, which change no count or reading
    (as ``train.pretrain_key`` keys a run)."""
    return {k: v for k, v in profile.as_dict().items() if k not in ("time_budget_s", "cell_timeout_s")}


def flops_per_image(methods: Sequence[Method], profile: Profile, device: torch.device | None = None) -> dict[str, float]:
    """:func:`training_flops_per_image` of every method, by row name; cached (keyed by the profile and the
    code of the method and the core modules)."""
    from course_lib.checkpoints import code_of, load_or_compute

    out = {}
    for m in _check_methods(methods):
        key = {"task": "training FLOPs per image", "method": m.row, "module": m.module, "data": m.data, "inputs": m.inputs,
               "profile": _profile_key(profile)}
        result = load_or_compute("flops", key, lambda m=m: {"flops_per_image": training_flops_per_image(m, profile, device)},
                                 code=tuple(sorted({*code_of(m.module), *code_of(__name__)})))
        out[m.row] = float(result["flops_per_image"])
    return out


def supervised_flops_per_image(profile: Profile, device: torch.device | None = None) -> float:
    """FLOPs of one training step of the supervised baseline (``supervised.supervised_step``, the step its runs
    train with: the backbone and a linear head, forward and the cross-entropy's backward) divided by its images:
    times the images a run of that row drew, its training FLOPs, in the same unit as
    :func:`training_flops_per_image`. Cached like :func:`flops_per_image`."""
    from course_lib.checkpoints import code_of, load_or_compute

    key = {"task": "training FLOPs per image", "method": SUPERVISED,
           "profile": _profile_key(profile)}
    result = load_or_compute("flops", key, lambda: {"flops_per_image": _supervised_step_flops(profile, device)},
                             code=tuple(sorted({*code_of("course_lib.supervised"), *code_of(__name__)})))
    return float(result["flops_per_image"])


def _supervised_step_flops(profile: Profile, device: torch.device | None) -> float:
    from course_lib.loader import DeviceLoader
    from course_lib.supervised import supervised_step
    from course_lib.train import seeded_backbone

    device = device or get_device()
    train, _ = evaluation_data(profile)
    cfg = supervised_config(profile, 100)
    with torch.random.fork_rng(devices=[]):
        net = seeded_backbone(profile.replace(compile=False), train.images.shape[1], device).train()
        head = LinearHead(net.feature_dim, train.num_classes).to(device).train()
        loader = DeviceLoader(train.images, train.labels, min(cfg.batch_size, len(train)), device=device, seed=0)
        batch = next(iter(loader))
        flops = step_flops(supervised_step(net, head, cfg, torch.Generator(device=device).manual_seed(0)), batch)
    return flops / len(batch.x)


def achieved_gflops(flops_per_image: float, compute: dict) -> float:
    """GFLOP/s a training run achieved: FLOPs per image x images seen / wall seconds (NaN without a run)."""
    images, seconds = compute.get("images", 0), compute.get("seconds", 0)
    if not images or not seconds:
        return math.nan
    return flops_per_image * images / seconds / 1e9


def compute_columns(rows: Sequence[Evaluation], flops: dict[str, float], peak_gflops: float) -> dict[str, dict[str, str]]:
    """Extra table columns for every row with a training run: its training FLOPs in total, the GFLOP/s it
    achieved and that as a fraction of ``peak_gflops``; '–' for rows without one (the baselines)."""
    if not peak_gflops > 0:
        raise ValueError(f"peak_gflops must be > 0, got {peak_gflops!r}")
    out = {}
    for r in rows:
        rate = achieved_gflops(flops[r.method], r.compute) if r.method in flops else math.nan
        total = flops[r.method] * r.compute.get("images", 0) if r.method in flops else math.nan
        out[r.method] = ({"training TFLOP": "–", "GFLOP/s": "–", "% of peak": "–"} if math.isnan(rate) else
                         {"training TFLOP": f"{total / 1e12:.1f}", "GFLOP/s": f"{rate:.1f}",
                          "% of peak": f"{100 * rate / peak_gflops:.0f}%"})
    return out


def efficiency_table(rows: Sequence[Evaluation], flops: dict[str, float], peak_gflops: float) -> str:
    """A Markdown table of what each method's training cost and how close to the machine's peak it ran."""
    from course_lib.results import markdown_table

    cols = compute_columns(rows, flops, peak_gflops)
    header = ["method", "GFLOP per image (fwd + bwd)", "images seen", "seconds", "training TFLOP", "GFLOP/s", "% of peak"]
    return markdown_table(header, [
        [r.method, f"{flops[r.method] / 1e9:.3f}", f"{int(r.compute.get('images', 0)):,}",
         f"{float(r.compute.get('seconds', 0)):.0f}", *(cols[r.method][c] for c in header[4:])]
        for r in rows if r.method in flops])


# --------------------------------------------------------------------------- accuracy against compute


def curve_budget(profile: Profile) -> int:
    """The labels per class of the curves' probe: 100 if the profile's protocol has that budget, else its first."""
    return 100 if 100 in profile.labels_per_class else profile.labels_per_class[0]


def curve(method: Method, profile: Profile, row: Evaluation, device: torch.device | None = None) -> list[dict]:
    """Accuracy against compute along ``method``'s pre-training run (what its notebook trains,
    :func:`pretrained`): one point for every copy of the backbone the run kept part-way
    (``train.SNAPSHOT_FRACTIONS`` of its steps), then the run's end, read from ``row`` (the method's row of
    the table: the protocol's reading of the final backbone). Each point is ``{"steps", "images"}`` (the
    source images the run had drawn: times :func:`flops_per_image`, its training FLOPs) and the protocol's
    reading of that backbone: ``probe`` and ``probe_std`` (mean and std over the protocol's label draws,
    :func:`curve_budget` labels per class, the penalty chosen on the validation split) and ``knn`` (every
    label votes), under the protocol's one batch-norm rule (``evaluate.protocol_features``), as the table
    reads it. Each copy's reading is cached, keyed by its weights. A ``row`` of another run (other images
    seen) raises ``ValueError``."""
    from course_lib.checkpoints import code_of, load_or_compute, weights_digest
    from course_lib.evaluate import evaluate_features, protocol_features, protocol_for

    pre = pretrained(method, profile, device, progress=False)
    per_class = curve_budget(profile)
    labels = budget_name(per_class)
    if not isinstance(row, Evaluation) or row.method != method.row or labels not in row.probe:
        raise ValueError(f"row must be {method.row!r}'s row of the table with a probe of {labels} labels per class, "
                         f"got {getattr(row, 'method', row)!r}")
    if row.compute.get("images") != pre.history.images:
        raise ValueError(f"{method.row}: the row's run saw {row.compute.get('images')} images, the cached run "
                         f"{pre.history.images}: rerun notebook {method.notebook} to save the row of this run")
    train, test = evaluation_data(profile, method)
    protocol = protocol_for(profile, labels_per_class=(per_class,))
    points = []
    for mark, backbone in pre.along:
        def measure(backbone=backbone) -> dict:
            h_train, h_test = protocol_features(backbone, train, test, protocol)
            reading = evaluate_features(method.row, h_train, train.labels, h_test, test.labels, protocol)
            return {"probe": reading.mean(labels), "probe_std": reading.std(labels), "knn": reading.knn}

        key = {"task": "curve point", "method": method.row, "protocol": protocol.as_dict(),
               "profile": _profile_key(profile),
               "data": [len(train), len(test), list(train.images.shape[1:])], "weights": weights_digest(backbone)}
        reading = load_or_compute("curve", key, measure, code=code_of(protocol_features))
        points.append({"steps": int(mark["steps"]), "images": int(mark["images"]), **reading})
    end = {"probe": row.mean(labels), "probe_std": row.std(labels), "knn": row.knn}
    return [*points, {"steps": pre.history.steps, "images": pre.history.images, **end}]


def equal_budgets(curves: dict[str, Sequence[dict]], flops: dict[str, float]) -> list[float]:
    """The training-FLOP budgets at which the methods of ``curves`` (row name -> :func:`curve`) are read side by
    side: the smallest of their own budgets (each run's last point, times its :func:`flops_per_image`) and their
    median, in FLOPs, ascending (one budget when the two coincide). A method without FLOPs raises ``KeyError``."""
    if not curves:
        raise ValueError("curves: give at least one method's curve")
    missing = sorted(set(curves) - set(flops))
    if missing:
        raise KeyError(f"no FLOPs per image for {missing} (known: {sorted(flops)})")
    own = [points[-1]["images"] * flops[name] for name, points in curves.items()]
    return sorted({min(own), statistics.median(own)})


def at_budget(points: Sequence[dict], flops_per_image: float, budget_flops: float) -> float:
    """The probe accuracy of a curve (:func:`curve`) at ``budget_flops`` training FLOPs: read off the line between
    the two points around it, linear in log FLOPs; at a point, its own value; NaN when the run never reached the
    budget or its first point lies beyond it (no extrapolation)."""
    if not flops_per_image > 0 or not budget_flops > 0:
        raise ValueError(f"flops_per_image and budget_flops must be > 0, got {flops_per_image!r}, {budget_flops!r}")
    xs = [math.log(p["images"] * flops_per_image) for p in points if p["images"] > 0]
    ys = [p["probe"] for p in points if p["images"] > 0]
    if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise ValueError(f"a curve's points must come in order of images seen, got {[p['images'] for p in points]}")
    x, eps = math.log(budget_flops), 1e-9  # eps: a budget computed from a point's own FLOPs reads that point
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if x0 - eps <= x <= x1 + eps:
            return y0 + (y1 - y0) * min(max((x - x0) / (x1 - x0), 0.0), 1.0)
    if len(xs) == 1 and abs(x - xs[0]) <= eps:
        return ys[0]
    return math.nan
