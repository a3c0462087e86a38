"""What the protocol's batch-norm rule changes, per method: the probes under the old rule and under the new one.

    COURSE_TIME_BUDGETS=off python scripts/bn_rule_effect.py [--profile fast] [--methods rotation SimCLR ...]

Protocol v2 evaluated every encoder with the batch-norm statistics its training left (each method's own
pretext inputs: 8x8 patches for CPC, photo crops for colorization...; never estimated at random init).
Protocol v3 re-estimates them for every encoder on the evaluation's training images
(``evaluate.evaluation_encoder``). For every method of ``comparison.METHODS`` (its encoder from its own
cached ``pretrain``, with its notebook's config: a warm cache loads them, a cold one trains them), for
random init and for raw pixels (no batch norm: the same under both rules, for reference), this prints the
linear probes with 10, 100 and all labels per class (mean over the protocol's label draws) under the old
rule (``bn_batches=0``) and the new one, and each method's gain over random init under both. No fine-tuning,
no cache: every number is computed by this run. Takes a few minutes on one CPU thread (warm cache).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from course_lib import comparison
from course_lib.baselines import random_init_backbone
from course_lib.config import get_device, get_profile, seed_everything
from course_lib.evaluate import budget_name, evaluate, pixels, protocol_for
from course_lib.results import markdown_table


def encoders(profile, names, device):
    """(row name, encoder, train, test) for raw pixels, random init and every method named (all: None)."""
    train, test = comparison.evaluation_data(profile)
    yield "raw pixels", pixels, train, test
    yield "random init", random_init_backbone(profile, train.images.shape[1], device), train, test
    for method in comparison.METHODS:
        if names and method.row not in names:
            continue
        pre = comparison.pretrained(method, profile, device, progress=False)
        yield (method.row, pre.backbone, *comparison.evaluation_data(profile, method))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None, help="profile name (default: $COURSE_PROFILE or 'fast')")
    parser.add_argument("--methods", nargs="*", default=None, help="row names (default: every method)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    seed_everything(profile.seed, threads=profile.num_threads)
    device = get_device()
    rules = {"old": protocol_for(profile, bn_batches=0), "new": protocol_for(profile)}
    budgets = [budget_name(b) for b in profile.labels_per_class]
    rows = {}
    for name, encoder, train, test in encoders(profile, args.methods, device):
        start = time.perf_counter()
        rows[name] = {rule: evaluate(name, encoder, train, test, profile, finetune=False, protocol=protocol)
                      for rule, protocol in rules.items()}
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    def cell(name, b):
        old, new = (100 * rows[name][r].mean(b) for r in ("old", "new"))
        return f"{old:.1f} → {new:.1f}"

    def gain(name, b):
        if name in ("raw pixels", "random init"):
            return "–"
        old, new = (100 * (rows[name][r].mean(b) - rows["random init"][r].mean(b)) for r in ("old", "new"))
        return f"{old:+.1f} → {new:+.1f}"

    few = "100" if "100" in budgets else budgets[0]
    header = ["encoder", *(f"probe {b}/class, old → new" for b in budgets), f"gain over random init at {few}, old → new"]
    print(f"Profile {profile.name!r}, seed {profile.seed}, test accuracy in % (mean over the label draws); old: each "
          f"encoder's own batch-norm statistics (protocol v2), new: re-estimated on the evaluation's training images "
          f"({rules['new'].bn_batches} batches of {rules['new'].bn_batch_size}, protocol v3); torch threads "
          f"{torch.get_num_threads()}\n")
    print(markdown_table(header, [[name, *(cell(name, b) for b in budgets), gain(name, few)] for name in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
