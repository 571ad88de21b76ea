"""DAAMClassifier: a pool over a frozen encoder's layers and positions, then a linear head; DAAM is its pool.

    encoder features -> adapter (daam.adapters; identity for text)
    hidden (batch, layers, positions, dim)
      -> pool (daam.pools, named by config.pool): DAAM over layers and positions ("daam"), or one of the
         mechanisms it is compared with                                                        (batch, dim)
      -> LayerNorm -> dropout -> Linear                                                         (batch, classes)

Explanations, relevance and density curves read the DAAM pool's stages.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn
from huggingface_hub import PyTorchModelHubMixin

from . import fused
from .adapters import build_adapter
from .attention import Intermediates, MultiHeadDensityAdaptiveAttention, head_index
from .encoders import Encoded
from .explanation import Z_EDGES, Z_RANGE, DensityStage, Explanation
from .hub import resolve_checkpoint
from .ood import OODDetector, views_of
from .modalities import modality, resolve
from .pools import BASELINES, DensityPool, ScoredDensityAttention, build_pool, masked_mean
from .relevance import RelevanceMethod, build_relevance_method

CURVE_POINTS = 161  # the z-grid the density curves are drawn on, over explanation.Z_RANGE
TOP_LEVEL_MODULES = ("adapter", "pool", "norm", "dropout", "head")  # checkpoints saved before daam.pools keep the
# pool's parameters at the top level (layer_attention.*, position_attention.*, layer_logits; a mechanism's pooling.*)


@dataclass
class DAAMConfig:
    modality: str
    labels: list[str]
    num_layers: int  # hidden states the adapter gives (for text: the encoder's, embeddings included)
    dim: int
    layer_heads: int = 4
    layer_densities: int = 3
    position_heads: int = 4
    position_densities: int = 3
    mode: str = "mixture"
    dropout: float = 0.1
    encoder: dict = field(default_factory=dict)  # {"name", "kwargs"[, "class": "module:Class"]} to rebuild the
    # encoder: the modality's encoder class unless "class" names another
    layer_names: list[str] = field(default_factory=list)
    preprocessing: dict = field(default_factory=dict)
    adapter: dict = field(default_factory=dict)  # {"name": ..., "kwargs": {...}}; empty = identity
    layer_mechanism: str = "daam"  # what weights each of the daam pool's stages: a name in daam.pools.STAGES
    position_mechanism: str = "daam"
    offset_spread: float = 0.0  # initial offsets of the position stage's heads: evenly from -spread to +spread (0:
    # all at 0). A learned score's sign is arbitrary, so densities that start on both tails can each take one side.
    pooling: str = "mean"  # "mean": the mean of the gated positions; "gate": the gates, normalised over positions
    # per channel, are the pooling weights of the ungated values (what a position lets through is its share)
    pool: str = "daam"  # a name in daam.pools.POOLS: DAAM, or a mechanism in its place
    layers: str = "mix"  # a mechanism's layers: "mix" (a learned softmax mix) or "last" (the last layer alone)

    def with_pool(self, pool: str, **changes) -> "DAAMConfig":
        """This configuration with `pool` in DAAM's place: same encoder, adapter, labels and head."""
        return replace(self, pool=pool, **changes)

    def baseline(self, name: str) -> "DAAMConfig":
        """A training run's baseline (a name in daam.pools.BASELINES): its mechanism over the last layer, no dropout."""
        return self.with_pool(BASELINES[name], layers="last", dropout=0.0)


def full_float32():
    """A context in which cuDNN convolutions compute in float32, not TF32 (its default on GPUs that have it), every
    other cuDNN setting kept. An explanation must not depend on the device: relevance through a convolutional encoder
    is a gradient, and TF32's 10-bit mantissa moves it by several percent of its scale (tests/test_cuda.py)."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                       allow_tf32=False)


@dataclass
class ClassifierIntermediates:
    """What DAAMClassifier.forward computed on the way to its logits (return_intermediates=True)."""

    hidden: torch.Tensor  # (batch, layers, positions, dim): the adapter's output
    mixed: torch.Tensor  # (batch, positions, dim): the states the pool weighted (for DAAM: gated layers, mixed)
    pooled: torch.Tensor  # (batch, dim): mixed, pooled over the real positions
    layers: Intermediates | None  # the DAAM pool's layer stage: z and gate, shaped like hidden
    positions: Intermediates | None  # its position stage: shaped like mixed, or (batch, positions, heads)


class DAAMClassifier(nn.Module, PyTorchModelHubMixin, library_name="daam-lens", license="apache-2.0",
                     paper_url="https://arxiv.org/abs/2401.11143",
                     tags=["density-adaptive-attention", "interpretability"]):
    """A Hub model (huggingface_hub's PyTorchModelHubMixin: save_pretrained, push_to_hub), read back by its own
    from_pretrained, which takes safetensors only and loads strictly."""

    def __init__(self, config: DAAMConfig) -> None:
        super().__init__()
        self.config = config
        self.adapter = build_adapter(config.adapter)  # trainable, saved with the DAAM weights
        self.pool = build_pool(config)
        self.norm = nn.LayerNorm(config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.dim, len(config.labels))
        self._encoder = None  # frozen, rebuilt from config.encoder, never saved with the weights
        self._densities: tuple | None = None  # (parameter versions, {stage: DensityStage}): see densities()
        self.ood: OODDetector | None = None  # daam.ood: how unlike the training data an input is (None: not fitted)
        self.register_load_state_dict_pre_hook(_pool_keys_from_before_pools)

    # ------------------------------------------------------------------ model
    def forward(self, features: torch.Tensor, mask: torch.Tensor, *, return_intermediates: bool = False,
                return_weights: bool = False, layer_details: bool = True):
        """Encoder features, mask (batch, positions) -> logits (batch, classes) [, ClassifierIntermediates]
        [, weights (batch, positions)]: how much weight the pool gave each position, summing to 1 over the real
        positions (for DAAM: each position's mean raw gate over the position stage's channels, normalised).
        layer_details=False (a DAAM pool only): the intermediates' layers are None (DensityPool.forward)."""
        hidden = self.adapter(features, mask)  # (batch, layers, positions, dim)
        if hidden.dim() != 4 or hidden.shape[1] != self.config.num_layers or hidden.shape[3] != self.config.dim:
            raise ValueError(f"hidden must be (batch, {self.config.num_layers}, positions, {self.config.dim}), got {tuple(hidden.shape)}")
        pooled = self.pool(hidden, mask) if layer_details else self.density_pool(hidden, mask, layer_details=False)
        logits = self.head(self.dropout(self.norm(pooled.pooled)))
        out = (logits,)
        if return_intermediates:
            out += (ClassifierIntermediates(hidden, pooled.mixed, pooled.pooled, pooled.layers, pooled.positions),)
        if return_weights:
            out += (pooled.weights,)
        return out if len(out) > 1 else logits

    @property
    def density_pool(self) -> DensityPool:
        """The DAAM pool, whose stages explanations, relevance and density curves read."""
        if not isinstance(self.pool, DensityPool):
            raise ValueError(f"this classifier pools with {self.config.pool!r}: explanations need the 'daam' pool")
        return self.pool

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def encoder(self) -> nn.Module:
        if self._encoder is None:
            spec = self.config.encoder  # its own class (a user's Hugging Face model), or the modality's
            encoder_class = resolve(spec["class"]) if "class" in spec else modality(self.config.modality).resolve("encoder")
            self.set_encoder(encoder_class(**self.config.encoder.get("kwargs", {})).to(self.device))
        return self._encoder

    def set_encoder(self, encoder: nn.Module) -> None:
        """Use an already built encoder (kept out of the module tree so it is never saved). The modality's relevance
        method must find in it what it calls (daam.relevance), or this raises a ValueError."""
        self.relevance_method.check(encoder)
        self.__dict__["_encoder"] = encoder

    @property
    def relevance_method(self) -> RelevanceMethod:
        """How explanations credit positions and heads: the modality's named method (daam.relevance)."""
        return build_relevance_method(modality(self.config.modality).relevance)

    def density_stages(self) -> dict[str, MultiHeadDensityAdaptiveAttention]:
        """The stages whose mechanism is a density attention, by name ("positions", "layers")."""
        pool = self.density_pool
        stages = {"positions": pool.position_attention, "layers": pool.layer_attention}
        return {name: module for name, module in stages.items() if isinstance(module, MultiHeadDensityAdaptiveAttention)}

    def use_fused_kernel(self, enabled: bool) -> None:
        """Run every density stage through daam/fused.py (fused=True: one kernel for statistics, gate and product;
        the same values to float32 rounding) or through the eager ops. On a CUDA device fused=True means
        torch.compile, which compiles per input shape: from_pretrained turns it on for the CPU alone."""
        for module in self.modules():
            if isinstance(module, MultiHeadDensityAdaptiveAttention):
                module.fused = enabled

    def densities(self) -> dict[str, DensityStage]:
        """Each density stage's parameters and curves. They depend on the weights alone, so they are computed
        once, and again only after a parameter changes (an in-place update such as a training step or loading
        weights bumps its version; moving it to another device gives it new storage)."""
        stages = self.density_stages()
        versions = tuple((p.data_ptr(), p._version) for module in stages.values() for p in module.parameters())
        if self._densities is None or self._densities[0] != versions:
            self._densities = (versions, {name: density_stage(module) for name, module in stages.items()})
        return self._densities[1]

    # ------------------------------------------------------------------ explanations
    def explain_batch(self, inputs: list, *, layer_details: bool = True) -> list[Explanation]:
        """One Explanation per raw input (strings for text). Plain Python/numpy, no tensors.

        layer_details=False leaves out what only the layer stage's z-values and gates give: layer_importance is empty,
        (0, dim), and z_counts has no "layers". Everything else is the same; what daam.explain_dataset's rows keep
        needs neither, and keeping them is most of DAAM's own time on text (benchmarks/bench_scale.py)."""
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError("explain_batch needs a non-empty list of inputs")
        with full_float32():
            return self._explain_batch(inputs, layer_details)

    @torch.no_grad()  # not inference_mode: an encoder built lazily here must stay usable by autograd
    def _explain_batch(self, inputs: list, layer_details: bool = True) -> list[Explanation]:
        self.eval()
        method = self.relevance_method
        start = time.perf_counter()
        encoded: Encoded = method.encode(self, list(inputs))
        encoder_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        # detached: a graph the encoder kept is the relevance method's (it reads encoded.features itself)
        features, mask = encoded.features.detach().to(self.device).float(), encoded.mask.to(self.device)
        logits, inter = self.forward(features, mask, return_intermediates=True, layer_details=layer_details)
        probs = logits.softmax(-1).cpu().numpy()
        ood = None if self.ood is None else self.ood(views_of(self, inter, features, mask)).cpu().numpy()  # (b,)
        pool = self.density_pool
        position_weights = self._head_means(inter.positions.gate, pool.position_attention, channel_axis=2)  # (b, heads, positions)
        relevance = method(self, encoded, logits, inter, mask)  # (b, heads, positions), (b, positions)
        layer_importance = (masked_mean(inter.layers.gate, mask[:, None, :, None], dim=2) if layer_details
                            else features.new_empty(len(inputs), 0, self.config.dim))  # (b, layers, dim)
        density = self.densities()
        daam_ms = (time.perf_counter() - start) * 1e3

        labels = self.config.labels
        # To numpy once per batch: per item, what follows slices arrays rather than calling torch.
        lengths = mask.sum(1).tolist()
        weights_np, importance = position_weights.cpu().numpy(), layer_importance.cpu().numpy()
        positions_np, heads_np = relevance.positions.cpu().numpy(), relevance.heads.cpu().numpy()
        stages = {"layers": (inter.layers, pool.layer_attention, mask[:, None, :, None]),
                  "positions": (inter.positions, pool.position_attention, mask[:, :, None])}
        z_counts = {name: self._z_counts(stage.z, real, module.num_heads).cpu().numpy()
                    for name, (stage, module, real) in stages.items()
                    if name in density and stage is not None}  # (b, heads, bins) each
        explanations = []
        for i, n in enumerate(lengths):
            explanations.append(Explanation(
                modality=self.config.modality,
                labels=list(labels),
                probabilities=[float(p) for p in probs[i]],
                predicted_label=labels[int(probs[i].argmax())],
                position_labels=list(encoded.position_labels[i]),
                position_weights=weights_np[i, :, :n].copy(),
                position_relevance=positions_np[i, :n].copy(),
                head_relevance=heads_np[i, :, :n].copy(),
                layer_importance=importance[i].copy(),
                layer_names=list(self.config.layer_names),
                density=density,
                z_counts={name: counts[i] for name, counts in z_counts.items()},
                truncated=bool(encoded.truncation_notes[i]),
                truncation_note=encoded.truncation_notes[i],
                timings={"encoder_ms": encoder_ms / len(inputs), "daam_ms": daam_ms / len(inputs)},
                extras=encoded.extras[i] if encoded.extras else None,
                relevance_method=method.name,
                ood_score=None if ood is None else float(ood[i]),
                out_of_distribution=None if ood is None else bool(ood[i] > self.ood.threshold),
            ))
        return explanations

    def explain(self, x) -> Explanation:
        return self.explain_batch([x])[0]

    def prepare_input(self, x):
        """The input's own work before the model runs (an image's or a clip's decoding, cropping, resampling: its
        encoder's preprocess), done now, in the caller's thread; explain_batch takes the result as it takes x. A
        server prepares each request in its own thread, so that the thread running the model only runs it, and an
        unreadable input fails here, alone. Text needs none: x as it is."""
        preprocess = getattr(self.encoder, "preprocess", None)
        return x if preprocess is None else preprocess(x)

    def relevance(self, logits: torch.Tensor, inter: ClassifierIntermediates, mask: torch.Tensor) -> torch.Tensor:
        """Each head's and position's share of the predicted class's log-probability: (batch, heads, positions).

        The pooled vector is pooled = sum_p share_p * mixed_p (pool_shares). With g = d log p(predicted) / d pooled
        (through LayerNorm and the linear head, in closed form), each position is credited with (what it adds) . g,
        split over the heads owning its channels: under "mean" pooling what it adds is share_p * mixed_p, an exact
        split of the first-order term pooled . g. Under "gate" pooling the shares are normalised, so a position only
        matters through how much more weight the gate gives it than an even split would: what it adds is
        share_p * (mixed_p - uniform), with uniform the plain mean of the real positions. These sum to
        (pooled - uniform) . g, the first-order effect of the gate's choices against pooling every position alike.
        (Chosen on validation sentences and synthetic clips over centring on the pooled vector itself; the figures:
        README, "The mechanism comparison".) One forward pass, no backward; positive = supports the predicted label."""
        pool = self.density_pool
        shares = pool.pool_shares(inter.positions.gate, mask)
        if self.config.pooling == "gate":
            uniform = masked_mean(inter.mixed, mask[:, :, None], dim=1)  # (b, d)
            added = shares * (inter.mixed - uniform[:, None, :])  # (b, p, d)
        else:
            added = shares * inter.mixed
        pooled = inter.pooled  # = (shares * inter.mixed).sum(1)
        probs = logits.softmax(-1)
        towards = nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype) - probs  # d log p_c / d logits
        norm = self.norm
        mean, var = pooled.mean(-1, keepdim=True), pooled.var(-1, unbiased=False, keepdim=True)
        inv_std = torch.rsqrt(var + norm.eps)
        normalised = (pooled - mean) * inv_std  # (b, d)
        v = (towards @ self.head.weight) * norm.weight  # d log p_c / d normalised
        g = inv_std * (v - v.mean(-1, keepdim=True) - normalised * (v * normalised).mean(-1, keepdim=True))  # (b, d)
        contributions = added * g[:, None, :]  # (b, p, d)
        return self._head_sums(contributions, pool.position_attention.num_heads, channel_axis=2)[0]

    def relevance_against(self, logits: torch.Tensor, inter: ClassifierIntermediates, mask: torch.Tensor,
                          reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance against a reference input, exactly at the pool: (batch, heads, positions), (batch, positions).

        reference: encoder features of what each position becomes when it is removed (the clip silenced, for audio),
        shaped like the input's. A position adds share_p * (mixed_p - reference mixed_p) to the pooled vector; its
        relevance is the predicted class's log-probability minus that log-probability with this addition taken out
        (the shares held fixed), through LayerNorm and the head exactly rather than to first order; a head's, the same
        with only its channels taken out, so heads need not sum to their position. One more encoder pass (the
        reference) and one more pass of the DAAM stages; no backward. Chosen on the validation voices over relevance()
        by the deletion test; on validation sentences it gained nothing, so text keeps relevance() (the figures:
        README, "The mechanism comparison")."""
        num_heads = self.density_pool.position_attention.num_heads
        _, removed = self.forward(reference, mask, return_intermediates=True)
        added = self.density_pool.pool_shares(inter.positions.gate, mask) * (inter.mixed - removed.mixed)  # (b, p, d)
        heads = head_index(added.shape[-1], num_heads, added.device)
        owner = nn.functional.one_hot(heads, num_heads).T.to(added.dtype)  # (heads, d)
        predicted = logits.argmax(-1)

        def log_probability(pooled: torch.Tensor) -> torch.Tensor:  # (b, ..., d) -> (b, ...)
            log_probs = self.head(self.norm(pooled)).log_softmax(-1)
            index = predicted.view(-1, *[1] * (log_probs.dim() - 1)).expand(*log_probs.shape[:-1], 1)
            return log_probs.gather(-1, index).squeeze(-1)

        pooled, kept = inter.pooled, log_probability(inter.pooled)  # (b, d), (b,)
        positions = kept[:, None] - log_probability(pooled[:, None] - added)  # (b, p)
        per_head = kept[:, None, None] - log_probability(pooled[:, None, None] - added[:, None] * owner[None, :, None])
        real = mask[:, None, :].to(added.dtype)  # padding: 0
        return per_head * real, positions * real[:, 0]

    @staticmethod
    def _head_sums(values: torch.Tensor, num_heads: int, channel_axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums of values over each head's channels, (..., heads, positions), and each head's channel count."""
        heads = head_index(values.shape[channel_axis], num_heads, values.device)
        onehot = nn.functional.one_hot(heads, num_heads).to(values.dtype)  # (channels, heads)
        return (values.movedim(channel_axis, -1) @ onehot).transpose(-1, -2), onehot.sum(0)[:, None]

    @classmethod
    def _head_means(cls, gate: torch.Tensor, attention: nn.Module, channel_axis: int) -> torch.Tensor:
        """A head's weight at a position = the mean gate over that head's channels: (..., heads, positions)."""
        sums, channels = cls._head_sums(gate, attention.num_heads, channel_axis)
        return sums / channels

    @staticmethod
    def _z_counts(z: torch.Tensor, real: torch.Tensor, num_heads: int) -> torch.Tensor:
        """How many of each item's z-values each head saw in each of Z_EDGES' bins, binned as explanation.z_bins
        bins them: z (batch, ..., channels) with real broadcastable to it (True = a real position) ->
        (batch, heads, bins). One bincount for the batch: each value's key is its bin plus an offset per item and
        head, or one past them all where the position is padding."""
        batch, bins = z.shape[0], len(Z_EDGES) - 1
        head = head_index(z.shape[-1], num_heads, z.device)  # (channels,)
        item = torch.arange(batch, device=z.device).view(-1, *[1] * (z.dim() - 1))
        offset = torch.where(real, ((item * num_heads + head) * bins).float(), float(batch * num_heads * bins))
        # floored before the offset is added (a float sum would round the fraction away); whole numbers are exact in
        # float32 below 2^24; int32, not int64: the conversion is the slow step
        keys = z.float().mul(bins / (2 * Z_RANGE)).add_(bins / 2).clamp_(0, bins - 0.5).floor_().add_(offset)
        counts = torch.bincount(keys.to(torch.int32).flatten(), minlength=(batch * num_heads + 1) * bins)
        return counts[:batch * num_heads * bins].view(batch, num_heads, bins)

    # ------------------------------------------------------------------ checkpoint I/O
    def _save_pretrained(self, directory: Path) -> None:
        """What the mixin's save_pretrained (and push_to_hub) writes: model.safetensors and config.json. The mixin
        adds a generic README.md where there is none; a training run writes the checkpoint's own card over it."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        (directory / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        if self.ood is not None:
            self.ood.save(directory)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, *, device: str | torch.device = "cpu") -> "DAAMClassifier":
        """A trained classifier from a checkpoint directory (or a Hub repo id, when online). Replaces the mixin's
        loader, which would fall back to unpickling pytorch_model.bin and load non-strictly: pickled weights are
        refused unopened (daam.hub), and a weight that is missing or unexpected is an error."""
        from safetensors.torch import load_file

        directory = resolve_checkpoint(path_or_repo_id)
        config = DAAMConfig(**json.loads((directory / "config.json").read_text()))
        model = cls(config)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        model.ood = OODDetector.load(directory)
        if model.ood is not None:
            model.ood.to(device)
        # Inference on the CPU through the fused kernel (benchmarks/bench_explain.py prints the gain); its backward
        # serves the gradient-based relevance, and nothing at inference differentiates twice.
        model.use_fused_kernel(torch.device(device).type == "cpu" and fused.cpu_kernel_available())
        return model.to(device).eval()


load_pretrained = DAAMClassifier.from_pretrained


def _pool_keys_from_before_pools(module, state_dict, prefix, *args) -> None:
    """Loads a state dict saved before the pool was a module of its own (the shipped checkpoints and their
    comparison heads): what is not the adapter's, the norm's or the head's was the pool's."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].split(".")[0] not in TOP_LEVEL_MODULES:
            state_dict[f"{prefix}pool.{key[len(prefix):]}"] = state_dict.pop(key)


@torch.no_grad()
def density_stage(attention: MultiHeadDensityAdaptiveAttention) -> DensityStage:
    """A stage's parameters plus every head's gate and components on a fixed z-grid, as numpy, for the view."""
    params = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in attention.density_parameters().items()}
    grid = torch.linspace(-Z_RANGE, Z_RANGE, CURVE_POINTS)
    curve, components = attention.density_curve(grid, components=True)
    collapsed = {k.removeprefix("collapsed_"): v for k, v in params.items() if k.startswith("collapsed_")}
    return DensityStage(mode=params["mode"], offsets=params["offsets"], scales=params["scales"],
                        weights=params["weights"], grid=grid.numpy(), curve=curve.cpu().numpy(),
                        components=components.cpu().numpy(), collapsed=collapsed or None,
                        standardises="score" if isinstance(attention, ScoredDensityAttention) else "input")
