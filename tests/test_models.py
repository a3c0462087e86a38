"""Behaviour tests for course_lib.models: backbones, heads and freezing."""

import pytest
import torch
from conftest import make_images
from torch import nn

from course_lib.config import get_profile
from course_lib.models import (
    Backbone,
    LinearHead,
    MLPHead,
    ResNet18,
    SmallConvNet,
    build_backbone,
    count_parameters,
    freeze,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: one thread is fastest on a busy CPU (conftest)


def images(b: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    return make_images(b, c, size, dtype=torch.float32, seed=seed)


def conv_out(size: int) -> int:
    """Output size of a stride-2 3x3 conv with padding 1."""
    return (size - 1) // 2 + 1


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 96])
def test_small_cnn_features_and_maps(in_channels, size):
    net = SmallConvNet(in_channels, width=8)
    x = images(3, in_channels, size)
    with torch.no_grad():
        h = net.forward_features(x)
        maps = net.forward_maps(x)
    assert net.stage_dims == [8, 16, 32, 32]
    assert net.feature_dim == 32
    assert h.shape == (3, 32)
    assert torch.isfinite(h).all()
    expected = [size, size // 2, size // 4, size // 8]  # max-pool halves (floor) between stages
    assert [tuple(m.shape) for m in maps] == [(3, d, s, s) for d, s in zip(net.stage_dims, expected, strict=True)]
    # h is the deepest map, average-pooled; forward is forward_features
    torch.testing.assert_close(h, maps[-1].mean(dim=(2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(net(x), h)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 96])
def test_resnet18_features_and_maps(in_channels, size):
    net = ResNet18(in_channels).eval()
    x = images(1 if size == 96 else 2, in_channels, size)
    with torch.no_grad():
        maps = net.forward_maps(x)
        h = net.forward_features(x)
    b = len(x)
    assert net.feature_dim == 512
    assert h.shape == (b, 512)
    # CIFAR stem: stride 1, no max-pool; stride-2 convs in layers 2-4
    s1 = size
    s2 = conv_out(s1)
    s3 = conv_out(s2)
    s4 = conv_out(s3)
    assert [tuple(m.shape) for m in maps] == [(b, 64, s1, s1), (b, 128, s2, s2), (b, 256, s3, s3),
                                              (b, 512, s4, s4)]
    torch.testing.assert_close(h, maps[-1].mean(dim=(2, 3)))


def test_resnet18_has_the_cifar_stem():
    net = ResNet18(3)
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.kernel_size == (3, 3) and first_conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    # ResNet-18 without its 1000-way fc layer: 11.17M parameters (+ 3x3 stem instead of 7x7)
    assert 11_000_000 < count_parameters(net) < 11_300_000


@pytest.mark.parametrize("make", [lambda: SmallConvNet(1, 8), lambda: ResNet18(1)])
def test_wrong_number_of_channels_is_a_clear_value_error(make):
    net = make().eval()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*\(2, 3, 32, 32\)"):
        net.forward_features(images(2, 3, 32))
    with pytest.raises(ValueError, match=r"shape \(B, 1, H, W\)"):
        net.forward_features(torch.rand(1, 32, 32))  # no batch dimension


@pytest.mark.parametrize("make", [lambda: SmallConvNet(3, 8), lambda: ResNet18(3)])
def test_uint8_images_are_a_type_error_that_says_how_to_convert(make):
    net = make().eval()
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8.*to_float"):
        net.forward_features(x)
    with pytest.raises(TypeError, match="float image tensor"):
        net.forward_features(x.numpy())


def test_too_small_images_are_rejected():
    net = SmallConvNet(1, 8).eval()
    with pytest.raises(ValueError, match=r"at least 8x8.*\(4, 4\)"):
        net.forward_features(images(2, 1, 4))
    assert net.forward_features(images(2, 1, 8)).shape == (2, 32)  # the smallest allowed size works


@pytest.mark.parametrize("cls", [SmallConvNet, ResNet18])
def test_only_grey_or_rgb_backbones(cls):
    with pytest.raises(ValueError, match="in_channels must be 1 or 3"):
        cls(2)


def test_build_backbone_follows_the_profile():
    small = build_backbone(get_profile("fast", width=4), in_channels=1)
    assert isinstance(small, SmallConvNet)
    assert small.in_channels == 1 and small.stage_dims == [4, 8, 16, 16]
    big = build_backbone(get_profile("fast", backbone="resnet18"), in_channels=3)
    assert isinstance(big, ResNet18) and big.in_channels == 3 and big.feature_dim == 512
    assert isinstance(small, Backbone) and isinstance(big, Backbone)


def test_build_backbone_channels_last_keeps_the_features():
    torch.manual_seed(0)
    plain = build_backbone(get_profile("fast", width=4, channels_last=False), 3).eval()
    torch.manual_seed(0)
    cl = build_backbone(get_profile("fast", width=4, channels_last=True), 3).eval()
    conv = next(m for m in cl.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = images(2, 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(cl.forward_features(x), plain.forward_features(x))
        assert cl.channels_last and not plain.channels_last
        # the backbone converts a plain (contiguous) input itself, so every map comes out channels-last
        assert all(m.is_contiguous(memory_format=torch.channels_last) for m in cl.forward_maps(x))
        assert cl.forward_maps(x)[0].stride()[1] == 1 and plain.forward_maps(x)[0].stride()[1] != 1


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone 'vit'.*small_cnn.*resnet18"):
        build_backbone(get_profile("fast", backbone="vit"), 3)


def test_heads_shapes():
    h = torch.randn(5, 32)
    assert MLPHead(32).train()(h).shape == (5, 128)
    assert MLPHead(32, hidden_dim=16, out_dim=8).eval()(h).shape == (5, 8)
    assert LinearHead(32, 10)(h).shape == (5, 10)


def test_linear_head_is_an_affine_map():
    head = LinearHead(4, 3)
    h = torch.randn(6, 4)
    torch.testing.assert_close(head(h), h @ head.fc.weight.T + head.fc.bias)


def test_freeze_stops_gradients():
    net = SmallConvNet(1, 4)
    head = LinearHead(net.feature_dim, 2)
    assert freeze(net) is net
    assert all(not p.requires_grad for p in net.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}
    opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=1.0)
    loss = head(net(images(4, 1, 16))).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in net.parameters())
    assert head.fc.weight.grad is not None  # the head on top still learns
    net.eval()
    for k, v in net.state_dict().items():
        if k in before and "running" not in k:
            assert torch.equal(v, before[k]), k


def test_mlp_head_is_linear_bn_relu_linear_and_checks_its_sizes():
    from course_lib.models import make_head

    head = MLPHead(6, hidden_dim=5, out_dim=3).eval()
    assert [type(m).__name__ for m in head.net] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    h = torch.randn(4, 6)
    lin1, bn, _, lin2 = head.net
    expected = lin2(torch.relu((lin1(h) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias))
    torch.testing.assert_close(head(h), expected)
    assert lin1.bias is None  # batch norm right after it
    assert isinstance(make_head(6, 3, hidden_dim=0), LinearHead) and isinstance(make_head(6, 3, 5), MLPHead)
    for bad in ({"in_dim": 0}, {"hidden_dim": 2.5}, {"out_dim": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MLPHead(**{"in_dim": 6, "hidden_dim": 5, "out_dim": 3, **bad})
