"""The comparison over training seeds, recorded: ``python -m course_lib compare --seeds 0 1 2``.

A notebook shows one training seed; whether a gain is a result or the luck of one run needs several.
:func:`run_sweep` builds, for each seed, every row of the comparison (``comparison.collect``: each
method's cached ``pretrain`` at that seed, complete runs -- time budgets off --, then the protocol) in
that seed's own cache, :func:`course_lib.config.seed_cache_dir`: the same folder that
``python -m course_lib course --seed N`` fills, so rows a notebook run saved are read, not computed
again. Each row is saved the moment it is computed and every pre-training is checkpointed, so a sweep
that is interrupted resumes where it stopped and loses at most the row in progress.

Beside the rows it records each self-supervised method's accuracy-against-compute curve for that seed
(:func:`method_curves`, ``comparison.curve``: copies of the backbone along the run), so that notebook 10 can
read the methods at equal FLOPs over seeds. At the end it writes the rows (and curves) of every seed to one
**recorded file** (``results/seeds-<profile>.json``,
committed), with the command, the git revision and the protocol version that made it. Notebook 10 and
the README read that file, labelled as recorded; :func:`seed_summary` turns it into each method's gain
over a reference row per seed, its mean and its spread over seeds (the standard deviation of the per-seed
gains) beside the spread over label draws. The file records each row's code (``comparison.row_code``) and
every pass that wrote it: ``compare --seeds ... --add`` (:func:`kept_rows`) keeps what it holds under
today's code and computes only the rest.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from course_lib.config import (
    BUDGETS_ENV,
    REPO_ROOT,
    check_int,
    environ,
    get_profile,
    git_revision,
    seed_cache_dir,
    seed_everything,
)
from course_lib.evaluate import PROTOCOL_VERSION, Evaluation, mean_std
from course_lib.files import atomic_write

FORMAT = 1  # of the recorded file


def recorded_path(profile_name: str) -> Path:
    """Where the recorded sweep of a profile lives in the repository."""
    return REPO_ROOT / "results" / f"seeds-{profile_name}.json"


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: give at least one training seed, e.g. 0 1 2")
    for s in seeds:
        check_int(s, "seed", minimum=0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be different, got {seeds}")
    return seeds


def method_curves(profile, collected, device: torch.device | None = None) -> dict[str, list[dict]]:
    """``comparison.curve`` of every self-supervised method among ``collected``'s rows (a ``comparison.Collected``),
    by row name: what a sweep records beside the rows, in the seed's own cache."""
    from course_lib import comparison

    names = {r.method for r in collected.rows}
    return {m.row: comparison.curve(m, profile, collected.row(m.row), device)
            for m in comparison.METHODS if not m.labels and m.row in names}


def curve_flops(profile, names, device: torch.device | None = None) -> dict[str, float]:
    """``comparison.flops_per_image`` of the registered methods among ``names`` (the curves' methods), by row
    name: what turns a curve's images into training FLOPs, recorded beside the curves (cached)."""
    from course_lib import comparison

    return comparison.flops_per_image([m for m in comparison.METHODS if m.row in set(names)], profile, device)


def _command(seeds: Sequence[int], profile_name: str, add: bool = False) -> str:
    return ("python -m course_lib compare --seeds " + " ".join(map(str, seeds))
            + (f" --profile {profile_name}" if profile_name != "fast" else "") + (" --add" if add else ""))


def kept_rows(out: Path, profile_name: str, seeds: Sequence[int]) -> tuple[dict[str, tuple[dict, dict]], list[dict]]:
    """For ``--add``: per seed that the recorded sweep ``out`` holds, the rows and curves it can keep -- those
    whose recorded ``comparison.row_code`` is today's (a row recorded without one is computed again) -- as
    ``{seed: (rows, curves)}``, and the passes that wrote the file. A recorded seed missing from ``seeds`` stays in the file as it is, so all its
    rows must be kept; ``ValueError`` otherwise, naming the rows whose code changed, and where there is no
    recorded sweep, or one of another profile or protocol (:func:`load_sweep`), before any work."""
    from course_lib.comparison import known_codes

    if load_sweep(out, profile_name) is None:
        raise ValueError(f"--add: there is no recorded sweep in {out} to add to")
    record = json.loads(Path(out).read_text())
    codes = record.get("code", {})
    today = known_codes(list(codes))  # a row no longer in the comparison has none: not kept
    same = {name for name, code in codes.items() if today.get(name) == code}
    kept = {}
    for seed, by_name in record["seeds"].items():
        kept[seed] = ({n: r for n, r in by_name.items() if n in same},
                      {n: c for n, c in record.get("curves", {}).get(seed, {}).items() if n in same})
        stale = sorted(set(by_name) - same)
        if int(seed) not in seeds and stale:
            raise ValueError(f"--add: seed {seed} of {out} holds rows that today's code would compute otherwise "
                             f"({', '.join(stale)}); give it in --seeds too")
    return kept, record.get("passes", [])


def run_sweep(profile_name: str, seeds: Sequence[int], out: Path | None = None, device: torch.device | None = None,
              collect: Callable | None = None, say: Callable[[str], None] = print,
              curves: Callable | None = None, flops: Callable | None = None, add: bool = False) -> Path:
    """Every row of the comparison for each of ``seeds`` (computed where missing, see the module's text) and
    each self-supervised method's accuracy-against-compute curve (``curves(profile, collected, device)``,
    default :func:`method_curves`) with the FLOPs per image of the curves' methods (``flops(profile, names,
    device)``, default :func:`curve_flops`), then the recorded file ``out`` (default :func:`recorded_path`),
    written atomically; returns its path. ``collect``: ``comparison.collect`` unless given (tests pass
    stand-ins).

    With ``add``, the rows and curves that ``out`` records under today's code (:func:`kept_rows`) are kept --
    put in the seed's results store before ``collect``, so that only the others are computed -- and the
    seeds it holds beyond ``seeds`` stay in the file: after a change to one method, the sweep trains that
    method again, not every row."""
    from course_lib import comparison
    from course_lib.results import drop_rows, load_rows, save_results

    seeds = check_seeds(seeds)
    get_profile(profile_name)  # an unknown profile fails here, naming the valid ones, before any work
    collect = collect or comparison.collect
    curves = curves or method_curves
    out = Path(out) if out is not None else recorded_path(profile_name)
    kept, passes = kept_rows(out, profile_name, seeds) if add else ({}, [])
    rows: dict[str, dict[str, dict]] = {}
    along: dict[str, dict[str, list[dict]]] = {}
    with environ(**{BUDGETS_ENV: "off"}):  # complete runs: a time budget would cut a run short
        for seed in seeds:
            folder = seed_cache_dir(seed)
            say(f"seed {seed}: rows in {folder}")
            with environ(COURSE_CACHE=str(folder)):
                profile = get_profile(profile_name, seed=seed)
                keep_rows, keep_curves = kept.get(str(seed), ({}, {}))
                if add:  # the store holds what this seed's rows were: keep only what today's code would compute
                    stored = load_rows(profile.name, folder)
                    today = comparison.known_codes(list(stored))
                    drop_rows([n for n, r in stored.items() if n not in keep_rows and r.get("code") != today.get(n)],
                              profile.name, folder)
                    save_results([Evaluation.from_dict(r) for n, r in keep_rows.items()], profile.name, folder,
                                 source="recorded sweep", code=comparison.known_codes(list(keep_rows)))
                    say(f"seed {seed}: kept from {out.name} (today's code): {', '.join(keep_rows) or 'none'}")
                seed_everything(seed, threads=profile.num_threads)  # as a notebook's first cell: the same numbers
                collected = collect(profile, device, folder=folder, say=say)
                if collected.missing:
                    raise RuntimeError(f"seed {seed}: rows still missing after the sweep: {collected.missing}")
                rest = dataclasses.replace(collected, rows=[r for r in collected.rows if r.method not in keep_curves])
                computed = curves(profile, rest, device)  # each copy's reading cached: resumable too
                along[str(seed)] = {n: keep_curves.get(n) or computed[n]
                                    for n in [r.method for r in collected.rows] if n in keep_curves or n in computed}
            rows[str(seed)] = {r.method: r.as_dict() for r in collected.rows}
        for seed, (keep_rows, keep_curves) in kept.items():  # seeds of the recorded file this pass did not ask for
            if seed not in rows:
                rows[seed], along[seed] = keep_rows, keep_curves  # all of them kept (kept_rows checks)
        rows = dict(sorted(rows.items(), key=lambda x: int(x[0])))
        along = {seed: along[seed] for seed in rows if seed in along}
        names = sorted({name for by_name in along.values() for name in by_name})
        per_image = (flops or curve_flops)(get_profile(profile_name), names, device)  # not the seed's: one count
    every = [int(s) for s in rows]
    this = {"command": _command(seeds, profile_name, add), "revision": git_revision() or "unknown",
            "seeds": list(seeds)}
    record = {"format": FORMAT, "profile": profile_name, "protocol_version": PROTOCOL_VERSION,
              "command": _command(every, profile_name),  # remakes the whole file in one pass
              "revision": this["revision"], "python": sys.version.split()[0], "torch": torch.__version__,
              "passes": [*passes, this],  # the commands that did make it
              "code": comparison.known_codes(sorted({n for r in rows.values() for n in r})),
              "seeds": rows, "curves": along, "flops_per_image": per_image}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    say(f"recorded {len(seeds)} seed(s) in {out}")
    return out


@dataclass
class Sweep:
    """A recorded sweep: its rows per seed and what made it."""

    profile: str
    command: str
    revision: str
    protocol_version: int
    rows: dict[int, dict[str, Evaluation]]  # seed -> row name -> row
    curves: dict[int, dict[str, list[dict]]] = field(default_factory=dict)  # seed -> method -> comparison.curve
    flops: dict[str, float] = field(default_factory=dict)  # method -> training FLOPs per image (of the curves)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.rows)

    def describe(self) -> str:
        return (f"recorded by `{self.command}` at revision {self.revision[:12]} "
                f"(profile {self.profile}, protocol v{self.protocol_version}, seeds {', '.join(map(str, self.seeds))})")


def load_sweep(path: Path | str, profile_name: str | None = None) -> Sweep | None:
    """The recorded sweep in ``path``; None when there is none. A file of another format, of another profile
    than ``profile_name``, or made under another protocol version than today's raises ``ValueError``,
    naming the file and the command that remakes it."""
    path = Path(path)
    if not path.exists():
        return None
    remake = "remake it with `python -m course_lib compare --seeds 0 1 2`"
    try:
        record = json.loads(path.read_text())
        rows = {int(seed): {name: Evaluation.from_dict(row) for name, row in by_name.items()}
                for seed, by_name in record["seeds"].items()}
        curves = {int(seed): {name: [dict(point) for point in points] for name, points in by_name.items()}
                  for seed, by_name in record.get("curves", {}).items()}  # absent from files recorded before curves
        flops = {name: float(v) for name, v in record.get("flops_per_image", {}).items()}  # absent before them too
        sweep = Sweep(record["profile"], record["command"], record["revision"], int(record["protocol_version"]), rows,
                      curves, flops)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a recorded sweep ({type(e).__name__}: {e}); {remake}") from None
    if record.get("format") != FORMAT:
        raise ValueError(f"{path}: format {record.get('format')!r}, expected {FORMAT}; {remake}")
    if profile_name is not None and sweep.profile != profile_name:
        raise ValueError(f"{path} holds the {sweep.profile!r} profile's sweep, not {profile_name!r}")
    if sweep.protocol_version != PROTOCOL_VERSION:
        raise ValueError(f"{path} was made under protocol v{sweep.protocol_version}, today's is v{PROTOCOL_VERSION}; "
                         f"{remake}")
    if not rows:
        raise ValueError(f"{path} holds no seed; {remake}")
    return sweep


@dataclass
class SeedGain:
    """One row's gain over a reference row, per training seed, at one label budget (fractions, not %)."""

    method: str
    per_seed: dict[int, float]  # seed -> mean over label draws of the row minus the reference's
    label_std: float  # the row's std over label draws, averaged over the seeds

    @property
    def mean(self) -> float:
        return mean_std(list(self.per_seed.values()))[0]

    @property
    def seed_std(self) -> float:
        """The standard deviation of the per-seed gains (sample std; 0 for one seed)."""
        return mean_std(list(self.per_seed.values()))[1]

    @property
    def verdict(self) -> str:
        """"above" / "below" when every seed agrees and the mean gain is more than twice the spread over
        seeds; else "tie" (a difference within the seed spread); "one seed" when there is nothing to spread."""
        if len(self.per_seed) < 2:
            return "one seed"
        values = list(self.per_seed.values())
        if all(v > 0 for v in values) and self.mean > 2 * self.seed_std:
            return "above"
        if all(v < 0 for v in values) and -self.mean > 2 * self.seed_std:
            return "below"
        return "tie"


def seed_gains(sweep: Sweep, budget: str = "100", over: str = "random init",
               column: str = "probe") -> dict[str, SeedGain]:
    """Every row's gain over ``over`` per seed at ``budget`` labels per class (``column`` "probe"; or
    "fine-tune": the LP-FT column against ``over``'s row at ``budget`` -- its fine-tune when ``over`` has
    one, else its own accuracy at that budget, as for the supervised baseline); rows missing from a
    seed are left out of that seed."""
    if column not in ("probe", "fine-tune"):
        raise ValueError(f"column must be 'probe' or 'fine-tune', got {column!r}")
    out: dict[str, SeedGain] = {}
    for seed, rows in sorted(sweep.rows.items()):
        if over not in rows:
            raise KeyError(f"seed {seed}: no row {over!r} among {sorted(rows)}")
        ref = rows[over]
        ref_value = (mean_std(ref.finetune)[0] if column == "fine-tune" and ref.finetune else ref.mean(budget))
        for name, r in rows.items():
            if name == over:
                continue
            value = mean_std(r.finetune)[0] if column == "fine-tune" else r.mean(budget)
            if math.isnan(value) or math.isnan(ref_value):
                continue
            g = out.setdefault(name, SeedGain(name, {}, 0.0))
            g.per_seed[seed] = value - ref_value
    for name, g in out.items():
        spreads = [mean_std(sweep.rows[s][name].finetune if column == "fine-tune" else
                            sweep.rows[s][name].probe.get(budget, []))[1] for s in g.per_seed]
        g.label_std = sum(spreads) / len(spreads)
    return out


def seed_summary(sweep: Sweep, budget: str = "100", over: str = "random init", column: str = "probe",
                 names: Sequence[str] | None = None) -> str:
    """A Markdown table: each row's gain over ``over`` (points) per seed, mean ± std over seeds, the mean
    spread over label draws and the verdict (:attr:`SeedGain.verdict`); ``names``: only these rows. A row
    trained with labels (the supervised baseline, FaceNet) is marked †: a reference, not a ranked method."""
    from course_lib.results import markdown_table

    gains = seed_gains(sweep, budget, over, column)
    seeds = sweep.seeds
    labelled = {name for rows in sweep.rows.values() for name, r in rows.items() if r.with_labels}
    lines = [[name + (" †" if name in labelled else ""), *(f"{100 * g.per_seed[s]:+.1f}" if s in g.per_seed else "–" for s in seeds),
              f"{100 * g.mean:+.1f} ± {100 * g.seed_std:.1f}", f"{100 * g.label_std:.1f}", g.verdict]
             for name, g in gains.items() if names is None or name in names]
    what = "probe" if column == "probe" else "LP-FT fine-tune"
    return markdown_table([f"row ({what}, {budget}/class) minus {over}", *(f"seed {s}" for s in seeds),
                           "mean ± std over seeds", "label-draw std", "verdict"], lines)


def equal_compute(sweep: Sweep, flops: dict[str, float], budgets: Sequence[float]) -> dict[str, dict[float, dict[int, float]]]:
    """Each recorded curve read at each training-FLOP budget (``comparison.at_budget``), per seed: method ->
    budget -> seed -> probe accuracy; a seed whose run never reached a budget (NaN) is left out of it.
    ``flops``: FLOPs per image of each method (``comparison.flops_per_image``); a recorded method without one
    raises ``KeyError`` naming it. Empty when the sweep recorded no curves."""
    from course_lib.comparison import at_budget

    out: dict[str, dict[float, dict[int, float]]] = {}
    for seed, by_name in sorted(sweep.curves.items()):
        for name, points in by_name.items():
            if name not in flops:
                raise KeyError(f"no FLOPs per image for {name!r} (known: {sorted(flops)})")
            for b in budgets:
                value = at_budget(points, flops[name], b)
                if not math.isnan(value):
                    out.setdefault(name, {}).setdefault(b, {})[seed] = value
    return out


def equal_compute_table(sweep: Sweep, flops: dict[str, float], budgets: Sequence[float]) -> str:
    """A Markdown table of :func:`equal_compute`: per method and budget (TFLOP), the probe's mean ± std over the
    seeds whose runs reached it (in %), and how many seeds that is."""
    from course_lib.results import markdown_table

    readings = equal_compute(sweep, flops, budgets)
    lines = []
    for name, by_budget in readings.items():
        cells = []
        for b in budgets:
            values = list(by_budget.get(b, {}).values())
            if not values:
                cells.append("–")
                continue
            m, s = mean_std(values)
            cells.append(f"{100 * m:.1f} ± {100 * s:.1f} ({len(values)} seed{'s' if len(values) != 1 else ''})")
        lines.append([name, *cells])
    return markdown_table(["method", *(f"probe at {b / 1e12:.2f} TFLOP, mean ± std over seeds" for b in budgets)], lines)


def pair_gain(sweep: Sweep, flops: dict[str, float], a: str, b: str, budget: float) -> SeedGain | None:
    """Method ``a``'s probe minus method ``b``'s, each read off its recorded curve at ``budget`` training FLOPs
    (``comparison.at_budget``), per seed, for the seeds where both runs reach it (None when none does); its
    :attr:`SeedGain.verdict` is the course's rule on the per-seed differences."""
    from course_lib.comparison import at_budget

    diffs = {}
    for seed, by_name in sorted(sweep.curves.items()):
        if a in by_name and b in by_name:
            x, y = at_budget(by_name[a], flops[a], budget), at_budget(by_name[b], flops[b], budget)
            if not (math.isnan(x) or math.isnan(y)):
                diffs[seed] = x - y
    return SeedGain(f"{a} − {b}", diffs, 0.0) if diffs else None


def clear_gaps(sweep: Sweep, flops: dict[str, float], budget: float) -> list[str]:
    """The pairs of recorded methods that differ at ``budget`` training FLOPs by the course's rule (:func:`pair_gain`'s
    verdict "above"), best first, each as "a > b (+mean ± std)" in points; every pair not listed is a tie there or
    not reached by both runs."""
    names = sorted({m for by_name in sweep.curves.values() for m in by_name})
    out = []
    for a in names:
        for b in names:
            g = pair_gain(sweep, flops, a, b, budget) if a != b else None
            if g is not None and g.verdict == "above":
                out.append((g.mean, f"{a} > {b} ({100 * g.mean:+.1f} ± {100 * g.seed_std:.1f})"))
    return [text for _, text in sorted(out, key=lambda t: -t[0])]


def where_on_curves(sweep: Sweep, name: str) -> str:
    """Where method ``name``'s own run sits on the recorded curves, in Markdown, for its notebook: its curve
    (each copy along the run and its end: steps, images, training TFLOP, the probe and kNN as mean ± std over
    the recorded seeds), its own budget among the methods' own budgets, and, at each budget at which notebook 10
    compares the methods (``comparison.equal_budgets``: the smallest own budget and the median), its probe with
    the methods it is clearly above, clearly below and level with by the rule of :attr:`SeedGain.verdict` (on the
    per-seed differences). A sweep without curves or FLOPs for ``name`` says how to record them."""
    from course_lib.comparison import at_budget, curve_budget, equal_budgets
    from course_lib.results import markdown_table
    from course_lib.train import SNAPSHOT_FRACTIONS

    seeds = [s for s in sweep.seeds if name in sweep.curves.get(s, {})]
    if not seeds or name not in sweep.flops:
        return (f"The recorded sweep holds no curve of {name!r} with its FLOPs (it predates them): "
                f"`python -m course_lib compare --seeds 0 1 2` records them.")
    per_image = sweep.flops[name]
    first = sweep.curves[seeds[0]][name]
    if any([(p["steps"], p["images"]) for p in sweep.curves[s][name]] != [(p["steps"], p["images"]) for p in first]
           for s in seeds):
        raise ValueError(f"{name}: the recorded seeds' runs stopped at different points; record complete runs")
    labels = curve_budget(get_profile(sweep.profile))

    share = ([str(Fraction(f).limit_denominator(64)) for f in SNAPSHOT_FRACTIONS] if len(first) == len(SNAPSHOT_FRACTIONS) + 1
             else [f"{p['steps'] / first[-1]['steps']:.0%}" for p in first])  # a short run keeps fewer copies
    lines = []
    for i, p in enumerate(first):
        probe = mean_std([sweep.curves[s][name][i]["probe"] for s in seeds])
        knn = mean_std([sweep.curves[s][name][i]["knn"] for s in seeds])
        where = ("end of the run (this notebook's length)" if i == len(first) - 1
                 else f"copy after {share[i]} of the steps")
        lines.append([where, f"{p['steps']:,}", f"{p['images']:,}", f"{p['images'] * per_image / 1e12:.2f}",
                      f"{100 * probe[0]:.1f} ± {100 * probe[1]:.1f}", f"{100 * knn[0]:.1f} ± {100 * knn[1]:.1f}"])
    table = markdown_table(["along the run", "steps", "images", "training TFLOP",
                            f"probe {labels}/class, % (mean ± std over seeds)", "kNN, % (mean ± std over seeds)"], lines)
    curves = {m: points for m, points in sweep.curves[seeds[0]].items() if m in sweep.flops}
    own = sorted((points[-1]["images"] * sweep.flops[m] / 1e12, m) for m, points in curves.items())
    rank = [m for _, m in own].index(name) + 1
    said = sweep.describe()
    text = [said[0].upper() + said[1:] + ("" if seeds == sweep.seeds else f"; {name}'s curve on seeds "
                                          + ", ".join(map(str, seeds))) + ":", "", table, "",
            f"- Its own budget, {own[rank - 1][0]:.2f} TFLOP, is {_place(rank, len(own))} of the {len(own)} "
            "self-supervised methods' own budgets (TFLOP: "
            + ", ".join(f"**{m} {t:.2f}**" if m == name else f"{m} {t:.2f}" for t, m in own) + ")."]
    budgets = equal_budgets(curves, sweep.flops)
    for k, b in enumerate(budgets):
        what = (f"At {b / 1e12:.2f} TFLOP ("
                + ("the smallest of the methods' own budgets" if k == 0 else "the median of the methods' own budgets")
                + ", where notebook 10 compares them)")
        reading = {s: at_budget(sweep.curves[s][name], per_image, b) for s in seeds}
        reading = {s: v for s, v in reading.items() if not math.isnan(v)}
        if not reading:
            why = (f"its run ends at {first[-1]['images'] * per_image / 1e12:.2f} TFLOP" if first[-1]["images"] * per_image < b
                   else f"its first copy lies beyond it, at {first[0]['images'] * per_image / 1e12:.2f} TFLOP")
            text.append(f"- {what}: no reading, {why}.")
            continue
        m, sd = mean_std(list(reading.values()))
        groups: dict[str, list[str]] = {"above": [], "below": [], "tie": []}
        for other in curves:
            gain = pair_gain(sweep, sweep.flops, name, other, b) if other != name else None
            if gain is not None:
                groups["tie" if gain.verdict == "one seed" else gain.verdict].append(other)
        said = "; ".join(f"{label} {', '.join(groups[g])}" for g, label in
                         (("above", "clearly above"), ("below", "clearly below"), ("tie", "level with"))
                         if groups[g]) or "no other method's run reaches it"
        text.append(f"- {what}: probe {100 * m:.1f} ± {100 * sd:.1f} % (mean ± std over seeds); {said}.")
    text.append("")
    text.append("*Clearly above / below*: on every seed, by a mean gap more than twice its standard deviation over "
                "the seeds; otherwise *level* (a tie).")
    return "\n".join(text)


def recorded_place(profile_name: str, name: str) -> str:
    """:func:`where_on_curves` of method ``name`` in the recorded sweep of ``profile_name`` (its committed file,
    :func:`recorded_path`), for the method's notebook; without such a file, a sentence saying so and how to
    record one."""
    recorded = load_sweep(recorded_path(profile_name), profile_name)
    if recorded is None:
        return (f"No recorded sweep for the {profile_name!r} profile ({recorded_path(profile_name).name}): "
                f"`python -m course_lib compare --seeds 0 1 2{'' if profile_name == 'fast' else ' --profile ' + profile_name}` "
                "records one; notebook 10 reads this run's own curve.")
    return where_on_curves(recorded, name)


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _place(rank: int, count: int) -> str:
    """Where the ``rank``-th smallest of ``count`` budgets lies, in words, counted from the nearer end."""
    if rank == 1:
        return "the smallest"
    if rank == count:
        return "the largest"
    if count % 2 and rank == (count + 1) // 2:
        return "the median"
    return f"the {_ordinal(rank)} smallest" if rank <= (count + 1) / 2 else f"the {_ordinal(count - rank + 1)} largest"
