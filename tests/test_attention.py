
import pytest
import torch
import torch.nn as nn

from daam import (
    DensityAdaptiveAttention,
    DensityBlock,
    GaussianAdaptiveAttention,
    GaussianBlock,
    MultiHeadDensityAdaptiveAttention,
    MultiHeadGaussianAdaptiveAttention,
)
from daam.density_functions import _MixtureGate

from loop_reference import loop_density_attention as reference

MODES = ["mixture", "product"]


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Move the parameters off their (symmetric) initial values so that tests can tell heads apart."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.7)
    return module


@pytest.mark.parametrize("cls", [DensityBlock, GaussianBlock])
def test_seed_example_runs_forward_and_backward(cls):
    block = cls([1, 1, 1], [4, 4, 4], [5, 5, 5], 3, None, 1e-8)
    net = nn.Sequential(block, nn.Linear(128, 128))
    x = torch.rand(10, 128)
    out = net(x)
    out.sum().backward()
    assert out.shape == (10, 128)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
    assert any(p.grad.abs().sum() > 0 for p in block.parameters())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "shape,norm_axis,heads,head_axis",
    [
        ((3, 12, 5), 1, 4, None),  # even split of the norm axis
        ((3, 14, 5), 1, 4, None),  # uneven: last head takes the remainder
        ((2, 7, 9), -1, 2, None),
        ((4, 10, 6), 1, 3, 2),  # heads over channel groups, statistics over positions
        ((4, 10, 6), 2, 2, 0),
        ((5, 8), 0, 3, 1),
    ],
)
def test_vectorised_matches_loop_reference(mode, shape, norm_axis, heads, head_axis):
    torch.manual_seed(1)
    m = randomise(MultiHeadDensityAdaptiveAttention(norm_axis, heads, 3, None, 1e-5, mode, head_axis=head_axis))
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    m = m.double()
    p = m.density_parameters()
    expected = reference(x, norm_axis, m.mean_offsets.detach(), m.scales.detach(), m.mixture_weights.detach(),
                         mode, 1e-5, head_axis)
    torch.testing.assert_close(m(x), expected, rtol=1e-9, atol=1e-10)
    assert p["offsets"].shape == p["scales"].shape == p["weights"].shape == (heads, 3)


def _mixture_gate_inputs():
    """z (A, P, B) and per-position parameters (K, 1, P, 1), in float64 for the numerical checks."""
    torch.manual_seed(0)
    z = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    offsets = torch.randn(2, 1, 3, 1, dtype=torch.float64, requires_grad=True)
    neg_inv_two_var = (-torch.rand(2, 1, 3, 1, dtype=torch.float64) - 0.3).requires_grad_()
    log_w = torch.log_softmax(torch.randn(2, 1, 3, 1, dtype=torch.float64), 0).requires_grad_()
    return z, offsets, neg_inv_two_var, log_w


def test_mixture_backward_matches_finite_differences():
    assert torch.autograd.gradcheck(_MixtureGate.apply, _mixture_gate_inputs())


def test_product_mode_equals_its_collapsed_gaussian():
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3, mode="product")).double()
    grid = torch.linspace(-4, 4, 101, dtype=torch.float64)
    _, factors = m.density_curve(grid, components=True)
    torch.testing.assert_close(m.density_curve(grid), factors.prod(1))
    p = m.density_parameters()
    assert p["collapsed_peak"].max() <= 1 and p["collapsed_scale"].min() > 0


@pytest.mark.parametrize("mode", MODES)
def test_module_gradients_match_loop_reference(mode):
    torch.manual_seed(2)
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 3, 2, mode=mode)).double()
    x = torch.randn(2, 11, 4, dtype=torch.float64, requires_grad=True)
    m(x).square().sum().backward()
    ours = [x.grad.clone()] + [p.grad.clone() for p in m.parameters() if p.grad is not None]

    x.grad = None
    m.zero_grad()
    ref = reference(x, 1, m.mean_offsets, m.scales, m.mixture_weights, mode, m.eps)
    ref.square().sum().backward()
    theirs = [x.grad] + [p.grad for p in m.parameters() if p.grad is not None]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


HOSTILE = {
    "constant": lambda: torch.full((4, 16, 8), 3.0),
    "huge": lambda: torch.randn(4, 16, 8) * 1e4,
    "tiny_variance": lambda: 1.0 + torch.randn(4, 16, 8) * 1e-7,  # variance ~1e-14
    "slices_of_one": lambda: torch.randn(4, 1, 8),
    "padding_only": lambda: torch.zeros(4, 16, 8),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_no_nan_or_inf_in_outputs_or_gradients(mode, case, dtype):
    x = HOSTILE[case]().to(dtype).requires_grad_()
    heads = 1 if x.shape[1] == 1 else 4
    padding = 0.0 if case == "padding_only" else None
    m = randomise(MultiHeadDensityAdaptiveAttention(1, heads, 3, padding, mode=mode))
    y, inter = m(x, return_intermediates=True)
    gates = inter.gate
    assert y.dtype == dtype and gates.shape == x.shape
    (y.float().square().sum() + gates.float().sum()).backward()
    assert torch.isfinite(y.float()).all() and torch.isfinite(gates.float()).all()
    assert torch.isfinite(x.grad.float()).all()
    assert m.mean_offsets.grad is not None and m.raw_scales.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_low_precision_is_computed_in_float32():
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3))
    x = torch.randn(3, 10, 4)
    expected = m(x.bfloat16().float())
    torch.testing.assert_close(m(x.bfloat16()).float(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("head_axis", [None, 2])
def test_appending_padding_leaves_real_outputs_unchanged(mode, head_axis):
    torch.manual_seed(3)
    heads = 2
    m = randomise(MultiHeadDensityAdaptiveAttention(1, heads, 3, padding_value=-7.0, mode=mode, head_axis=head_axis))
    x = torch.randn(2, 6, 4)
    if head_axis is None:  # chunks of the norm axis: pad within each head's chunk
        chunks = x.split(3, dim=1)
        padded = torch.cat([torch.cat([c, torch.full((2, 2, 4), -7.0)], 1) for c in chunks], 1)
        real = torch.cat([torch.cat([torch.ones(3), torch.zeros(2)]) for _ in chunks]).bool()
        y, y_pad = m(x), m(padded)
        torch.testing.assert_close(y_pad[:, real], y, atol=1e-5, rtol=1e-5)
        assert (y_pad[:, ~real] == -7.0).all()
    else:
        padded = torch.cat([x, torch.full((2, 3, 4), -7.0)], dim=1)
        y, y_pad = m(x), m(padded)
        torch.testing.assert_close(y_pad[:, :6], y, atol=1e-5, rtol=1e-5)
        assert (y_pad[:, 6:] == -7.0).all()


def test_explicit_mask_overrides_padding_value():
    """A real value that happens to equal the padding value is kept when the mask says so."""
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 1, 2, padding_value=0.0))
    x = torch.tensor([[0.0, 1.0, 2.0, 5.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    y, inter = m(x, mask=mask, return_intermediates=True)
    gate = inter.gate
    reference_y = randomise(MultiHeadDensityAdaptiveAttention(1, 1, 2))(x[:, :4])
    torch.testing.assert_close(y[:, :4], reference_y)
    assert gate[0, 4] == 1.0 and y[0, 4] == 0.0
    with pytest.raises(ValueError, match="mask must be boolean"):
        m(x, mask=mask.float())


def test_block_keeps_padding_and_returns_details_per_layer():
    block = randomise(DensityBlock([1, 1], [2, 2], [3, 3], 2, padding_value=0.0))
    x = torch.cat([torch.randn(2, 6, 3) + 5, torch.zeros(2, 2, 3)], dim=1)
    y, details = block(x, return_intermediates=True)
    assert set(details) == {"layer_0", "layer_1"}
    assert (y[:, 6:] == 0).all()
    assert not torch.allclose(y[:, :6], x[:, :6])


def test_eps_is_honoured():
    x = 1.0 + torch.randn(2, 32) * 1e-4  # near-constant: variance ~1e-8, comparable to eps
    outs = [randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3, eps=eps))(x) for eps in (1e-12, 1e-2)]
    assert not torch.allclose(outs[0], outs[1])


def test_mixture_gates_lie_in_unit_interval():
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 4, 5), seed=7)
    gate = m(torch.randn(6, 40, 3) * 5, return_intermediates=True)[1].gate
    assert gate.min() >= 0 and gate.max() <= 1


def _count_modes(curve: torch.Tensor) -> int:
    inner = curve[1:-1]
    return int(((inner > curve[:-2]) & (inner > curve[2:])).sum())


def test_two_separated_densities_are_bimodal_only_in_mixture_mode():
    grid = torch.linspace(-5, 5, 401)
    curves = {}
    for mode in MODES:
        m = MultiHeadDensityAdaptiveAttention(1, 1, 2, mode=mode)
        with torch.no_grad():
            m.mean_offsets.copy_(torch.tensor([[-2.0, 2.0]]))
            m.raw_scales.fill_(-0.2)  # softplus(-0.2) ~ 0.6
        curves[mode], parts = m.density_curve(grid, components=True)
        assert curves[mode].shape == (1, 401) and parts.shape == (1, 2, 401)
        if mode == "mixture":
            torch.testing.assert_close(parts.sum(1), curves[mode])
    assert _count_modes(curves["mixture"][0]) == 2
    assert _count_modes(curves["product"][0]) == 1


def test_density_curve_agrees_with_forward():
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 3, 4))
    x = torch.randn(2, 9, 5)
    gate = m(x, return_intermediates=True)[1].gate
    # recompute z for head 0 (positions 0..2) and evaluate the curve there
    part = x[:, :3]
    z = (part - part.mean(1, keepdim=True)) / torch.sqrt(part.var(1, unbiased=False, keepdim=True) + m.eps)
    torch.testing.assert_close(m.z_scores(x)[:, :3], z)
    curve = m.density_curve(z.flatten())[0].reshape(z.shape)
    torch.testing.assert_close(curve, gate[:, :3])


def test_single_head_module_and_gaussian_twins_share_behaviour():
    x = torch.randn(3, 12)
    for a, b in [
        (DensityAdaptiveAttention(1, 4, 3), GaussianAdaptiveAttention(1, 4, 3)),
        (MultiHeadDensityAdaptiveAttention(1, 4, 3), MultiHeadGaussianAdaptiveAttention(1, 4, 3)),
        (DensityBlock([1], [2], [3], 1), GaussianBlock([1], [2], [3], 1)),
    ]:
        b.load_state_dict(randomise(a).state_dict())
        torch.testing.assert_close(a(x), b(x))
    assert DensityAdaptiveAttention(1, 4, 3).density_parameters()["offsets"].shape == (1, 3)
    y, inter = GaussianAdaptiveAttention(1, 4, 3)(x, return_intermediates=True)
    gate = inter.gate
    assert gate.shape == x.shape


def test_initial_parameters_follow_the_spec():
    m = MultiHeadDensityAdaptiveAttention(1, 2, 4)
    p = m.density_parameters()
    assert (p["offsets"] == 0).all()
    torch.testing.assert_close(p["weights"], torch.full((2, 4), 0.25))
    assert p["scales"].min() < 1 < p["scales"].max() and p["scales"].min() > 0
    assert DensityAdaptiveAttention(1, 1, 2, mean_offset_init=0.5).density_parameters()["offsets"].eq(0.5).all()


@pytest.mark.parametrize(
    "make,call,message",
    [
        (lambda: MultiHeadDensityAdaptiveAttention(1, 4, 2), lambda m: m(torch.randn(2, 3)), "num_heads=4.*3 entries.*shape \\(2, 3\\)"),
        (lambda: MultiHeadDensityAdaptiveAttention(3, 1, 2), lambda m: m(torch.randn(2, 3)), "norm_axis=3.*shape \\(2, 3\\)"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 2, head_axis=5), lambda m: m(torch.randn(2, 3)), "head_axis=5"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 2), lambda m: m(torch.tensor(1.0)), "at least 1 dimension"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 2), lambda m: m(torch.ones(3, dtype=torch.long)), "floating-point"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 0, 2), None, "num_heads"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 0), None, "num_densities"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 2, eps=0), None, "eps"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 2, eps=-1e-8), None, "eps"),
        (lambda: MultiHeadDensityAdaptiveAttention(0, 1, 2, mode="sum"), None, "mode"),
        (lambda: DensityBlock([1, 1], [2, 2], [3], 2), None, "num_densities.*num_layers=2.*got 1"),
        (lambda: DensityBlock([1], [2], [3], 0), None, "num_layers"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, call, message):
    with pytest.raises(ValueError, match=message):
        module = make()
        call(module)


def test_empty_input_passes_through():
    m = MultiHeadDensityAdaptiveAttention(1, 1, 2)
    y, inter = m(torch.randn(0, 4), return_intermediates=True)
    gate = inter.gate
    assert y.shape == (0, 4) and gate.shape == (0, 4)


def test_set_density_parameters_inverts_density_parameters():
    m = MultiHeadDensityAdaptiveAttention(1, 2, 3)
    offsets, scales, weights = torch.randn(2, 3), torch.rand(2, 3) + 0.2, torch.rand(2, 3) + 0.1
    m.set_density_parameters(offsets, scales, weights)
    p = m.density_parameters()
    torch.testing.assert_close(p["offsets"], offsets)
    torch.testing.assert_close(p["scales"], scales)
    torch.testing.assert_close(p["weights"], weights / weights.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="scales"):
        m.set_density_parameters(offsets, torch.zeros(2, 3), weights)


@pytest.mark.parametrize("pad", [float("nan"), float("inf"), -float("inf"), 1e20])
@pytest.mark.parametrize("mode", ["mixture", "product"])
def test_non_finite_or_huge_padding_never_reaches_the_real_entries(pad, mode):
    torch.manual_seed(0)
    layer = randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3, padding_value=pad, mode=mode))
    explicit = MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode)
    explicit.load_state_dict(layer.state_dict())
    x = torch.randn(2, 6, 3)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, 4:] = False
    x[:, 4:] = 0.0
    reference = explicit(x, mask=mask)[:, :4]  # finite padding, excluded by an explicit mask
    x[:, 4:] = pad
    y = layer(x)
    torch.testing.assert_close(y[:, :4], reference)  # the padding value never reaches the real entries
    kept = y[:, 4:]
    assert (kept.isnan() if pad != pad else kept == pad).all()  # and passes through untouched
    x[:, 4:] = float("nan")
    torch.testing.assert_close(explicit(x, mask=mask)[:, :4], reference)  # NaN under an explicit mask too


def test_the_mixture_gate_has_a_second_derivative():
    assert torch.autograd.gradgradcheck(_MixtureGate.apply, _mixture_gate_inputs())


def test_the_deprecated_gate_flags_still_answer_and_say_what_replaces_them():
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3))
    block = randomise(DensityBlock([1, 2], [2, 1], [3, 3], 2))
    x = torch.randn(2, 6, 3)
    for flag in ("return_weights", "return_attention_details"):
        with pytest.warns(FutureWarning, match="return_intermediates=True"):
            y, gate = m(x, **{flag: True})
        torch.testing.assert_close(gate, m(x, return_intermediates=True)[1].gate)
        with pytest.warns(FutureWarning, match="drop-in packages"):
            y, gates = block(x, **{flag: True})
        _, details = block(x, return_intermediates=True)
        assert set(gates) == set(details) == {"layer_0", "layer_1"}
        for name in gates:
            torch.testing.assert_close(gates[name], details[name].gate)
