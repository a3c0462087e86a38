"""The tuning pass: one documented budget for every self-supervised method, spent on the validation split.

``python -m course_lib tune --seeds 0 1 2`` scores every configuration of :data:`GRIDS` -- at most
:data:`BUDGET` per method, today's recipe first -- for each training seed, and records the scores in
``results/tuning-<profile>.json`` with the command and the git revision that made them.

The rules, the same for every method:

* **At most** :data:`BUDGET` **configurations**, today's recipe (``{}``) among them. A configuration
  changes what a method learns -- its rate, its augmentations, its pretext task's settings -- never how
  long it trains: none changes the epochs or the batch (``check_grids``), so every configuration of a
  method takes the same optimiser steps as today's, and a choice cannot buy its gain with compute.
* **The score is the validation split's**: :func:`validation_reading` re-estimates the encoder's
  batch-norm statistics by the protocol's one rule, fits the protocol's probe with 100 labels per class
  (``comparison.curve_budget``: the curves' budget; its three label draws, the penalty chosen as the protocol chooses it) and measures it on the
  validation images, carved out of the *training* split. The test split is never loaded: a configuration
  chosen here is not chosen on the numbers the notebooks report.
* **Seeds 0-2 choose**: :func:`chosen` takes the configuration with the highest mean score over the
  seeds the file holds; today's recipe keeps its place unless another is higher by more than the
  standard deviation of the per-seed differences (:func:`chosen`). The held-out seeds 3-5 then confirm
  the claims (``python -m course_lib compare --seeds 0 1 2 3 4 5``), and nothing is chosen on them.

Each configuration's pre-training runs through the method's own cached ``pretrain``, in the seed's own
cache (``config.seed_cache_dir``, as the sweep: today's recipe at seeds 0-2 is read, not trained again,
after the sweep), with complete runs (time budgets off); each score is cached too, keyed by the weights.
So an interrupted pass resumes where it stopped, and the recorded file is written, atomically, only
at the end. ``--add`` adds seeds to a recorded pass (``tune --seeds 2 --add``) without training its seeds
again, where each method's grid and the code its scores depend on (:func:`score_code`) are the recorded ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from course_lib.config import (
    BUDGETS_ENV,
    REPO_ROOT,
    Profile,
    environ,
    get_profile,
    git_revision,
    seed_cache_dir,
    seed_everything,
)
from course_lib.evaluate import mean_std
from course_lib.files import atomic_write

FORMAT = 2  # of the recorded file
BUDGET = 8  # configurations per method, today's recipe included

# Per method, today's recipe first, then at most BUDGET - 1 others. "lr" is AdamW's rate: the config's own
# where the method has one (CPC, SimCLR), else the profile's, which the other methods train with (2e-3 on
# the fast profile). Three times and a third of today's rate for every method, then the settings each paper
# names as the ones that matter for its pretext task.
GRIDS: dict[str, tuple[dict, ...]] = {
    "exemplar": ({}, {"lr": 6e-3}, {"lr": 7e-4},
                 {"strength": 0.25}, {"strength": 1.0},  # Dosovitskiy et al. 2014, Fig. 3: the strength matters
                 {"max_degrees": 10.0}, {"max_degrees": 40.0}),
    "rotation": ({}, {"lr": 6e-3}, {"lr": 7e-4},
                 {"head_hidden_dim": 0}, {"head_hidden_dim": 1024},  # how rotation-specific h may become
                 {"flip_p": 0.0}),
    "patch position": ({}, {"lr": 6e-3}, {"lr": 7e-4},
                       {"gap": 0}, {"gap": 1},  # Doersch et al. 2015, sec. 3: the gap and jitter against shortcuts
                       {"jitter": 0}, {"gap": 0, "jitter": 4},  # (32-px images hold 3 patches, 2 gaps, 2 jitters)
                       {"hidden_dim": 512}),
    "context encoder": ({}, {"lr": 6e-3}, {"lr": 7e-4},
                        {"mask": "center"}, {"mask": "blocks"},  # Pathak et al. 2016, Table 1: the region's shape
                        {"mask_fraction": 0.125}, {"mask_fraction": 0.4},
                        {"overlap_weight": 1.0}),
    "colorization": ({}, {"lr": 6e-3}, {"lr": 7e-4},
                     {"rebalance_lambda": 0.25}, {"rebalance_lambda": 1.0},  # Zhang et al. 2016, sec. 2.2
                     {"hidden_dim": 128},
                     {"crop_size": 16}),
    "CPC": ({}, {"lr": 6e-3}, {"lr": 7e-4},
            {"pred_steps": 2}, {"pred_steps": 5},  # how far ahead it predicts
            {"skip_rows": 1}, {"patch_norm": "layer"},  # notebook 07's two shortcuts (CPC v2, Hénaff et al. 2020)
            {"context_layers": 3}),
    "SimCLR": ({}, {"lr": 1.5e-2}, {"lr": 1.7e-3},
               {"temperature": 0.1}, {"temperature": 0.5},  # Chen et al. 2020, Table 5: the temperature
               {"color_strength": 0.5},  # Table 1 and Fig. 5: the augmentations' strength
               {"crop_scale": (0.2, 1.0)}, {"blur_p": 0.0}),
}

UNCHANGED = ("num_epochs", "batch_size")  # no configuration may change how long a method trains


def recorded_path(profile_name: str) -> Path:
    """Where the recorded tuning pass of a profile lives in the repository."""
    return REPO_ROOT / "results" / f"tuning-{profile_name}.json"


def _method(row: str):
    from course_lib import comparison

    for m in comparison.METHODS:
        if m.row == row and not m.labels:
            return m
    known = [m.row for m in comparison.METHODS if not m.labels]
    raise ValueError(f"unknown self-supervised method {row!r}: expected one of {known}")


def apply(row: str, profile: Profile, overrides: dict) -> tuple[Profile, object]:
    """The profile and config one configuration of method ``row`` pre-trains with: ``overrides`` are fields
    of the method's config, except ``lr``, which goes to the profile when the config has no rate of its own.
    An unknown field raises ``ValueError`` naming the valid ones, before any training."""
    module = _method(row).load()
    fields = {f.name for f in dataclasses.fields(type(module.config_for(profile)))}
    unknown = sorted(set(overrides) - fields - {"lr"})
    if unknown:
        raise ValueError(f"{row}: {unknown} are not fields of its config (expected some of {sorted(fields | {'lr'})})")
    own = dict(overrides)
    if "lr" in own and "lr" not in fields:
        profile = dataclasses.replace(profile, lr=own.pop("lr"))
    return profile, module.config_for(profile, **own)


def check_grids(grids: dict[str, Sequence[dict]], profile: Profile) -> None:
    """Every grid of ``grids`` follows the pass's rules: at most :data:`BUDGET` configurations, today's
    (``{}``) first, none twice, each a valid configuration (:func:`apply`) with today's epochs and batch."""
    for row, grid in grids.items():
        grid = list(grid)
        if not 1 <= len(grid) <= BUDGET or grid[0] != {}:
            raise ValueError(f"{row}: a grid holds today's recipe {{}} first and at most {BUDGET} configurations, "
                             f"got {len(grid)} starting with {grid[:1]}")
        if len({json.dumps(g, sort_keys=True) for g in grid}) != len(grid):
            raise ValueError(f"{row}: a configuration appears twice in its grid")
        _, today = apply(row, profile, {})
        for g in grid:
            _, cfg = apply(row, profile, g)
            changed = [f for f in UNCHANGED if getattr(cfg, f, None) != getattr(today, f, None)]
            if changed:
                raise ValueError(f"{row}: configuration {g} changes {changed}: a configuration may not change how "
                                 "long the method trains")


def validation_reading(encoder, train, profile: Profile, labels_per_class: int) -> dict:
    """The tuning score of a pre-trained encoder: the protocol's probe with ``labels_per_class`` labels per
    class, fitted on each of the protocol's label draws (the penalty chosen on the validation split, as the
    protocol chooses it) on the features under the protocol's batch-norm rule, and measured on the
    validation split of ``train`` (the training split: the test split is never needed). Returns
    ``{"validation", "validation_std"}``: mean and std over the draws."""
    from course_lib.evaluate import (
        choose_weight_decay,
        evaluation_encoder,
        extract_features,
        label_draws,
        linear_probe_accuracy,
        protocol_for,
        split_validation,
    )

    protocol = protocol_for(profile, labels_per_class=(labels_per_class,))
    h = extract_features(evaluation_encoder(encoder, train, protocol), train.images)
    y = train.labels
    _, val = split_validation(y, protocol.validation_per_class, protocol.seed)
    draws = label_draws(y, protocol, labels_per_class)
    wd, _ = choose_weight_decay(h[draws[0]], y[draws[0]], h[val], y[val], protocol.weight_decays,
                                train.num_classes, protocol.probe_max_iter)
    accs = [linear_probe_accuracy(h[idx], y[idx], h[val], y[val], wd, protocol.probe_max_iter) for idx in draws]
    m, s = mean_std(accs)
    return {"validation": m, "validation_std": s}


# the reading's own source, part of each score's cache key: fixed when the module is loaded, so that a stand-in put in
# its place (a test's) cannot change which cached score is read
READER_VERSION = hashlib.sha256(inspect.getsource(validation_reading).encode()).hexdigest()[:12]


def score(row: str, profile: Profile, overrides: dict, device: torch.device | None = None) -> dict:
    """One configuration of method ``row`` at ``profile``'s seed: its cached pre-training (the method's own
    ``pretrain`` with :func:`apply`'s profile and config), then :func:`validation_reading` of the encoder
    under the unchanged ``profile`` (cached, keyed by the weights). Returns the reading with the run's
    ``steps`` and ``images``."""
    from course_lib import comparison
    from course_lib.checkpoints import code_of, load_or_compute, weights_digest

    method = _method(row)
    run_profile, cfg = apply(row, profile, overrides)
    pre = method.load().pretrain(comparison.pretrain_data(method, run_profile, cfg), run_profile, cfg, device,
                                 progress=False)
    train, _ = comparison.evaluation_data(profile, method)
    per_class = comparison.curve_budget(profile)  # 100 labels per class: what the notebooks' claims are about
    key = {"task": "tuning reading", "method": row, "profile": comparison._profile_key(profile),
           "labels_per_class": per_class, "data": [len(train), list(train.images.shape[1:])],
           "weights": weights_digest(pre.backbone),
           "reader": READER_VERSION}
    # keyed by the reading's own source and the protocol's modules, not the rest of this one (the recording, the
    # choice): an edit there reads the cached scores again
    reading = load_or_compute("tuning", key, lambda: validation_reading(pre.backbone, train, profile, per_class),
                              code=code_of("course_lib.comparison"))
    return {**reading, "steps": pre.history.steps, "images": pre.history.images}


def score_code(row: str) -> str:
    """A short hash of the code a score of method ``row`` depends on: its row's code
    (``comparison.row_code``: its module, the protocol and the data, and all they import) and the functions of
    this module that pre-train and read a configuration. Seeds recorded under one hash can be joined by seeds
    scored under the same hash (``--add``); the rest of this module (the recording, the choice, the table) is
    not part of it."""
    from course_lib.comparison import row_code

    _method(row)  # a clear error for an unknown row
    digest = hashlib.sha256(row_code(row).encode())
    for fn in (apply, validation_reading, score):
        digest.update(inspect.getsource(fn).encode())
    return digest.hexdigest()[:12]


def _command(seeds: Sequence[int], methods: Sequence[str], profile_name: str, add: bool = False) -> str:
    return ("python -m course_lib tune --seeds " + " ".join(map(str, seeds))
            + (" --methods " + " ".join(f"'{m}'" if " " in m else m for m in methods) if list(methods) != list(GRIDS)
               else "")
            + (f" --profile {profile_name}" if profile_name != "fast" else "") + (" --add" if add else ""))


def _recorded_seeds(out: Path, profile_name: str, methods: Sequence[str], codes: dict[str, str]) -> dict:
    """For ``--add``: the recorded pass in ``out``, checked to be one the new seeds can join -- the same
    profile and methods, each method's grid and :func:`score_code` the recorded ones. ``ValueError`` otherwise,
    naming what differs, before any training."""
    record = load_tuning(out)
    if record is None:
        raise ValueError(f"--add: there is no recorded pass in {out} to add seeds to")
    if record["profile"] != profile_name or list(record["methods"]) != list(methods):
        raise ValueError(f"--add: {out} records profile {record['profile']!r} and methods {list(record['methods'])}; "
                         f"this pass has {profile_name!r} and {list(methods)}")
    for row in methods:
        if [c["overrides"] for c in record["methods"][row]] != json.loads(json.dumps(list(GRIDS[row]))):
            raise ValueError(f"--add: {row}'s grid is not the one {out} records; run every seed again without --add")
        if record["code"][row] != codes[row]:
            raise ValueError(f"--add: the code {row}'s scores depend on has changed since {out} was recorded "
                             f"({record['code'][row]} then, {codes[row]} now); run every seed again without --add")
    return record


def run_tuning(profile_name: str, seeds: Sequence[int], methods: Sequence[str] | None = None,
               out: Path | None = None, device: torch.device | None = None, say: Callable[[str], None] = print,
               scorer: Callable | None = None, add: bool = False) -> Path:
    """Every configuration of :data:`GRIDS` of each of ``methods`` (default: all) for each of ``seeds``
    (``scorer(row, profile, overrides, device)``, default :func:`score`, in the seed's own cache, time budgets
    off), then the recorded file ``out`` (default :func:`recorded_path`), written atomically; returns its
    path. With ``add``, the seeds that ``out`` records and ``seeds`` does not are kept, not trained again
    (:func:`_recorded_seeds` checks that they can be). Every grid is checked before any training."""
    from course_lib.sweep import check_seeds

    seeds = check_seeds(seeds)
    base = get_profile(profile_name)
    methods = list(methods) if methods else list(GRIDS)
    for row in methods:
        _method(row)
        if row not in GRIDS:
            raise ValueError(f"{row}: no grid in tuning.GRIDS")
    check_grids({row: GRIDS[row] for row in methods}, base)
    scorer = scorer or score
    out = Path(out) if out is not None else recorded_path(base.name)
    codes = {row: score_code(row) for row in methods}
    old = _recorded_seeds(out, base.name, methods, codes) if add else None
    readings: dict[str, list[dict[str, dict]]] = {
        row: [{s: r for s, r in c["seeds"].items() if int(s) not in seeds} if old else {}
              for c in (old["methods"][row] if old else GRIDS[row])] for row in methods}
    with environ(**{BUDGETS_ENV: "off"}):
        for seed in seeds:
            with environ(COURSE_CACHE=str(seed_cache_dir(seed))):
                profile = get_profile(profile_name, seed=seed)
                for row in methods:
                    for i, overrides in enumerate(GRIDS[row]):
                        seed_everything(seed, threads=profile.num_threads)  # each run as its notebook starts it
                        reading = scorer(row, profile, overrides, device)
                        readings[row][i][str(seed)] = reading
                        say(f"seed {seed} {row} {overrides or 'today'}: validation {100 * reading['validation']:.1f}")
    from course_lib.comparison import curve_budget

    every = sorted({int(s) for row in methods for c in readings[row] for s in c})
    this = {"command": _command(seeds, methods, base.name, add), "revision": git_revision() or "unknown",
            "seeds": list(seeds), "python": sys.version.split()[0], "torch": torch.__version__}
    record = {"format": FORMAT, "profile": base.name, "budget": BUDGET, "labels_per_class": curve_budget(base),
              "command": _command(every, methods, base.name),  # remakes the whole file in one pass
              "passes": [*(old["passes"] if old else []), this],  # the commands that did make it
              "code": codes,
              "methods": {row: [{"overrides": g, "seeds": dict(sorted(readings[row][i].items(), key=lambda x: int(x[0])))}
                                for i, g in enumerate(GRIDS[row])] for row in methods}}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    say(f"recorded the tuning pass of {len(methods)} method(s), seeds {seeds}, in {out}")
    return out


def load_tuning(path: Path | str) -> dict | None:
    """The recorded tuning pass in ``path`` (its JSON); None when there is none; ``ValueError`` for a file
    of another format or shape, naming the command that remakes it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        ok = record.get("format") == FORMAT and all(
            isinstance(c["overrides"], dict) and all("validation" in r for r in c["seeds"].values())
            for configs in record["methods"].values() for c in configs) and all(
            isinstance(p["command"], str) and isinstance(p["revision"], str) for p in record["passes"]) and set(
            record["code"]) == set(record["methods"])
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ValueError(f"{path} is not a recorded tuning pass of format {FORMAT}; remake it with "
                         "`python -m course_lib tune --seeds 0 1 2`")
    return record


def chosen(configs: Sequence[dict]) -> int:
    """The index of the configuration a method keeps, among its recorded ``configs`` (today's first): the one
    with the highest mean validation score over the seeds all of them were scored on, if it beats today's by
    more than the standard deviation of its per-seed differences from today's (0 with one seed); else today's,
    0. A gain within the seeds' noise does not change the recipe."""
    if not configs:
        raise ValueError("no configurations to choose from")
    seeds = sorted(set.intersection(*(set(c["seeds"]) for c in configs)))
    if not seeds:
        return 0
    means = [mean_std([c["seeds"][s]["validation"] for s in seeds])[0] for c in configs]
    best = max(range(len(configs)), key=lambda i: (means[i], -i))
    diffs = [configs[best]["seeds"][s]["validation"] - configs[0]["seeds"][s]["validation"] for s in seeds]
    gain, spread = mean_std(diffs)
    return best if best != 0 and gain > spread else 0


def tuning_table(record: dict) -> str:
    """A Markdown table of a recorded pass: per method and configuration, the validation score per seed and its
    mean ± std over seeds (in %), today's recipe and the one :func:`chosen` keeps marked."""
    from course_lib.results import markdown_table

    seeds = sorted({s for configs in record["methods"].values() for c in configs for s in c["seeds"]}, key=int)
    lines = []
    for row, configs in record["methods"].items():
        keep = chosen(configs)
        for i, c in enumerate(configs):
            values = [c["seeds"][s]["validation"] for s in seeds if s in c["seeds"]]
            m, sd = mean_std(values)
            name = ", ".join(f"{k}={v}" for k, v in c["overrides"].items()) or "today's recipe"
            lines.append([row if i == 0 else "", name + (" ← kept" if i == keep else ""),
                          *(f"{100 * c['seeds'][s]['validation']:.1f}" if s in c["seeds"] else "–" for s in seeds),
                          "–" if math.isnan(m) else f"{100 * m:.1f} ± {100 * sd:.1f}"])
    return markdown_table(["method", "configuration", *(f"seed {s}" for s in seeds), "mean ± std"], lines)
