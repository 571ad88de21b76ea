"""DAAMClassifier: DAAM over a frozen encoder's layers and positions, then a linear head.

    encoder features -> adapter (daam.adapters; identity for text)
    hidden (batch, layers, positions, dim)
      -> DAAM over the layer axis, heads over channel groups   # its mean gate = Importance Factor
      -> softmax-weighted sum over layers                        (batch, positions, dim)
      -> DAAM over positions, mask-aware, heads over channel groups
      -> masked mean over positions -> LayerNorm -> Linear       (batch, classes)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .adapters import build_adapter
from .attention import MultiHeadDensityAdaptiveAttention, head_index
from .encoders import Encoded, build_encoder
from .explanation import Explanation

Z_VALUES_PER_HEAD = 1000  # enough for a histogram, small enough for a JSON answer
CURVE_Z_RANGE, CURVE_POINTS = 4.0, 161  # z-grid the density curves are drawn on


@dataclass
class DAAMConfig:
    modality: str
    labels: list[str]
    num_layers: int  # hidden states the encoder gives (embeddings included)
    dim: int
    layer_heads: int = 4
    layer_densities: int = 3
    position_heads: int = 4
    position_densities: int = 3
    mode: str = "mixture"
    dropout: float = 0.1
    encoder: dict = field(default_factory=dict)  # {"name": ..., "kwargs": {...}} to rebuild the encoder
    layer_names: list[str] = field(default_factory=list)
    preprocessing: dict = field(default_factory=dict)
    adapter: dict = field(default_factory=dict)  # {"name": ..., "kwargs": {...}}; empty = identity


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of x over `dim` where mask (broadcastable to x) is True."""
    weight = mask.to(x.dtype)
    return (x * weight).sum(dim) / weight.sum(dim).clamp(min=1)


class DAAMClassifier(nn.Module):
    def __init__(self, config: DAAMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.adapter = build_adapter(c.adapter)  # trainable, saved with the DAAM weights
        # Statistics across layers for each (position, channel); heads own groups of channels.
        self.layer_attention = MultiHeadDensityAdaptiveAttention(1, c.layer_heads, c.layer_densities, mode=c.mode, head_axis=3)
        self.layer_logits = nn.Parameter(torch.zeros(c.num_layers))
        # Statistics across positions for each channel; heads own groups of channels.
        self.position_attention = MultiHeadDensityAdaptiveAttention(1, c.position_heads, c.position_densities, mode=c.mode, head_axis=2)
        self.norm = nn.LayerNorm(c.dim)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.dim, len(c.labels))
        self._encoder = None  # frozen, rebuilt from config.encoder, never saved with the weights

    # ------------------------------------------------------------------ model
    def forward(self, features: torch.Tensor, mask: torch.Tensor, return_details: bool = False):
        """Encoder features, mask (batch, positions) -> logits (batch, classes)."""
        hidden = self.adapter(features, mask)  # (batch, layers, positions, dim)
        if hidden.dim() != 4 or hidden.shape[1] != self.config.num_layers or hidden.shape[3] != self.config.dim:
            raise ValueError(f"hidden must be (batch, {self.config.num_layers}, positions, {self.config.dim}), got {tuple(hidden.shape)}")
        real = mask[:, None, :, None]  # (batch, 1, positions, 1)
        gated, layer_gate = self.layer_attention(hidden, mask=real, return_weights=True)
        mixed = torch.einsum("blpd,l->bpd", gated, self.layer_logits.softmax(0))  # (batch, positions, dim)
        gated, position_gate = self.position_attention(mixed, mask=mask[:, :, None], return_weights=True)
        pooled = masked_mean(gated, mask[:, :, None], dim=1)  # (batch, dim)
        logits = self.head(self.dropout(self.norm(pooled)))
        if not return_details:
            return logits
        return logits, {"hidden": hidden, "mixed": mixed, "layer_gate": layer_gate, "position_gate": position_gate}

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def encoder(self) -> nn.Module:
        if self._encoder is None:
            enc = self.config.encoder
            self.__dict__["_encoder"] = build_encoder(self.config.modality, **enc.get("kwargs", {})).to(self.device)
        return self._encoder

    def set_encoder(self, encoder: nn.Module) -> None:
        """Use an already built encoder (kept out of the module tree so it is never saved)."""
        self.__dict__["_encoder"] = encoder

    # ------------------------------------------------------------------ explanations
    @torch.inference_mode()
    def explain_batch(self, inputs: list) -> list[Explanation]:
        """One Explanation per raw input (strings for text). Plain Python/numpy, no tensors."""
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError("explain_batch needs a non-empty list of inputs")
        self.eval()
        start = time.perf_counter()
        encoded: Encoded = self.encoder(list(inputs))
        encoder_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        features, mask = encoded.features.to(self.device).float(), encoded.mask.to(self.device)
        logits, d = self.forward(features, mask, return_details=True)
        hidden = d["hidden"]
        probs = logits.softmax(-1).cpu().numpy()
        position_weights = self._head_means(d["position_gate"], self.position_attention, channel_axis=2)  # (b, heads, positions)
        layer_importance = masked_mean(d["layer_gate"], mask[:, None, :, None], dim=2)  # (b, layers, dim)
        z_layers = self.layer_attention.z_scores(hidden, mask=mask[:, None, :, None])
        z_positions = self.position_attention.z_scores(d["mixed"], mask=mask[:, :, None])
        daam_ms = (time.perf_counter() - start) * 1e3

        labels = self.config.labels
        density = {"layers": _density_summary(self.layer_attention), "positions": _density_summary(self.position_attention)}
        explanations = []
        for i in range(len(inputs)):
            n = int(mask[i].sum())
            explanations.append(Explanation(
                modality=self.config.modality,
                labels=list(labels),
                probabilities=[float(p) for p in probs[i]],
                predicted_label=labels[int(probs[i].argmax())],
                position_labels=list(encoded.position_labels[i]),
                position_weights=position_weights[i, :, :n].cpu().numpy(),
                layer_importance=layer_importance[i].cpu().numpy(),
                layer_names=list(self.config.layer_names),
                density=density,
                z_values={
                    "layers": self._z_per_head(z_layers[i, :, :n], self.layer_attention, channel_axis=2),
                    "positions": self._z_per_head(z_positions[i, :n], self.position_attention, channel_axis=1),
                },
                truncated=bool(encoded.truncated[i]),
                timings={"encoder_ms": encoder_ms / len(inputs), "daam_ms": daam_ms / len(inputs)},
                extras=encoded.extras[i] if encoded.extras else {},
            ))
        return explanations

    def explain(self, x) -> Explanation:
        return self.explain_batch([x])[0]

    @staticmethod
    def _head_means(gate: torch.Tensor, attention: MultiHeadDensityAdaptiveAttention, channel_axis: int) -> torch.Tensor:
        """A head's weight at a position = the mean gate over that head's channels: (..., heads, positions)."""
        heads = head_index(gate.shape[channel_axis], attention.num_heads, gate.device)
        onehot = nn.functional.one_hot(heads, attention.num_heads).to(gate.dtype)  # (channels, heads)
        sums = gate.movedim(channel_axis, -1) @ onehot  # (..., positions, heads)
        return (sums / onehot.sum(0)).transpose(-1, -2)

    @staticmethod
    def _z_per_head(z: torch.Tensor, attention: MultiHeadDensityAdaptiveAttention, channel_axis: int) -> list[np.ndarray]:
        """Each head's z-values over this input's real entries, evenly subsampled to a fixed budget."""
        heads = head_index(z.shape[channel_axis], attention.num_heads, z.device)
        out = []
        for h in range(attention.num_heads):  # ragged per-head output: a loop over a handful of heads is clearest
            values = z.index_select(channel_axis, (heads == h).nonzero().flatten()).flatten()
            step = max(1, values.numel() // Z_VALUES_PER_HEAD)
            out.append(values[::step][:Z_VALUES_PER_HEAD].cpu().numpy())
        return out

    # ------------------------------------------------------------------ checkpoint I/O
    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        (directory / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, device: str | torch.device = "cpu") -> "DAAMClassifier":
        from .hub import resolve_checkpoint

        from safetensors.torch import load_file

        directory = resolve_checkpoint(path_or_repo_id)
        config = DAAMConfig(**json.loads((directory / "config.json").read_text()))
        model = cls(config)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        return model.to(device).eval()


def _density_summary(attention: MultiHeadDensityAdaptiveAttention) -> dict:
    """Parameters plus every head's gate and components on a fixed z-grid, as numpy, for the view."""
    params = attention.density_parameters()
    params["grid"] = torch.linspace(-CURVE_Z_RANGE, CURVE_Z_RANGE, CURVE_POINTS)
    params["curve"], params["components"] = attention.density_curve(params["grid"], components=True)
    return _plain(params)


def _plain(params: dict) -> dict:
    return {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in params.items()}
