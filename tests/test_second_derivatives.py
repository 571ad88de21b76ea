"""Second derivatives (double backward) of every attention module class, against finite differences.

gradgradcheck differentiates the module's gradient once more, numerically and analytically, with respect to the
input and the density parameters together, so a backward that cuts the graph anywhere (as _Standardise's did,
recomputing z from a detached x) fails here. fused=True differentiates twice where it runs eager (float64) and
refuses a create_graph backward, with a message, where its compiled kernel runs."""

import pytest
import torch
from torch.func import functional_call

import daam
import density_adaptive_attention as original_density
import gaussian_adaptive_attention as original_gaussian
from daam.fused import DOUBLE_BACKWARD, cpu_kernel
from daam.pools import ScoredDensityAttention

from test_attention import randomise

MODES = ["mixture", "product"]

# (name, constructor given mode, input shape, what marks padding). Shapes are small: gradgradcheck perturbs every
# entry of the input and of each parameter.
OURS = [
    ("single", lambda mode: daam.DensityAdaptiveAttention(1, 1, 3, mode=mode), (2, 6, 3), None),
    ("multihead_even", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode), (2, 6, 3), None),
    ("multihead_uneven", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 3, 2, mode=mode), (2, 8, 2), None),
    ("multihead_2d", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode), (3, 10), None),
    ("multihead_mask", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode), (2, 6, 3), "mask"),
    ("multihead_padding_value", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 2, 2, padding_value=0.0, mode=mode),
     (2, 7, 3), "padding"),
    ("multihead_head_axis", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 2, 2, mode=mode, head_axis=2),
     (2, 5, 4), None),
    ("multihead_head_axis_mask", lambda mode: daam.MultiHeadDensityAdaptiveAttention(1, 2, 2, mode=mode, head_axis=2),
     (2, 5, 4), "mask"),
    ("scored", lambda mode: ScoredDensityAttention(3, 2, 2, mode=mode), (2, 5, 3), "mask"),
    ("block", lambda mode: daam.DensityBlock([1, 2], [2, 1], [2, 3], 2, mode=mode), (2, 6, 3), None),
    ("block_padding_value", lambda mode: daam.DensityBlock([1, 2], [2, 1], [2, 2], 2, padding_value=0.0, mode=mode),
     (2, 6, 3), "padding"),
    ("gaussian_single", lambda mode: daam.GaussianAdaptiveAttention(1, 1, 3, mode=mode), (2, 6, 3), None),
    ("gaussian_multihead", lambda mode: daam.MultiHeadGaussianAdaptiveAttention(1, 2, 3, mode=mode, head_axis=2),
     (2, 5, 4), "mask"),
    ("gaussian_block", lambda mode: daam.GaussianBlock([1, 2], [2, 1], [2, 2], 2, mode=mode), (2, 6, 3), None),
]

def _drop_in_cases(package: str, single, multihead, block) -> list:
    """The original release's three classes, as one drop-in package names them."""
    return [(f"{package}.{name}", build, shape, padding) for name, build, shape, padding in [
        ("single", lambda: single(1, 1, 3), (2, 6, 3), None),
        ("multihead_mask", lambda: multihead(1, 2, 3), (2, 7, 3), "mask"),
        ("multihead_padding_value", lambda: multihead(1, 2, 2, padding_value=0.0), (2, 7, 3), "padding"),
        ("block", lambda: block([1, 2], [2, 1], [2, 2], 2), (2, 6, 3), None),
    ]]


DROP_INS = (
    _drop_in_cases("density_adaptive_attention", original_density.DensityAdaptiveAttention,
                   original_density.MultiHeadDensityAdaptiveAttention, original_density.DensityBlock)
    + _drop_in_cases("gaussian_adaptive_attention", original_gaussian.GaussianAdaptiveAttention,
                     original_gaussian.MultiHeadGaussianAdaptiveAttention, original_gaussian.GaussianBlock)
)


def _check_twice_differentiable(module, shape, padding):
    """gradgradcheck of the module's output in its input and every parameter at once.

    padding: None; "mask", the last two positions of the first item masked out; or "padding", the last two
    positions of every item equal to padding_value 0.0. Those stay fixed, outside what gradcheck perturbs: a
    perturbed padding entry would stop being padding."""
    torch.manual_seed(0)
    module = randomise(module).double()
    x = torch.randn(*shape, dtype=torch.float64)
    mask = None
    if padding == "mask":
        mask = torch.ones(shape[0], shape[1], *[1] * (len(shape) - 2), dtype=torch.bool)
        mask[0, -2:] = False
    if padding == "padding":
        x = x[:, :-2]
    pad = torch.zeros(shape[0], 2, *shape[2:], dtype=torch.float64)
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def output(x, *values):
        kwargs = {} if mask is None else {"mask": mask}
        full = torch.cat([x, pad], 1) if padding == "padding" else x
        return functional_call(module, dict(zip(names, values)), (full,), kwargs)

    inputs = (x.requires_grad_(), *params)
    assert torch.autograd.gradcheck(output, inputs)
    assert torch.autograd.gradgradcheck(output, inputs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,build,shape,padding", OURS, ids=[case[0] for case in OURS])
def test_our_modules_have_exact_second_derivatives(name, build, shape, padding, mode):
    _check_twice_differentiable(build(mode), shape, padding)


@pytest.mark.parametrize("name,build,shape,padding", DROP_INS, ids=[case[0] for case in DROP_INS])
def test_drop_in_modules_have_exact_second_derivatives(name, build, shape, padding):
    _check_twice_differentiable(build(), shape, padding)


def test_the_issue_example_passes_gradgradcheck():
    """The report: the gradient of the gradient was cut at the standardisation, in both modes."""
    for mode in MODES:
        m = daam.MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode).double()
        x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(lambda t: m(t), (x,))


def test_a_gradient_penalty_reaches_the_input_through_the_standardisation():
    """d/dx of ||dy/dx||^2 is non-zero and matches finite differences of the first derivative."""
    torch.manual_seed(1)
    m = randomise(daam.MultiHeadDensityAdaptiveAttention(1, 2, 3)).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)

    def penalty(x):
        (grad,) = torch.autograd.grad(m(x).sum(), x, create_graph=True)
        return grad.square().sum()

    (analytic,) = torch.autograd.grad(penalty(x), x)
    direction = torch.randn_like(x)
    step = 1e-6
    numeric = (penalty(x + step * direction) - penalty(x - step * direction)) / (2 * step)
    assert analytic.abs().sum() > 0
    torch.testing.assert_close((analytic * direction).sum(), numeric.detach(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mode", MODES)
def test_fused_differentiates_twice_where_it_runs_eager(mode):
    """float64 runs the eager path under fused=True (the kernel is float32): exact second derivatives."""
    m = randomise(daam.MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode, fused=True)).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: m(t), (x,))


@pytest.mark.skipif(cpu_kernel() is None, reason="no C compiler here: fused=True runs eager")
@pytest.mark.parametrize("build", [
    lambda: daam.MultiHeadDensityAdaptiveAttention(1, 2, 3, fused=True),
    lambda: daam.DensityBlock([1, 2], [2, 1], [2, 3], 2, fused=True),
], ids=["multihead", "block"])
def test_fused_kernel_refuses_a_create_graph_backward_with_a_clear_message(build):
    m = build()
    x = torch.randn(2, 6, 3, requires_grad=True)
    (plain,) = torch.autograd.grad(m(x).square().sum(), x)  # first order still runs through the kernel
    assert torch.isfinite(plain).all()
    with pytest.raises(RuntimeError, match="fused=False"):
        torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
    assert "create_graph=True" in DOUBLE_BACKWARD


@pytest.mark.slow
def test_drop_in_fused_refuses_double_backward_rather_than_answer_wrong():
    """The drop-ins' fused=True is torch.compile, whose backward torch itself will not differentiate again."""
    m = original_density.MultiHeadDensityAdaptiveAttention(1, 2, 3, fused=True)
    x = torch.randn(2, 16, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(grad.square().sum(), x)
