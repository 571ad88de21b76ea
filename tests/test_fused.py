"""fused=True: the compiled kernel of daam/fused.py gives the eager path's values and gradients."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gaussian_adaptive_attention
from daam import DensityBlock, GaussianBlock, MultiHeadDensityAdaptiveAttention
from daam.fused import cpu_kernel

from test_attention import randomise

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(cpu_kernel() is None, reason="no C compiler here: fused=True runs eager (tested below)")


def _pair(mode, norm_axis, heads, head_axis=None, padding_value=None, densities=3):
    eager = randomise(MultiHeadDensityAdaptiveAttention(norm_axis, heads, densities, padding_value, mode=mode,
                                                        head_axis=head_axis))
    fast = MultiHeadDensityAdaptiveAttention(norm_axis, heads, densities, padding_value, mode=mode,
                                             head_axis=head_axis, fused=True)
    fast.load_state_dict(eager.state_dict())
    return eager, fast


def _values_and_gradients(module, x, mask=None):
    x = x.clone().requires_grad_()
    y, inter = module(x, mask=mask, return_intermediates=True)
    grad_y = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    params = [p for p in module.parameters()]
    grads = torch.autograd.grad(y, [x, *params], grad_y, allow_unused=True)
    return y, inter.gate, inter.z, grads


@needs_kernel
@pytest.mark.parametrize("mode", ["mixture", "product"])
@pytest.mark.parametrize(
    "shape,norm_axis,heads,head_axis",
    [
        ((3, 12, 5), 1, 4, None),  # heads are even chunks of the normalisation axis
        ((3, 14, 5), 1, 4, None),  # uneven: the last takes the remainder
        ((2, 7, 9), -1, 2, None),
        ((4, 10, 6), 1, 3, 2),  # heads along the columns after the normalisation axis
        ((4, 10, 6), 2, 2, 0),  # heads along the rows before it
        ((5, 8), 0, 3, 1),
        ((2, 40, 1500), 1, 4, None),  # more than one block of columns
    ],
)
def test_fused_matches_eager_values_and_gradients(mode, shape, norm_axis, heads, head_axis):
    torch.manual_seed(0)
    eager, fast = _pair(mode, norm_axis, heads, head_axis)
    x = torch.randn(*shape) * 3 + 1
    expected, got = _values_and_gradients(eager, x), _values_and_gradients(fast, x)
    for e, g in zip(expected[:3], got[:3]):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    for e, g in zip(expected[3], got[3]):
        if e is None:  # product mode leaves the mixture weights unused
            assert g is None or not g.abs().any()
        else:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


@needs_kernel
def test_fused_gradients_through_the_gate_and_z_are_the_eager_ones():
    # A pool that weighs positions by their gate differentiates through it, not through y: the kernel's backward
    # carries y's gradient alone, so such a call must run eager rather than lose that gradient.
    torch.manual_seed(2)
    eager, fast = _pair("mixture", 1, 4, head_axis=2)
    x = torch.randn(3, 9, 8) * 2
    grads = []
    for module in (eager, fast):
        xg = x.clone().requires_grad_()
        _, inter = module(xg, return_intermediates=True)
        grads.append(torch.autograd.grad((inter.gate * inter.z.cos()).sum(), xg)[0])
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])


@needs_kernel
@pytest.mark.parametrize("pad", [0.0, float("nan"), float("inf")])
def test_fused_leaves_padding_out_and_untouched(pad):
    torch.manual_seed(1)
    eager, fast = _pair("mixture", 1, 2, head_axis=2)
    x = torch.randn(3, 9, 4)
    mask = torch.ones(3, 9, 1, dtype=torch.bool)
    mask[0, 6:] = False
    mask[2, 3:] = False
    x = x.masked_fill(~mask, pad)
    y_eager, y_fast = eager(x, mask=mask), fast(x, mask=mask)
    torch.testing.assert_close(y_fast, y_eager, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert torch.isfinite(y_fast[mask.expand_as(x)]).all()
    x = x.requires_grad_()
    fast(x, mask=mask).sum().backward()
    assert torch.isfinite(x.grad).all()


@needs_kernel
def test_fused_block_float16_and_no_grad():
    torch.manual_seed(2)
    eager = randomise(DensityBlock([1, 2], [2, 3], [3, 2], 2))
    fast = GaussianBlock([1, 2], [2, 3], [3, 2], 2, fused=True)
    fast.load_state_dict(eager.state_dict())
    x = torch.randn(4, 6, 9)
    torch.testing.assert_close(fast(x), eager(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        half = fast(x.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), eager(x.half()).float(), rtol=2e-3, atol=2e-3)
    assert all(layer.fused for layer in fast.layers)


def test_fused_float64_runs_the_eager_path_exactly():
    eager, fast = _pair("mixture", 1, 2)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(fast.double()(x), eager.double()(x), rtol=0, atol=0)


@needs_kernel
def test_fused_training_step_moves_the_densities():
    torch.manual_seed(3)
    layer = MultiHeadDensityAdaptiveAttention(1, 2, 3, fused=True)
    head = torch.nn.Linear(8, 2)
    optimiser = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.05)
    x, labels = torch.randn(16, 10, 8), torch.randint(0, 2, (16,))
    before = {name: p.detach().clone() for name, p in layer.named_parameters()}
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(head(layer(x).mean(1)), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(not torch.equal(before[name], p) for name, p in layer.named_parameters())


def test_without_a_compiler_fused_warns_once_and_runs_eager(tmp_path):
    code = (
        "import warnings, torch\n"
        "from daam import MultiHeadDensityAdaptiveAttention as M\n"
        "eager, fast = M(1, 2, 3), M(1, 2, 3, fused=True)\n"
        "fast.load_state_dict(eager.state_dict())\n"
        "x = torch.randn(2, 6, 4)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    same = all(torch.equal(fast(x), eager(x)) for _ in range(3))\n"
        "print(same, len([w for w in caught if 'fused=True runs the eager path' in str(w.message)]))\n"
    )
    env = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "DAAM_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "1"]


@pytest.mark.slow
def test_original_drop_in_fused_matches_its_eager_path():
    torch.manual_seed(4)
    eager = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(1, 2, 3)
    fast = gaussian_adaptive_attention.MultiHeadGaussianAdaptiveAttention(1, 2, 3, fused=True)
    fast.load_state_dict(eager.state_dict())
    x = torch.randn(2, 8, 5, requires_grad=True)
    torch.testing.assert_close(fast(x), eager(x), rtol=1e-5, atol=1e-6)
    fast(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@needs_kernel
def test_checkpoints_load_fused_on_the_cpu_with_the_eager_explanations():
    from daam import load_pretrained
    from daam.examples import example_inputs

    model = load_pretrained(ROOT / "checkpoints" / "image")  # its relevance differentiates through the pool's gates
    assert all(stage.fused for stage in model.density_stages().values())
    pictures = example_inputs("image")[:2]
    fused = model.explain_batch(pictures)
    model.use_fused_kernel(False)
    for got, expected in zip(fused, model.explain_batch(pictures)):
        np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-6)
        np.testing.assert_allclose(got.position_weights, expected.position_weights, atol=1e-6)
        np.testing.assert_allclose(got.position_relevance, expected.position_relevance, rtol=1e-4,
                                   atol=1e-5 * np.abs(expected.position_relevance).max())
