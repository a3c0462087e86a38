"""The baselines every method is compared against, and the one call that compares them.

* raw pixels: the probe on the flattened image (no encoder, so no fine-tuning: its
  10-label figure is its probe);
* random init: the same backbone, untrained (a surprisingly strong baseline), under the
  protocol's batch-norm rule like every encoder; its fine-tune column is the protocol's
  LP-FT recipe from random weights (a short fine-tune, not supervised training);
* supervised (labels only): the same backbone trained from scratch on the labelled images
  alone, for 10, 100 and all labels per class (``supervised.py``: its length and rate chosen
  on the validation split). Its row has ``kind="supervised"``: trained with labels, it is shown
  apart from the self-supervised rows and never ranked with them.

:func:`compare_with_baselines` gives the baseline rows (computed once per profile and cached) and
the method's own row, all by the protocol of ``evaluate.py``, cached too: keyed by the encoder's
weights (their digest), so a notebook run again on a warm cache (``make demo``, a live lecture)
evaluates nothing again. :func:`evaluate_and_save` is the one call a notebook makes after
pre-training: that comparison, the method's row saved to the results store (for notebook 10),
the table shown and the label-efficiency figure drawn.
"""

from __future__ import annotations

import torch

from course_lib.checkpoints import load_or_compute, weights_digest
from course_lib.config import Profile, get_device
from course_lib.datasets import ImageData
from course_lib.evaluate import Evaluation, evaluate, pixels, protocol_for, protocol_key, split_validation
from course_lib.plots import plot_label_efficiency
from course_lib.results import save_results, show_table
from course_lib.supervised import config_for as supervised_config
from course_lib.supervised import supervised_baseline
from course_lib.train import Pretrained, seeded_backbone


def random_init_backbone(profile: Profile, in_channels: int, device: torch.device | None = None):
    """The backbone every method starts from (seeded with ``profile.seed``), untrained, in eval mode."""
    return seeded_backbone(profile, in_channels, device or get_device()).eval()


def baselines(train_data: ImageData, test_data: ImageData, profile: Profile, device: torch.device | None = None,
              progress: bool = False) -> list[Evaluation]:
    """The baseline rows: raw pixels, the random-init backbone (kind "baseline") and the supervised baseline
    (kind "supervised"), each cached once per profile and protocol (the supervised row also by its recipes)."""
    device = device or get_device()
    key = protocol_key(train_data, test_data, profile)

    def compute() -> dict:
        rows = [evaluate("raw pixels", pixels, train_data, test_data, profile)]
        random_backbone = random_init_backbone(profile, train_data.images.shape[1], device)
        rows.append(evaluate("random init", random_backbone, train_data, test_data, profile, progress=progress))
        for r in rows:
            r.kind = "baseline"
        return {"rows": [r.as_dict() for r in rows]}

    def supervised() -> dict:
        return supervised_baseline(train_data, test_data, profile, device, progress).as_dict()

    recipes = {str(n): supervised_config(profile, n).as_dict() for n in profile.labels_per_class}
    rows = [Evaluation.from_dict(r) for r in load_or_compute("baselines", key, compute)["rows"]]
    rows.append(Evaluation.from_dict(load_or_compute("supervised", {**key, "task": "supervised", "recipes": recipes},
                                                     supervised)))
    return rows


def compare_with_baselines(method: str, encoder: Pretrained | torch.nn.Module, train_data: ImageData,
                           test_data: ImageData, profile: Profile, device: torch.device | None = None,
                           finetune: bool = True, progress: bool = False) -> list[Evaluation]:
    """The baseline rows, then ``method``'s row: probes (mean ± std over label draws), kNN, fine-tuning
    and the pre-training compute (from ``encoder.history`` when ``encoder`` is a :class:`Pretrained`)."""
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a non-empty name, got {method!r}")
    rows = baselines(train_data, test_data, profile, device, progress)
    if isinstance(encoder, Pretrained):
        backbone, compute = encoder.backbone, encoder.history.compute()
    elif isinstance(encoder, torch.nn.Module):
        backbone, compute = encoder, None
    else:
        raise TypeError(f"encoder must be a Pretrained (a method's pretrain) or a backbone, got {type(encoder).__name__}")
    if any(r.method == method for r in rows):  # raw pixels, random init, supervised (labels only)
        raise ValueError(f"{method!r} is the name of a baseline row; give the method another name")
    key = {**protocol_key(train_data, test_data, profile), "task": "evaluation", "method": method,
           "weights": weights_digest(backbone), "finetune": finetune}

    def run() -> dict:
        return evaluate(method, backbone, train_data, test_data, profile, finetune=finetune, progress=progress).as_dict()

    row = Evaluation.from_dict(load_or_compute("evaluation", key, run))
    row.compute = dict(compute or {"images": 0, "steps": 0, "seconds": 0.0})  # this encoder's, as evaluate does
    return rows + [row]


def all_labels_per_class(train_data: ImageData, profile: Profile) -> int:
    """Labels per class in the "all" budget: the pool the protocol's validation split leaves (900 of the fast
    profile's 1,000 images per class), where label-efficiency plots place it."""
    protocol = protocol_for(profile)
    pool, _ = split_validation(train_data.labels, protocol.validation_per_class, protocol.seed)
    return len(pool) // train_data.num_classes


def evaluate_and_save(method: str | None, encoder: Pretrained | torch.nn.Module | None, train_data: ImageData,
                      test_data: ImageData, profile: Profile, device: torch.device | None = None, *, source: str,
                      with_labels: bool = False, finetune: bool = True, show: bool = True,
                      progress: bool = False) -> list[Evaluation]:
    """What every notebook does after pre-training, in one call: :func:`compare_with_baselines`, the method's
    row (the last) saved to the results store under ``method`` with ``source`` (the notebook's name), and,
    with ``show``, the table displayed (``results.show_table``) and the label-efficiency figure drawn.
    Returns the table: the baseline rows, then the method's.

    ``with_labels``: the encoder was trained with labels (FaceNet): its row is saved with kind "supervised",
    marked † and never ranked with the self-supervised rows.
    ``method=None`` (and no encoder): the baselines alone, every row saved (notebook 01 introduces them)."""
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must name the notebook that saves the row (e.g. '03_rotation'), got {source!r}")
    if method is None:
        if encoder is not None:
            raise ValueError("an encoder needs a method name to save its row under; method=None is the baselines alone")
        table = baselines(train_data, test_data, profile, device, progress)
        save_results(table, profile.name, source=source)
    else:
        table = compare_with_baselines(method, encoder, train_data, test_data, profile, device, finetune, progress)
        if with_labels:
            table[-1].kind = "supervised"
        save_results(table[-1], profile.name, source=source)
    if show:
        show_table(table)
        plot_label_efficiency(table, all_labels=all_labels_per_class(train_data, profile))
    return table
