"""The contrastive losses against loop references written here, and exact known values."""

import math

import pytest
import torch

from course_lib.contrastive import info_nce, nt_xent


def reference_info_nce(q, pos, neg, t, normalize):
    """Row by row: -log( exp(q_i.p_i / t) / (sum_j exp(q_i.p_j / t) + sum_l exp(q_i.n_l / t)) )."""
    unit = (lambda v: v / v.norm()) if normalize else (lambda v: v)
    keys = list(pos) + ([] if neg is None else list(neg))
    total = 0.0
    for i in range(len(q)):
        sims = [float(unit(q[i]) @ unit(k)) / t for k in keys]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / len(q)


def reference_nt_xent(z1, z2, t):
    """The slide's 2N terms, one at a time, with the indicator 1[k != i] as an if."""
    z = [v / v.norm() for v in torch.cat([z1, z2])]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [1.0, 0.1])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("extra", [0, 3])
def test_info_nce_matches_a_loop_reference(temperature, normalize, extra):
    g = torch.Generator().manual_seed(0)
    q, pos = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    neg = torch.randn(extra, 4, generator=g, dtype=torch.float64) if extra else None
    loss = info_nce(q, pos, neg, temperature, normalize)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(reference_info_nce(q, pos, neg, temperature, normalize), rel=1e-9)


def test_info_nce_with_cosine_ignores_lengths_and_dot_product_does_not():
    g = torch.Generator().manual_seed(1)
    q, pos = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    scale = torch.arange(1, 6, dtype=torch.float64)[:, None]
    assert info_nce(3 * q, pos * scale).item() == pytest.approx(info_nce(q, pos).item(), rel=1e-9)
    assert info_nce(3 * q, pos * scale, normalize=False).item() != pytest.approx(
        info_nce(q, pos, normalize=False).item(), rel=1e-3)


def test_info_nce_exact_values_on_orthonormal_pairs():
    n, t = 5, 0.5
    eye = torch.eye(n)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (n - 1)))
    assert info_nce(eye, eye, temperature=t).item() == pytest.approx(expected, rel=1e-6)
    # identical candidates: the loss is log N, the value at chance
    same = torch.ones(4, 3)
    assert info_nce(same, same, torch.ones(6, 3)).item() == pytest.approx(math.log(10), rel=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_matches_the_loop_over_its_2n_terms(temperature):
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-5)
    # symmetric in the two views, and invariant to each projection's length
    assert nt_xent(z2, z1, temperature).item() == pytest.approx(nt_xent(z1, z2, temperature).item(), rel=1e-6)
    assert nt_xent(2 * z1, 0.5 * z2, temperature).item() == pytest.approx(nt_xent(z1, z2, temperature).item(),
                                                                            rel=1e-5)


def test_nt_xent_of_aligned_pairs_has_its_known_value():
    z = torch.eye(8, 16)  # orthonormal: positives have cosine 1, negatives 0
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 14 * math.exp(0)))  # 2N - 2 = 14 negatives
    assert nt_xent(z, z, t).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: info_nce(torch.ones(3, 2), torch.ones(4, 2)), "both be"),
    (lambda: info_nce(torch.ones(3, 2), torch.ones(3, 2), torch.ones(2, 5)), "negatives"),
    (lambda: info_nce(torch.ones(3, 2), torch.ones(3, 2), temperature=0), "temperature"),
    (lambda: nt_xent(torch.ones(3, 2), torch.ones(2, 2)), "both be"),
    (lambda: nt_xent(torch.ones(3, 2), torch.ones(3, 2), temperature=-1), "temperature"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("extra", [0, 2])
def test_info_nce_in_groups_is_the_mean_over_each_groups_loop(extra):
    g = torch.Generator().manual_seed(5)
    q, pos = torch.randn(3, 4, 2, generator=g, dtype=torch.float64), torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    neg = torch.randn(3, extra, 2, generator=g, dtype=torch.float64) if extra else None
    for normalize in (True, False):
        expected = sum(reference_info_nce(q[i], pos[i], None if neg is None else neg[i], 0.5, normalize)
                       for i in range(3)) / 3
        assert info_nce(q, pos, neg, 0.5, normalize).item() == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, pos, torch.ones(2, 2, 2))
