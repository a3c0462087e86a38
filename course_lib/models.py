"""Backbones (the encoders every lecture evaluates) and the small heads on top.

A backbone maps images (B, C, H, W), floats in [0, 1], to a representation
``h = backbone.forward_features(x)`` of size ``backbone.feature_dim``. Heads are
separate modules: a pretext task puts its own head on ``h``, and evaluation only
ever looks at ``h``.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from course_lib.config import Profile


def _check_images(x: torch.Tensor, in_channels: int) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"expected a float image tensor (B, C, H, W) in [0, 1], got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')}; convert uint8 batches with augment.to_float")
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected images of shape (B, {in_channels}, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {tuple(x.shape[-2:])}")


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """Shared interface: a list of ``stages`` followed by global average pooling.

    ``channels_last``: the backbone keeps its weights and its inputs in the channels-last
    (NHWC) memory layout; :func:`build_backbone` sets it from the profile, and
    :meth:`forward_maps` converts every input, so callers never need to.
    """

    in_channels: int
    stages: nn.ModuleList
    channels_last: bool = False

    @property
    def feature_dim(self) -> int:
        return self.stage_dims[-1]

    @property
    def stage_dims(self) -> list[int]:
        raise NotImplementedError

    def forward_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after every stage, shallow to deep."""
        _check_images(x, self.in_channels)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op if it already is
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation h (B, feature_dim): the deepest map, average-pooled."""
        return self.forward_maps(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class SmallConvNet(Backbone):
    """Four conv stages (width, 2w, 4w, 4w), halving the resolution between them.

    Small enough to pre-train in a minute on a laptop CPU on 28x28 images; any
    input from 8 to 96 pixels works because the head pools globally.
    """

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        self._dims = [width, 2 * width, 4 * width, 4 * width]
        self.stages = nn.ModuleList([
            conv_block(in_channels, self._dims[0]),                                        # (B, w, H, W)
            nn.Sequential(nn.MaxPool2d(2), conv_block(self._dims[0], self._dims[1])),     # (B, 2w, H/2, W/2)
            nn.Sequential(nn.MaxPool2d(2), conv_block(self._dims[1], self._dims[2])),     # (B, 4w, H/4, W/4)
            nn.Sequential(nn.MaxPool2d(2), conv_block(self._dims[2], self._dims[3])),     # (B, 4w, H/8, W/8)
        ])

    @property
    def stage_dims(self) -> list[int]:
        return list(self._dims)


class ResNet18(Backbone):
    """ResNet-18 (He et al. 2016) with the CIFAR stem used by SimCLR.

    The ImageNet stem (7x7 stride-2 conv + max-pool) throws away too much of a
    32x32 image, so it becomes a 3x3 stride-1 conv without pooling.
    """

    def __init__(self, in_channels: int = 3):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        net = torchvision.models.resnet18(weights=None)
        stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), net.bn1, net.relu)
        self.stages = nn.ModuleList([nn.Sequential(stem, net.layer1), net.layer2, net.layer3, net.layer4])

    @property
    def stage_dims(self) -> list[int]:
        return [64, 128, 256, 512]


def build_backbone(profile: Profile, in_channels: int) -> Backbone:
    """The backbone a profile asks for (``small_cnn`` or ``resnet18``)."""
    if profile.backbone == "small_cnn":
        model: Backbone = SmallConvNet(in_channels, profile.width)
    elif profile.backbone == "resnet18":
        model = ResNet18(in_channels)
    else:
        raise ValueError(f"unknown backbone {profile.backbone!r}: expected 'small_cnn' or 'resnet18'")
    if profile.channels_last:
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return model


class LinearHead(nn.Module):
    """A linear map on features h (B, in_dim) -> (B, out_dim): a classifier's logits."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)


class MLPHead(nn.Module):
    """The course's one MLP head, Linear-BN-ReLU-Linear: h (B, in_dim) -> (B, out_dim).

    SimCLR's projection g(h) = W2 ReLU(BN(W1 h)) (Chen et al. 2020), the rotation head and the
    patch-pair head are all this module; only the sizes differ. The first linear layer has no
    bias (batch norm right after it would cancel one).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 128):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def make_head(in_dim: int, out_dim: int, hidden_dim: int = 0) -> nn.Module:
    """An :class:`MLPHead` with ``hidden_dim`` hidden units, or a :class:`LinearHead` when it is 0."""
    return MLPHead(in_dim, hidden_dim, out_dim) if hidden_dim else LinearHead(in_dim, out_dim)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def freeze(model: nn.Module) -> nn.Module:
    """Stop gradients to every parameter (for linear evaluation)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model

