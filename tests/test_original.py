"""The drop-in packages against the real original release (gaussian-adaptive-attention 0.1.5, a dev dependency).

The original is loaded from its installed file under another module name, because the drop-in packages in this
repository take its import name."""

import importlib.metadata
import importlib.util

import pytest
import torch
import torch.nn as nn

import density_adaptive_attention
import gaussian_adaptive_attention
from gaussian_adaptive_attention.gaussian_block import GaussianBlock


def _load_original():
    path = importlib.metadata.distribution("gaussian-adaptive-attention").locate_file(
        "gaussian_adaptive_attention/GaussianBlock.py")
    spec = importlib.util.spec_from_file_location("original_gaussian_adaptive_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


original = _load_original()


def _head_sums(gate: torch.Tensor, axis: int, heads: int) -> torch.Tensor:
    """Sum of the gate over each head's chunk of the axis, spread back over the chunk (the last takes the remainder)."""
    n = gate.shape[axis]
    bounds = [i * (n // heads) for i in range(heads)] + [n]
    parts = [gate.narrow(axis, lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]
    return torch.cat([p.sum(axis, keepdim=True).expand_as(p) for p in parts], axis)


CASES = [  # shape, norm axis, heads, densities
    ((10, 128), 1, 4, 5),  # the seed READMEs' example
    ((3, 12, 5), 1, 4, 3),
    ((3, 14, 5), 1, 4, 2),  # uneven heads: the last takes the remainder
    ((2, 7, 9), -1, 2, 3),
    ((2, 3, 10, 4), 2, 3, 4),
    ((2, 6, 4, 5), 0, 1, 3),
]


@pytest.mark.parametrize("shape,axis,heads,k", CASES)
def test_multi_head_matches_the_original_with_its_state_dict(shape, axis, heads, k):
    torch.manual_seed(sum(shape) + heads)
    theirs = original.MultiHeadGaussianAdaptiveAttention(axis, heads, k)
    with torch.no_grad():
        for head in theirs.attention_heads:
            head.mean_offsets.normal_(0, 0.5)
            head.c.copy_(head.c.abs() + 0.5)  # |c| >= 0.5: the original's product stays representable
    ours = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(axis, heads, k)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(*shape) * 2 + 0.5
    y_theirs, gate_theirs = theirs(x, True)
    y_ours, gate_ours = ours(x, True)
    assert torch.isfinite(y_theirs).all()
    # Where the original's sum fell under its clamp, its gate does not sum to 1: that is its underflow, not the maths.
    valid = (_head_sums(gate_theirs, axis, heads) - 1).abs() < 1e-3
    assert valid.float().mean() > 0.9
    torch.testing.assert_close(y_ours[valid], y_theirs[valid], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gate_ours[valid], gate_theirs[valid], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("axes", [[1, 1, 1], [1, 0, 1]])
def test_block_matches_the_original_and_loads_its_state_dict(axes):
    torch.manual_seed(3)
    theirs = original.GaussianBlock(axes, [4, 2, 3], [5, 2, 3], 3)
    with torch.no_grad():
        for name, p in theirs.named_parameters():  # |c| >= 0.7 and small offsets: the product stays representable
            p.copy_(p.abs() + 0.7 if name.endswith(".c") else 0.1 * torch.randn(p.shape))
    ours = GaussianBlock(axes, [4, 2, 3], [5, 2, 3], 3)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(10, 128)
    y_theirs, details_theirs = theirs(x, True)
    y_ours, details_ours = ours(x, True)
    assert torch.isfinite(y_theirs).all()
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-4, atol=1e-6)
    assert details_ours.keys() == details_theirs.keys()
    for name in details_theirs:
        torch.testing.assert_close(details_ours[name], details_theirs[name], rtol=1e-4, atol=1e-7)


def test_density_package_has_the_same_maths_under_its_own_names():
    torch.manual_seed(0)
    gauss = gaussian_adaptive_attention.GaussianBlock([1, 1], [2, 4], [3, 3], 2)
    dense = density_adaptive_attention.DensityBlock([1, 1], [2, 4], [3, 3], 2)
    dense.load_state_dict(gauss.state_dict())
    x = torch.randn(4, 16)
    torch.testing.assert_close(dense(x), gauss(x))
    single = density_adaptive_attention.DensityAdaptiveAttention(norm_axis=1, num_heads=1, num_densities=3)
    assert single(x).shape == x.shape


def test_seed_readme_imports_and_example_run_unchanged():
    from density_adaptive_attention import DensityAdaptiveAttention, DensityBlock, MultiHeadDensityAdaptiveAttention  # noqa: F401
    from gaussian_adaptive_attention import GaussianAdaptiveAttention, MultiHeadGaussianAdaptiveAttention  # noqa: F401
    from gaussian_adaptive_attention.GaussianBlock import GaussianBlock as FromOldPath

    assert FromOldPath is GaussianBlock
    for block_class in (DensityBlock, GaussianBlock):
        block = block_class([1, 1, 1], [4, 4, 4], [5, 5, 5], 3, None, 1e-8)
        net = nn.Sequential(block, nn.Linear(128, 128))
        out = net(torch.rand(10, 128))
        out.sum().backward()
        assert out.shape == (10, 128) and torch.isfinite(out).all()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


# ---------------------------------------------------------------- the original's bugs, each shown fixed
def test_eps_from_the_multi_head_and_block_constructors_is_honoured():
    theirs = original.MultiHeadGaussianAdaptiveAttention(1, 2, 3, None, 0.5)
    assert theirs.attention_heads[0].eps == 1e-8  # the original: eps landed in mean_offset_init
    ours = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(1, 2, 3, None, 0.5)
    assert all(h.eps == 0.5 for h in ours.attention_heads)
    assert all(h.eps == 0.25 for layer in GaussianBlock([1], [2], [3], 1, None, 0.25).layers for h in layer.attention_heads)
    x = torch.tensor([[1.0, 1.001, 0.999, 1.0]])  # a tiny variance: eps decides the gate
    small = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(1, 2, 3, None, 1e-8)
    small.load_state_dict(ours.state_dict())
    assert not torch.allclose(ours(x)[:, :2], small(x)[:, :2])


def test_mean_offset_init_initialises_the_offsets():
    assert original.GaussianAdaptiveAttention(1, 1, 3, None, mean_offset_init=0.7).mean_offsets.eq(0).all()
    assert gaussian_adaptive_attention.GaussianAdaptiveAttention(1, 1, 3, None, mean_offset_init=0.7).mean_offsets.eq(0.7).all()


@pytest.mark.parametrize(
    "c,k,x,theirs_check,expected",
    [  # underflow: each factor is exp(-100), their product 0; overflow: each normaliser is ~399, 399**15 is inf
        (0.05, 5, [[1.0, 3.0]], lambda y: (y == 0).all(), [[0.5, 1.5]]),  # symmetric: half the attention each
        (1e-3, 15, [[1.0, 2.0, 3.0]], lambda y: y.isnan().any(), [[0.0, 2.0, 0.0]]),  # all of it on the mean
    ],
)
def test_no_underflow_or_overflow_where_the_original_gives_zero_or_nan(c, k, x, theirs_check, expected):
    x = torch.tensor(x)
    theirs = original.GaussianAdaptiveAttention(1, 1, k, None)
    with torch.no_grad():
        theirs.c.fill_(c)
    ours = gaussian_adaptive_attention.GaussianAdaptiveAttention(1, 1, k, None)
    ours.load_state_dict(theirs.state_dict())
    assert theirs_check(theirs(x))
    torch.testing.assert_close(ours(x), torch.tensor(expected))


@pytest.mark.parametrize("pad", [-1.0, float("nan"), float("inf"), 1e20])
def test_padding_is_left_out_of_the_statistics_and_passes_through(pad):
    torch.manual_seed(0)
    theirs = original.GaussianBlock([1], [2], [3], 1, padding_value=pad)
    ours = GaussianBlock([1], [2], [3], 1, padding_value=pad)
    ours.load_state_dict(theirs.state_dict())
    real = torch.randn(2, 6, 3)
    padded = torch.cat([real, torch.full((2, 2, 3), pad)], 1)  # the second head sees 4 real and 2 padded rows
    y = ours(padded)
    # The same real entries with no padding, as the heads saw them: rows 0-3 and 4-5 of 8, now 0-2 and 3-5 of 6,
    # so compare each head's part on its own.
    first = GaussianBlock([1], [1], [3], 1)
    first.layers[0].attention_heads[0].load_state_dict(ours.layers[0].attention_heads[0].state_dict())
    second = GaussianBlock([1], [1], [3], 1)
    second.layers[0].attention_heads[0].load_state_dict(ours.layers[0].attention_heads[1].state_dict())
    torch.testing.assert_close(y[:, :4], first(real[:, :4]))
    torch.testing.assert_close(y[:, 4:6], second(real[:, 4:6]))
    torch.testing.assert_close(y[:, 6:], padded[:, 6:], equal_nan=True)  # untouched: the original doubles it
    y_theirs = theirs(padded)
    if pad == -1.0:
        assert (y_theirs[:, 6:] == -2).all()
    elif pad != pad:  # NaN padding turns every entry of the original's head that holds it NaN
        assert y_theirs[:, 4:].isnan().all()


def test_explicit_mask_and_gradients():
    ours = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(1, 2, 3)
    x = torch.randn(3, 8, 2, requires_grad=True)
    mask = torch.ones(3, 8, 1, dtype=torch.bool)
    mask[:, 6:] = False
    y, gate = ours(x, True, mask=mask)
    assert (gate[:, 6:] == 0).all() and torch.equal(y[:, 6:], x[:, 6:])
    torch.testing.assert_close(gate[:, :4].sum(1), torch.ones(3, 2))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and all(h.c.grad is not None for h in ours.attention_heads)


def test_bad_input_gets_a_clear_message():
    m = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(1, 4, 2)
    with pytest.raises(ValueError, match="num_heads=4 exceeds the 3 entries"):
        m(torch.randn(2, 3))
    with pytest.raises(ValueError, match="norm_axis=5"):
        gaussian_adaptive_attention.GaussianAdaptiveAttention(5, 1, 2)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="num_layers=2"):
        GaussianBlock([1], [1], [1], 2)
