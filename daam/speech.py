"""Is there speech in a clip at all? A linear probe on Whisper's encoder, so a tone or music is not named a letter.

The probe reads the mean and the spread over time of the encoder's last hidden state (768 numbers) and says how
likely the clip holds speech. It is fitted on synthetic speech (letters by espeak-ng and flite training voices,
augmented as for the letter classifier) against synthetic sounds that are not speech (tones, chords, chirps,
coloured noise, beeps, clicks, hum, melodies of a harmonic instrument), by `python -m daam.fit_speech_probe`,
which also validates and tests it."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

PROBE_PATH = Path(__file__).with_name("speech_probe.safetensors")
SAMPLE_RATE = 16_000


def clip_summary(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, layers, frames, dim) hidden states -> (batch, 2 * dim): the last layer's mean and standard
    deviation over each clip's real frames."""
    last, real = hidden[:, -1].float(), mask[:, :, None].float()  # (batch, frames, dim), (batch, frames, 1)
    count = real.sum(1).clamp(min=1)
    mean = (last * real).sum(1) / count
    spread = (((last - mean[:, None]) ** 2 * real).sum(1) / count).sqrt()
    return torch.cat([mean, spread], dim=-1)


class SpeechProbe(nn.Module):
    """Logistic regression on clip_summary: the probability that a clip holds speech."""

    def __init__(self, features: int = 768) -> None:
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.register_buffer("centre", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, layers, frames, dim) hidden states and their mask -> (batch,) speech probabilities."""
        return self.probability(clip_summary(hidden, mask))

    def logit(self, summary: torch.Tensor) -> torch.Tensor:
        return self.linear((summary - self.centre) / self.scale)[:, 0]

    def probability(self, summary: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(summary))

    @classmethod
    def load(cls, path: Path = PROBE_PATH) -> "SpeechProbe | None":
        """The shipped probe, or None where it has not been fitted."""
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        state = load_file(str(path))
        probe = cls(state["centre"].numel())
        probe.load_state_dict(state)
        return probe.eval().requires_grad_(False)


def fit(summaries: torch.Tensor, labels: torch.Tensor, weight_decay: float = 1e-3) -> SpeechProbe:
    """A logistic regression on standardised summaries, by L-BFGS (a convex problem: no seeds, no epochs)."""
    probe = SpeechProbe(summaries.shape[1])
    probe.centre.copy_(summaries.mean(0))
    probe.scale.copy_(summaries.std(0).clamp(min=1e-6))
    optimiser = torch.optim.LBFGS(probe.linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        value = nn.functional.binary_cross_entropy_with_logits(probe.logit(summaries), labels.float())
        value = value + weight_decay * probe.linear.weight.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    return probe.eval().requires_grad_(False)
