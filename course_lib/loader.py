"""A data loader for data that already lives on the training device as one tensor.

The whole dataset is a uint8 tensor (N, C, H, W) moved to the device once; a batch
is a slice of a random permutation of the indices, gathered with one indexing op.
No worker processes, no per-image Python: the habit of the fastest CIFAR-10
trainers. Augment the batch afterwards with ``course_lib.augment``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from course_lib.config import check_int, get_device


class Batch(NamedTuple):
    """One batch: images, labels and the images' positions in the dataset."""

    x: Tensor  # uint8 (B, C, H, W)
    y: Tensor  # int64 (B,); -1 where the dataset has no labels
    index: Tensor  # int64 (B,): positions in the dataset (the exemplar task's surrogate classes)


class DeviceLoader:
    """Iterate over ``images`` (uint8 (N, C, H, W)) in batches, on ``device``.

    Each ``iter()`` is one epoch: a fresh permutation drawn from the loader's own
    generator (seeded with ``seed``, kept on the CPU so that the order is the same on
    every device), so the same seed gives the same sequence of epochs and
    consecutive epochs differ. ``device=None`` picks CUDA, then MPS, then CPU
    (``config.get_device``).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        batch_size: int = 256,
        shuffle: bool = True,
        drop_last: bool = True,
        device: torch.device | str | None = None,
        seed: int = 0,
    ) -> None:
        _check_images(images)
        n = images.shape[0]
        if labels is not None:
            _check_labels(labels, n)
        check_int(batch_size, "batch_size")
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({n} images) and drop_last=True "
                f"would yield no batch: use batch_size <= {n} or drop_last=False"
            )
        check_int(seed, "seed", minimum=0)

        self.device = get_device() if device is None else torch.device(device)
        self.images = images.to(self.device)  # (N, C, H, W) uint8, moved once
        if labels is None:
            self.labels = torch.full((n,), -1, dtype=torch.long, device=self.device)
        else:
            self.labels = labels.to(self.device, torch.long)  # (N,)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)  # CPU: same order on every device

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = self.images.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator)  # (N,), a new one each epoch
        else:
            order = torch.arange(n)
        order = order.to(self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]  # (B,)
            yield Batch(x=self.images[index], y=self.labels[index], index=index)

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.images.shape[0]} images of shape {tuple(self.images.shape[1:])}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
            f"device={self.device}, seed={self.seed})"
        )


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images must be a torch.Tensor (N, C, H, W) of dtype uint8, got {type(images).__name__}"
        )
    if images.dtype != torch.uint8:
        raise TypeError(f"images must have dtype uint8 (values 0..255), got {images.dtype}")
    if images.dim() != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty: expected at least one image")


def _check_labels(labels: Tensor, n: int) -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"labels must be a torch.Tensor (N,) of integers or None, got {type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match the {n} images, got {tuple(labels.shape)}")
