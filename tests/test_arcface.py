"""ArcFace margin head (retina.recognition.arcface) against float64 references written with math.acos."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from retina.recognition.arcface import ArcFaceCfg, ArcFaceHead, arcface_loss, margin_logits, target_logit

M = 0.5
TH = math.cos(math.pi - M)  # -0.8776: below it theta + m passes pi
MM = math.sin(math.pi - M) * M  # 0.2397


def reference(c: float, cfg: ArcFaceCfg) -> float:
    """cos(theta + m) through the angle itself (float64), with the clamp and the two rules past pi."""
    c = min(max(c, -1.0 + cfg.eps), 1.0 - cfg.eps)
    theta = math.acos(c)
    if cfg.easy_margin:
        return math.cos(theta + cfg.margin) if theta < math.pi / 2 else c
    if theta + cfg.margin < math.pi:
        return math.cos(theta + cfg.margin)
    return c - cfg.margin * math.sin(cfg.margin)


# Angles from 0 to pi: exactly 0 and pi (clamped), inside the clamp (< sqrt(2 eps) = 1.4e-3), just outside it,
# around pi/2 (the easy-margin switch), around pi - m (the default fallback switch), and near pi.
ANGLES = [0.0, 1e-3, 2e-3, 1e-2, 0.3, 1.0, math.pi / 2 - 1e-2, math.pi / 2 + 1e-2, 2.0]
ANGLES += [math.pi - M - 1e-2, math.pi - M + 1e-2, math.pi - 1e-2, math.pi - 2e-3, math.pi]


@pytest.mark.parametrize("easy", [False, True])
def test_target_logit_matches_the_float64_angle_reference(easy):
    cfg = ArcFaceCfg(easy_margin=easy)
    cos = torch.tensor([math.cos(a) for a in ANGLES], dtype=torch.float64)
    expected = torch.tensor([reference(c, cfg) for c in cos.tolist()], dtype=torch.float64)
    torch.testing.assert_close(target_logit(cos, cfg), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("easy", [False, True])
def test_float32_agrees_with_float64_reference(easy):
    cfg = ArcFaceCfg(easy_margin=easy)
    cos32 = torch.tensor([math.cos(a) for a in ANGLES], dtype=torch.float32)
    # The reference sees what float32 can represent: the rounded cosines and clamp bounds (near theta = 0 a
    # rounding of the cosine by 6e-8 moves theta by 6e-8 / sin(theta): that is the input's error, not ours).
    low, high = np.float32(-1 + cfg.eps), np.float32(1 - cfg.eps)
    clamped = [float(np.clip(np.float32(c), low, high)) for c in cos32.tolist()]
    expected = torch.tensor([reference(c, cfg) for c in clamped], dtype=torch.float64)
    got = target_logit(cos32, cfg).double()
    torch.testing.assert_close(got, expected, rtol=0, atol=5e-7)


def test_golden_values_by_hand():
    cos = torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
    # theta = pi/3: cos(pi/3 + 0.5) = cos(pi/3) cos(0.5) - sin(pi/3) sin(0.5) = 0.5 * 0.877583 - 0.866025 * 0.479426
    hard = target_logit(cos, ArcFaceCfg())
    assert hard[0].item() == pytest.approx(0.5 * 0.8775825619 - 0.8660254038 * 0.4794255386, abs=1e-9)
    assert hard[1].item() == pytest.approx(-0.4794255386, abs=1e-9)  # theta = pi/2: cos(pi/2 + m) = -sin(m)
    # cos = 1 is clamped to 1 - 1e-6: theta = acos(1 - 1e-6) = 1.41421e-3, cos(theta + 0.5) = 0.877  (not NaN)
    assert hard[2].item() == pytest.approx(math.cos(math.acos(1 - 1e-6) + 0.5), abs=1e-12)
    easy = target_logit(cos, ArcFaceCfg(easy_margin=True))
    assert easy[1].item() == 0.0  # easy margin: no margin where cos <= 0


def test_fallback_branch_taken_exactly_past_pi_minus_m():
    cfg = ArcFaceCfg()
    above, below = np.nextafter(TH, 1.0), np.nextafter(TH, -1.0)
    cos = torch.tensor([above, TH, below], dtype=torch.float64)
    out = target_logit(cos, cfg).tolist()
    # Just above th: the margin branch, cos(theta + m) = cos(~pi) = -1; at and below th: cos - m sin m.
    assert out[0] == pytest.approx(above * math.cos(M) - math.sqrt(1 - above**2) * math.sin(M), abs=1e-15)
    assert out[0] == pytest.approx(-1.0, abs=1e-7)
    assert out[1] == TH - MM
    assert out[2] == below - MM


def test_easy_margin_switches_exactly_at_zero():
    cfg = ArcFaceCfg(easy_margin=True)
    tiny = 5e-324
    out = target_logit(torch.tensor([tiny, 0.0, -tiny, -0.5], dtype=torch.float64), cfg).tolist()
    assert out[0] == pytest.approx(-math.sin(M), abs=1e-15)  # theta just under pi/2: margin applied
    assert out[1:] == [0.0, -tiny, -0.5]  # cos <= 0: unchanged


@pytest.mark.parametrize("easy", [False, True])
def test_target_logit_is_decreasing_in_the_angle(easy):
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    phi = target_logit(torch.cos(theta), ArcFaceCfg(easy_margin=easy))
    if easy:  # cos(theta + m) up to pi/2, then cos theta: a jump up of sin(m) at pi/2, decreasing elsewhere
        left, right = phi[torch.cos(theta) > 0], phi[torch.cos(theta) <= 0]
        assert (left.diff() <= 1e-12).all() and (right.diff() <= 1e-12).all()
    else:
        assert (phi.diff() <= 1e-12).all()


def test_gradient_finite_at_cosines_of_exactly_one_and_minus_one():
    for easy in (False, True):
        cos = torch.tensor([1.0, -1.0, 1.0 + 1e-7, 0.3], dtype=torch.float32, requires_grad=True)
        target_logit(cos, ArcFaceCfg(easy_margin=easy)).sum().backward()
        assert torch.isfinite(cos.grad).all()
        # d/dc [c cos m - sqrt(1 - c^2) sin m] = cos m + c sin m / sqrt(1 - c^2) inside the clamp
        expected = math.cos(M) + 0.3 * math.sin(M) / math.sqrt(1 - 0.09)
        assert cos.grad[3].item() == pytest.approx(expected, rel=1e-5)


def test_margin_logits_scale_and_replace_only_the_targets():
    cfg = ArcFaceCfg(scale=10.0)
    cos = torch.tensor([[0.2, 0.9, -0.3], [0.5, 0.1, 0.4]], dtype=torch.float64)
    labels = torch.tensor([1, 2])
    logits = margin_logits(cos, labels, cfg)
    expected = 10.0 * cos.clone()
    expected[0, 1] = 10.0 * math.cos(math.acos(0.9) + M)
    expected[1, 2] = 10.0 * math.cos(math.acos(0.4) + M)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    # loss by hand: mean over rows of logsumexp(row) - row[label]
    rows = logits.tolist()
    hand = [math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(rows, [1, 2], strict=True)]
    assert arcface_loss(logits, labels).item() == pytest.approx(sum(hand) / 2, abs=1e-12)


@pytest.mark.parametrize("easy", [False, True])
def test_zero_margin_is_the_normalised_softmax(easy):
    torch.manual_seed(0)
    head = ArcFaceHead(16, 7, ArcFaceCfg(scale=30.0, margin=0.0, easy_margin=easy)).double()
    x = torch.randn(9, 16, dtype=torch.float64)
    labels = torch.randint(0, 7, (9,))
    cos = F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T
    torch.testing.assert_close(head(x, labels), 30.0 * cos, rtol=0, atol=1e-12)
    torch.testing.assert_close(arcface_loss(head(x, labels), labels), F.cross_entropy(30.0 * cos, labels))


def test_head_cosines_are_normalised_dot_products():
    torch.manual_seed(1)
    head = ArcFaceHead(8, 5)
    x = torch.randn(4, 8) * 50
    cos = head.cosine(x)
    assert cos.dtype == torch.float32 and cos.shape == (4, 5)
    assert cos.abs().max() <= 1.0 + 1e-6
    expected = F.normalize(x.double(), dim=1) @ F.normalize(head.weight.double(), dim=1).T
    torch.testing.assert_close(cos.double(), expected, rtol=0, atol=1e-6)
    assert head.cosine(x.bfloat16()).dtype == torch.float32  # at least float32 whatever comes in


@pytest.mark.parametrize(("easy", "scale"), [(False, 64.0), (True, 64.0), (False, 4.0)])
def test_gradcheck_head_and_loss_in_float64(easy, scale):
    cfg = ArcFaceCfg(scale=scale, easy_margin=easy)
    torch.manual_seed(2)
    head = ArcFaceHead(6, 5, cfg).double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = head.weight.detach().clone().requires_grad_(True)
    # Targets: two with theta + m beyond pi (the fallback), the others in the margin branch.
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        x[0] = -w[0] + 0.05 * torch.randn(6, dtype=torch.float64)
        x[1] = -w[1] + 0.05 * torch.randn(6, dtype=torch.float64)
        x[2] = w[2] + 0.6 * torch.randn(6, dtype=torch.float64)
    target_cos = head.cosine(x).gather(1, labels[:, None]).squeeze(1)
    switch = 0.0 if easy else TH
    assert (target_cos - switch).abs().min() > 0.02  # away from the branch switch (a jump) ...
    assert target_cos.abs().max() < 1 - 1e-3  # ... and from the clamp (zero gradient beyond it)
    if not easy:
        assert (target_cos < TH).sum() == 2  # both branches are exercised

    def loss(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return arcface_loss(functional_call(head, {"weight": w}, (x, labels)), labels)

    assert torch.autograd.gradcheck(loss, (x, w), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_config_rejects_out_of_range_values():
    for bad in (dict(scale=0.0), dict(margin=-0.1), dict(margin=math.pi / 2), dict(eps=0.0)):
        with pytest.raises(ValueError):
            ArcFaceCfg(**bad)
    with pytest.raises(ValueError):
        ArcFaceHead(0, 3)
