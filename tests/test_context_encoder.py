"""Behaviour tests for the context encoder (course_lib.context_encoder, Pathak et al. 2016)."""

import math

import pytest
import torch
from conftest import make_image_data, tiny_profile

from course_lib import context_encoder as CE
from course_lib.augment import to_float
from course_lib.config import get_profile
from course_lib.loader import Batch, DeviceLoader
from course_lib.models import SmallConvNet, build_backbone
from course_lib.train import pretrain_and_cache, pretrain_key

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(**changes):
    values = {"batch_size": 8, "num_epochs": 1, "decoder_width": 4, "time_budget_s": None,
              "recalibration_batches": 2}
    values.update(changes)
    return CE.config_for(tiny_profile(), **values)


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("size, fraction, side", [(28, 0.25, 14), (32, 0.25, 16), (10, 0.09, 3), ((8, 12), 0.5, 7)])
def test_center_mask_is_the_centred_square_of_the_asked_area(size, fraction, side):
    mask = CE.center_mask(size, fraction)
    h, w = (size, size) if isinstance(size, int) else size
    assert mask.shape == (h, w) and mask.dtype == torch.bool
    top, left = (h - side) // 2, (w - side) // 2
    for i in range(h):  # loop reference: the square [top, top + side) x [left, left + side)
        for j in range(w):
            assert bool(mask[i, j]) == (top <= i < top + side and left <= j < left + side)
    assert int(mask.sum()) == side * side


def test_center_mask_of_a_quarter_leaves_equal_margins():
    mask = CE.center_mask(28, 0.25)
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.flip(1))
    assert int(mask.sum()) == 196 and mask[7:21, 7:21].all()


def test_random_block_masks_are_unions_of_squares_drawn_from_the_generator():
    n, size, fraction, k = 6, 20, 0.25, 4
    masks = CE.random_block_masks(n, size, fraction, k, torch.Generator().manual_seed(3))
    side = round(math.sqrt(fraction * size * size / k))  # 5
    g = torch.Generator().manual_seed(3)  # the same draws, in the documented order
    top = torch.randint(0, size - side + 1, (n, k), generator=g)
    left = torch.randint(0, size - side + 1, (n, k), generator=g)
    for b in range(n):
        expected = torch.zeros(size, size, dtype=torch.bool)
        for j in range(k):
            expected[top[b, j]:top[b, j] + side, left[b, j]:left[b, j] + side] = True
        assert torch.equal(masks[b], expected)
        assert side * side <= int(masks[b].sum()) <= k * side * side  # at most the fraction asked for
    again = CE.random_block_masks(n, size, fraction, k, torch.Generator().manual_seed(3))
    other = CE.random_block_masks(n, size, fraction, k, torch.Generator().manual_seed(4))
    assert torch.equal(masks, again) and not torch.equal(masks, other)


def test_random_region_masks_cover_exactly_the_fraction_where_the_smooth_noise_is_largest():
    n, size, fraction = 5, 28, 0.25
    masks = CE.random_region_masks(n, size, fraction, smoothness=4, generator=torch.Generator().manual_seed(1))
    assert masks.shape == (n, size, size) and masks.dtype == torch.bool
    assert masks.flatten(1).sum(1).tolist() == [196] * n
    noise = torch.rand(n, 1, 7, 7, generator=torch.Generator().manual_seed(1))
    field = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    for b in range(n):
        assert field[b][masks[b]].min() >= field[b][~masks[b]].max()  # a threshold of the field
    assert not torch.equal(masks[0], masks[1]), "every image gets its own region"
    # smooth noise gives blobs, not scattered pixels: most masked pixels have a masked 4-neighbour
    m = masks.float()
    neighbour = torch.zeros_like(m)
    neighbour[:, 1:] += m[:, :-1]
    neighbour[:, :-1] += m[:, 1:]
    neighbour[:, :, 1:] += m[:, :, :-1]
    neighbour[:, :, :-1] += m[:, :, 1:]
    assert ((neighbour >= 2) & masks).sum() > 0.8 * masks.sum()


def test_make_masks_follows_the_config():
    g = torch.Generator().manual_seed(0)
    center = CE.make_masks(3, (28, 28), tiny_config(mask="center"), g)
    assert center.shape == (3, 28, 28) and all(torch.equal(m, CE.center_mask(28, 0.25)) for m in center)
    regions = CE.make_masks(3, (28, 28), tiny_config(mask="regions", mask_fraction=0.1), g)
    assert regions.flatten(1).sum(1).tolist() == [78] * 3
    blocks = CE.make_masks(3, (28, 28), tiny_config(mask="blocks", num_blocks=2), g)
    assert blocks.shape == (3, 28, 28) and blocks.any()


@pytest.mark.parametrize("call, error, match", [
    (lambda: CE.center_mask(1), ValueError, "size"),
    (lambda: CE.center_mask(28, 0.0), ValueError, "fraction"),
    (lambda: CE.center_mask(28, 1.5), ValueError, "fraction"),
    (lambda: CE.random_block_masks(0, 28), ValueError, "n must"),
    (lambda: CE.random_block_masks(2, 28, num_blocks=0), ValueError, "num_blocks"),
    (lambda: CE.random_region_masks(2, (28,)), ValueError, "size"),
    (lambda: CE.random_region_masks(2, 28, smoothness=0), ValueError, "smoothness"),
    (lambda: CE.square_mask(8, 2, 8, 0), ValueError, "outside"),
])
def test_masks_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_apply_mask_sets_only_the_removed_pixels():
    x = torch.rand(2, 3, 6, 6)
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[0, 1:3, 2:4] = True
    out = CE.apply_mask(x, mask, 0.25)
    assert torch.equal(out[:, :, ~mask[0]][0], x[:, :, ~mask[0]][0]) and torch.equal(out[1], x[1])
    assert (out[0, :, 1:3, 2:4] == 0.25).all()
    with pytest.raises(TypeError, match="bool"):
        CE.apply_mask(x, mask.float(), 0.5)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        CE.apply_mask(x, mask[:, :5], 0.5)
    with pytest.raises(TypeError, match="float images"):
        CE.apply_mask(x.to(torch.uint8), mask, 0.5)


# ---------------------------------------------------------------- loss


def test_loss_weights_match_a_loop_over_chebyshev_distances():
    mask = CE.random_region_masks(3, 12, 0.2, generator=torch.Generator().manual_seed(5))
    for overlap, weight in [(0, 10.0), (1, 10.0), (2, 3.0)]:
        w = CE.loss_weights(mask, overlap, weight)
        for b in range(3):
            holes = mask[b].nonzero().tolist()
            for i in range(12):
                for j in range(12):
                    if mask[b, i, j]:
                        expected = 1.0
                    elif any(max(abs(i - a), abs(j - c)) <= overlap for a, c in holes):
                        expected = weight
                    else:
                        expected = 0.0
                    assert w[b, i, j].item() == expected, (overlap, b, i, j)


def test_masked_l2_loss_matches_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(3, 2, 7, 7, generator=g), torch.rand(3, 2, 7, 7, generator=g)
    mask = CE.random_block_masks(3, 7, 0.3, 2, generator=g)
    w = CE.loss_weights(mask, 1, 10.0)
    num = den = 0.0
    for b in range(3):
        for i in range(7):
            for j in range(7):
                den += 2 * float(w[b, i, j])
                for c in range(2):
                    num += float(w[b, i, j]) * (float(pred[b, c, i, j]) - float(target[b, c, i, j])) ** 2
    assert abs(CE.masked_l2_loss(pred, target, w).item() - num / den) < 1e-6
    # a plain mask: the mean squared error over the removed pixels, whatever happens outside them
    plain = CE.masked_l2_loss(pred, target, mask.float()).item()
    expected = ((pred - target) ** 2).permute(0, 2, 3, 1)[mask].mean().item()
    assert abs(plain - expected) < 1e-6
    outside = torch.where(mask[:, None], pred, torch.rand(3, 2, 7, 7, generator=g))
    assert abs(CE.masked_l2_loss(outside, target, mask.float()).item() - plain) < 1e-6
    assert CE.masked_l2_loss(target, target, w).item() == 0.0


def test_masked_l2_loss_gradient_reaches_only_weighted_pixels():
    pred = torch.rand(1, 1, 5, 5, requires_grad=True)
    mask = CE.center_mask(5, 0.04)[None]  # the middle pixel only
    CE.masked_l2_loss(pred, torch.zeros(1, 1, 5, 5), mask.float()).backward()
    assert pred.grad[0, 0][mask[0]].abs().item() > 0 and pred.grad[0, 0][~mask[0]].abs().sum().item() == 0


def test_masked_l2_loss_rejects_bad_shapes():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="pred and target"):
        CE.masked_l2_loss(x, torch.rand(2, 1, 4, 5), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        CE.masked_l2_loss(x, x, torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match="sum to 0"):
        CE.masked_l2_loss(x, x, torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="bool"):
        CE.loss_weights(torch.ones(2, 4, 4), 1)


def test_adversarial_losses_are_the_gan_cross_entropies():
    d_real, d_fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d_loss, g_loss = CE.adversarial_losses(d_real, d_fake)
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(d_real)).mean() + torch.log(1 - sig(d_fake)).mean())
    expected_g = -torch.log(sig(d_fake)).mean()
    assert abs(d_loss.item() - expected_d.item()) < 1e-5 and abs(g_loss.item() - expected_g.item()) < 1e-5
    with pytest.raises(ValueError, match=r"\(B,\)"):
        CE.adversarial_losses(d_real[:, None], d_fake)


# ---------------------------------------------------------------- decoder, step, blur measures


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (1, 12)])
def test_decoder_gives_images_of_the_input_size_in_the_unit_range(channels, size):
    torch.manual_seed(0)
    backbone = SmallConvNet(channels, width=4)
    decoder = CE.make_decoder(backbone, (channels, size, size), tiny_config())
    out = decoder(backbone.forward_maps(torch.rand(2, channels, size, size))[-1])
    assert out.shape == (2, channels, size, size) and 0 <= out.min() and out.max() <= 1


def test_step_on_a_tiny_batch_trains_encoder_and_decoder_without_labels():
    torch.manual_seed(0)
    profile, cfg = tiny_profile(), tiny_config()
    backbone = build_backbone(profile, 1)
    decoder = CE.make_decoder(backbone, (1, 12, 12), cfg)
    step = CE.context_encoder_step(backbone, decoder, cfg, torch.Generator().manual_seed(0))
    batch = Batch(make_image_data(n=8, size=12).images, None, torch.arange(8))
    out = step(batch)
    assert set(out) == {"loss", "rec"} and math.isfinite(out["loss"].item()) and out["loss"].item() > 0
    out["loss"].backward()
    assert backbone.stages[0][0].weight.grad.abs().sum() > 0 and decoder.channel_fc.grad.abs().sum() > 0
    # the loss is the masked L2 of the documented masks: redo it by hand with the same generator
    g = torch.Generator().manual_seed(0)
    mask = CE.make_masks(8, (12, 12), cfg, g)
    x = batch.x.float() / 255
    backbone.train(), decoder.train()
    torch.manual_seed(0)
    expected = CE.masked_l2_loss(CE.inpaint(backbone, decoder, x, mask, cfg.fill_value), x,
                                 CE.loss_weights(mask, cfg.overlap, cfg.overlap_weight))
    assert abs(expected.item() - out["loss"].item()) < 1e-4


def test_adversarial_step_updates_the_discriminator_in_the_loop_and_leaves_it_out_of_the_joint_loss():
    torch.manual_seed(0)
    profile, cfg = tiny_profile(), tiny_config(adv_weight=0.3)
    backbone = build_backbone(profile, 1)
    decoder = CE.make_decoder(backbone, (1, 12, 12), cfg)
    disc = CE.Discriminator(1, width=4)
    adversary = CE.adversary(disc, cfg, lr=0.1)
    before = [p.detach().clone() for p in disc.parameters()]
    step = CE.context_encoder_step(backbone, decoder, cfg, torch.Generator().manual_seed(0), disc)
    first = step(Batch(make_image_data(n=8, size=12).images, None, torch.arange(8)))
    assert set(first) == {"adversary_loss", "rec", "fake"}
    assert all(torch.equal(b, p) for b, p in zip(before, disc.parameters(), strict=True)), "the step moves nothing"
    first["adversary_loss"].backward()  # what train.train does between the halves
    adversary.optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, disc.parameters(), strict=True)), "D took its step"
    out = adversary.finish(first)
    assert set(out) == {"loss", "rec", "adv", "d_loss"}
    assert abs(out["loss"].item() - (0.7 * out["rec"].item() + 0.3 * out["adv"].item())) < 1e-5
    disc.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is None for p in disc.parameters()), "the joint loss must not train D"
    assert all(p.requires_grad for p in disc.parameters())
    assert decoder.channel_fc.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="discriminator"):
        CE.context_encoder_step(backbone, decoder, cfg)


def reference_adversarial_step(backbone, decoder, cfg, generator, discriminator, d_optimizer):
    """The adversarial step as it was before the loop saw the discriminator's optimiser: D is updated inside
    the step, on the current fills, then the joint loss is built against the updated, frozen D."""

    def step(batch):
        x = to_float(batch.x)
        mask = CE.make_masks(len(x), tuple(x.shape[-2:]), cfg, generator).to(x.device)
        pred = CE.inpaint(backbone, decoder, x, mask, cfg.fill_value)
        rec = CE.masked_l2_loss(pred, x, CE.loss_weights(mask, cfg.overlap, cfg.overlap_weight))
        fake = CE.composite(x, pred, mask)
        d_loss, _ = CE.adversarial_losses(discriminator(x), discriminator(fake.detach()))
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        discriminator.requires_grad_(False)
        try:
            _, g_loss = CE.adversarial_losses(torch.zeros(1, device=x.device), discriminator(fake))
        finally:
            discriminator.requires_grad_(True)
        loss = (1 - cfg.adv_weight) * rec + cfg.adv_weight * g_loss
        return {"loss": loss, "rec": rec.detach(), "adv": g_loss.detach(), "d_loss": d_loss.detach()}

    return step


def reference_pretrain(data, profile, cfg):
    """context_encoder.pretrain as it was, with the step above: the same seeds in the same order."""
    torch.manual_seed(profile.seed)
    backbone = build_backbone(profile, data.images.shape[1])
    decoder = CE.make_decoder(backbone, tuple(data.images.shape[1:]), cfg)
    if profile.channels_last:
        decoder = decoder.to(memory_format=torch.channels_last)
    disc = CE.Discriminator(data.images.shape[1])
    d_optimizer = torch.optim.Adam(disc.parameters(), lr=profile.lr, betas=(0.5, 0.999))
    loader = DeviceLoader(data.images, None, min(cfg.batch_size, len(data)), device="cpu", seed=profile.seed)
    generator = torch.Generator().manual_seed(profile.seed)

    def forward(batch):
        x = to_float(batch.x)
        return CE.inpaint(backbone, decoder, x, CE.make_masks(len(x), tuple(x.shape[-2:]), cfg, generator), cfg.fill_value)

    step = reference_adversarial_step(backbone, decoder, cfg, generator, disc, d_optimizer)
    return pretrain_and_cache("reference", pretrain_key("reference", profile, cfg, data), backbone,
                              {"decoder": decoder, "discriminator": disc}, step, loader, profile.lr,
                              profile.weight_decay, cfg.num_epochs, cfg.time_budget_s, amp=profile.amp,
                              recalibrate=forward, recalibration_batches=cfg.recalibration_batches, progress=False)


@pytest.mark.parametrize("adv_weight, overlap", [(0.3, 1), (0.001, 2)])  # 0.001, 2: the full profile's
def test_the_loops_adversary_trains_bit_for_bit_as_the_step_that_updated_d_itself(cache, adv_weight, overlap):
    data = make_image_data(n=24, size=12)
    profile = tiny_profile()
    cfg = tiny_config(adv_weight=adv_weight, overlap=overlap, num_epochs=2)  # 3 steps of 8 images per epoch
    reference = reference_pretrain(data, profile, cfg)
    new = CE.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    assert new.history.steps == 6 and set(new.history.metrics) == {"loss", "rec", "adv", "d_loss"}
    assert new.history.metrics == reference.history.metrics
    assert set(new.heads) == set(reference.heads) == {"decoder", "discriminator"}
    for module, ref in [(new.backbone, reference.backbone), *((new.heads[k], reference.heads[k]) for k in new.heads)]:
        for (name, a), b in zip(module.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.equal(a, b), name


def test_gradient_energy_matches_a_loop_and_blur_lowers_it():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 2, 6, 6, generator=g)
    mask = CE.random_block_masks(2, 6, 0.4, 2, generator=g)
    got = CE.gradient_energy(x, mask)
    for b in range(2):
        total, pairs = 0.0, 0
        for i in range(6):
            for j in range(6):
                for di, dj in ((0, 1), (1, 0)):
                    a, c = i + di, j + dj
                    if a < 6 and c < 6 and mask[b, i, j] and mask[b, a, c]:
                        pairs += 1
                        total += sum(float(x[b, ch, i, j] - x[b, ch, a, c]) ** 2 for ch in range(2))
        assert abs(got[b].item() - total / (2 * pairs)) < 1e-6
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert (CE.gradient_energy(blurred, mask) < got).all()


def test_blur_measures_of_the_mean_and_of_the_truth():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(4, 1, 8, 8, generator=g)
    mean_image = torch.rand(1, 8, 8, generator=g)
    mask = CE.center_mask(8, 0.25).expand(4, -1, -1).clone()
    as_truth = CE.blur_measures(truth, truth, mask, mean_image)
    assert as_truth["mse_fill"] == 0 and as_truth["sharpness_fill"] == as_truth["sharpness_truth"]
    assert abs(as_truth["to_mean_fill"] - as_truth["mse_mean"]) < 1e-7
    as_mean = CE.blur_measures(mean_image.expand_as(truth), truth, mask, mean_image)
    assert abs(as_mean["mse_fill"] - as_mean["mse_mean"]) < 1e-7 and as_mean["to_mean_fill"] == 0
    with pytest.raises(ValueError, match="mean_image"):
        CE.blur_measures(truth, truth, mask, mean_image[0])


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("change", [{"mask": "circle"}, {"mask_fraction": 0.0}, {"num_blocks": 0},
                                    {"fill_value": 2.0}, {"overlap": -1}, {"overlap_weight": -1.0},
                                    {"adv_weight": 1.5}, {"decoder_width": 0}, {"batch_size": 0},
                                    {"num_epochs": 0}, {"time_budget_s": 0}, {"recalibration_batches": -1}])
def test_bad_config_raises_when_built(change):
    field = next(iter(change))
    with pytest.raises(ValueError, match=field):
        CE.ContextEncoderConfig(**change)


def test_config_for_resolves_every_profile_and_rejects_unknown_settings():
    fast = CE.config_for(get_profile("fast"))
    assert (fast.mask, fast.adv_weight, fast.time_budget_s) == ("regions", 0.0, 80.0)
    full = CE.config_for(get_profile("full"))
    assert full.adv_weight == 0.001 and full.time_budget_s is None and full.num_epochs == 100
    grade = CE.config_for(get_profile("grade"))
    assert grade.time_budget_s == 5.0 and grade.num_epochs == 1  # the profile's smaller budget wins
    assert CE.config_for(get_profile("fast"), mask="center").mask == "center"
    with pytest.raises(TypeError, match="unknown"):
        CE.config_for(get_profile("fast"), temperature=0.1)
    with pytest.raises(TypeError, match="Profile"):
        CE.config_for("fast")


# ---------------------------------------------------------------- pretrain


def test_pretrain_rejects_images_too_small_for_the_encoder_before_training(cache):
    with pytest.raises(ValueError, match="8x8"):
        CE.pretrain(make_image_data(size=6), tiny_profile(), tiny_config(), progress=False)
    assert not list(cache.glob("checkpoints/*"))


def test_full_profile_config_trains_with_the_adversarial_term_on_cifar_shaped_data(cache):
    """The full profile's config (ResNet-18, joint loss with a discriminator) on random (16, 3, 32, 32) uint8."""
    full = get_profile("full")
    cfg = CE.config_for(full, batch_size=8, num_epochs=1, recalibration_batches=1)  # the rest as full trains
    assert cfg.adv_weight == 0.001 and cfg.overlap == 2
    pre = CE.pretrain(make_image_data(n=16, channels=3, size=32, num_classes=10), full, cfg, torch.device("cpu"),
                      progress=False)
    history = pre.history
    assert history.steps == 2 and set(history.metrics) == {"loss", "rec", "adv", "d_loss"}
    assert all(math.isfinite(v) for vs in history.metrics.values() for v in vs)
    assert set(pre.heads) == {"decoder", "discriminator"} and pre.backbone.feature_dim == 512
    fill = CE.fill_images(pre, make_image_data(n=4, channels=3, size=32).images,
                          CE.center_mask(32).expand(4, -1, -1))
    assert fill.shape == (4, 3, 32, 32)


def test_discriminator_loss_trains_on_both_real_and_fake_logits():
    d_real, d_fake = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    d_loss, _ = CE.adversarial_losses(d_real, d_fake)
    d_loss.backward()
    assert (d_real.grad < 0).all() and (d_fake.grad > 0).all(), "D pushes real logits up and fake logits down"


def test_two_answer_toy_l2_learns_the_average_and_the_adversarial_term_a_sharp_answer():
    context, a, b = CE.two_answer_toy(12, 6)
    mask = context[0, 0] == 0.5
    assert int(mask.sum()) == 36 and torch.equal(a[0, 0][~mask], b[0, 0][~mask])  # one context for both
    assert torch.equal(a[0, 0][mask], 1 - b[0, 0][mask]) and ((a + b) / 2)[0, 0][mask].eq(0.5).all()
    l2 = CE.train_two_answer_toy(0.0, steps=200, seed=0)
    w = l2["mask"].float()
    assert CE.masked_l2_loss(l2["fill"], (a + b) / 2, w) < 1e-3  # the mean of the two answers: flat grey
    adv = CE.train_two_answer_toy(0.5, steps=300, seed=0)
    to_answer = min(CE.masked_l2_loss(adv["fill"], a, w), CE.masked_l2_loss(adv["fill"], b, w))
    assert to_answer < 0.05 and CE.gradient_energy(adv["fill"], adv["mask"]) > 0.3
    with pytest.raises(ValueError, match="hole"):
        CE.two_answer_toy(8, 7)
