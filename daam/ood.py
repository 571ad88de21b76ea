"""Is an input like the data the checkpoint was trained on? Mahalanobis distances of the classifier's own features.

    d_k(x) = min_c (f_k(x) - mu_kc)^T Sigma_k^-1 (f_k(x) - mu_kc)          score(x) = max_k d_k(x) / q_k
                                                                          (or mean_k, by the modality: below)
with f_k(x) each view's features divided by their length (Mueller and Hein's Mahalanobis++, 2025).

Views of an input, k: what the classifier head reads ("head": the pooled features after its LayerNorm), what
the pool was given ("mixed": the layer-mixed states averaged over the input's positions), what the frozen
encoder gave ("encoder": its features averaged over the positions, the last layer's where it gives several),
where the encoder gives layers, its first block's states position by position ("positions": d_k is then the mean
of each position's distance over POSITIONS_PER_INPUT of the input's positions spread evenly, f_k(x) one
position's state) and, where its features concatenate an image encoder's stages, its earlier stages alone
("early": every stage but the last two, averaged over the cells; early_channels).
mu_kc: each class's mean over the training split; Sigma_k: the shared within-class covariance (Lee et al. 2018),
shrunk toward a scaled identity by scikit-learn's Ledoit-Wolf estimate so that it stays well conditioned with fewer
items than dimensions; q_k: the QUANTILE of d_k over the validation split. The threshold is the QUANTILE of the
score over the validation split (held out, in distribution), so about 1 - QUANTILE of such inputs are flagged.

Why unit length: how strongly an encoder responds varies far more than one shared covariance allows (a CNN's
ReLU features scale with a picture's contrast), and a distance dominated by that strength misses inputs whose
pattern differs; divided by its length, a view keeps the pattern (chosen on the same design sets). Files fitted
before it keep the raw features (normalised=False).

Why distances and not the logits' confidence (max softmax, energy): a network of ReLUs and linear layers grows
*more* confident the farther an input lies from its data along most directions (Hein et al. 2019), which is where
a photo of a tower lands for a clothing classifier. Why several views: the trained parts keep only what tells the
classes apart, so an input that shares those directions (a review in French with the same sentiment) sits among the
training classes there; the frozen encoder's features still describe the input itself. Why positions one by one:
averaged over a sentence, the states of words in another language land among English ones; a word's own state,
early in the encoder, is far from every English word's (chosen over the embeddings and later blocks on other
languages' sentences: README, "How each choice was made"). Why an image encoder's earlier stages apart: a
photograph brought to a garment's size and contrast ends among garments in the last stages, which dominate the
"encoder" view; its edges and textures, early, do not (chosen on photographs, portraits and patches of photographs:
README, the same). Why text takes the views' mean and leaves out the frozen encoder's own: a sentence in
another language lands a little beyond English in each of the others, which only a sum of the evidence sees; the
sentence encoder itself was trained to place a sentence by its meaning, whatever the words, so its view sees a review
in Portuguese among English ones and would pull that mean down. (Text leaves out the layer-mixed view as well, on the
design sets alone: no reason is known.) An image or a sound, by contrast, is far in one view and ordinary in the
rest, so image and audio keep the largest. The rule is the modality's (daam.modalities: ood_skip, ood_combine); the
figures it was chosen on: README, "How each choice was made".

daam.train fits it for every checkpoint it writes (ood.safetensors, beside the weights); `python -m daam.fit_ood
--checkpoint DIR` fits it for a checkpoint trained before it existed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .pools import masked_mean

OOD_FILE = "ood.safetensors"
QUANTILE = 0.99  # the "farther than 99% of its held-out items"
VIEWS = ("head", "mixed", "encoder", "positions", "early")
VIEW_WORDS = {"head": "the features the head reads", "mixed": "the layer-mixed states",
              "encoder": "the frozen encoder's features",
              "positions": "the encoder's first block's states position by position, their distances averaged",
              "early": "the image encoder's earlier stages"}
COMBINE_WORDS = {"max": "the largest of them", "mean": "their mean"}
FIT_ITEMS = 4000  # at most this many training items (and validation, test items) when fitted after training
FIT_POSITIONS = 50_000  # at most this many positions fit the per-position view (a seeded sample)
POSITIONS_PER_INPUT = 16  # the per-position view reads at most this many of an input's positions, spread evenly
EARLY_MAX_CHANNELS = 1024  # the "early" view only where its covariance stays small (a ViT's 11 states would not)


class OODDetector:
    """Per view: class means (classes, dim), the shared precision (dim, dim) and the validation quantile the
    distance is divided by; the score above which an input counts as out of distribution, how the views' distances
    combine ("max" or "mean") and whether the features are brought to unit length first. Kept beside the
    classifier, not inside it: its tensors stay in their own file, and checkpoints without one load as before."""

    def __init__(self, views: dict[str, tuple[torch.Tensor, torch.Tensor, float]], threshold: float,
                 quantile: float, combine: str = "max", normalised: bool = True) -> None:
        if combine not in COMBINE_WORDS:
            raise ValueError(f"combine must be one of {sorted(COMBINE_WORDS)}, got {combine!r}")
        self.views = {k: (means.float(), precision.float(), float(scale)) for k, (means, precision, scale) in views.items()}
        self.threshold, self.quantile, self.combine = float(threshold), float(quantile), combine
        self.normalised = normalised  # each view's features divided by their length first (Mahalanobis++)
        self._terms = {k: self.class_terms(m, p) for k, (m, p, _) in self.views.items()}

    def to(self, device: str | torch.device) -> "OODDetector":
        self.views = {k: (m.to(device), p.to(device), s) for k, (m, p, s) in self.views.items()}
        self._terms = {k: self.class_terms(m, p) for k, (m, p, _) in self.views.items()}
        return self

    @staticmethod
    def class_terms(means: torch.Tensor, precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P mu_c (classes, dim) and mu_c'P mu_c (classes,): what a distance needs of the classes, the same for every
        input, so worked out once (it takes one (dim x dim) product per class; an input's own part, one)."""
        mu_p = means @ precision
        return mu_p, (mu_p * means).sum(-1)

    @staticmethod
    def distance(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor,
                 terms: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(batch, dim) -> (batch,) the squared Mahalanobis distance to the nearest class mean, expanded as
        f'Pf - 2 f'P mu_c + mu_c'P mu_c: one (dim x dim) product per input rather than one per class (terms: the
        classes' part, class_terms, when already worked out). A view given position by position, (batch, positions,
        dim) with padding NaN, gives each input its positions' mean."""
        mu_p, mu_term = OODDetector.class_terms(means, precision) if terms is None else terms
        f = features.float().to(means.device)
        d = (((f @ precision) * f).sum(-1, keepdim=True) - 2 * f @ mu_p.T + mu_term).amin(-1)
        return d.nanmean(-1) if features.dim() == 3 else d

    @torch.no_grad()
    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """{view: (batch, dim)} -> (batch,) the score: the largest of the views' distances (of the features at unit
        length, where normalised), each in units of its validation quantile, or their mean (combine)."""
        if self.normalised:  # only the views it reads: views_of also gives those a modality's rule leaves out
            features = unit_length({k: features[k] for k in self.views})
        distances = torch.stack([self.distance(features[k], m, p, self._terms[k]) / s
                                 for k, (m, p, s) in self.views.items()])  # (views, batch)
        return distances.amax(0) if self.combine == "max" else distances.mean(0)

    @classmethod
    def fit(cls, train: dict[str, torch.Tensor], targets: torch.Tensor, validation: dict[str, torch.Tensor],
            quantile: float = QUANTILE, combine: str = "max", normalised: bool = True) -> "OODDetector":
        """From the training split's features {view: (n, dim)} and classes (n,); scales and threshold from the
        validation split's."""
        from sklearn.covariance import LedoitWolf

        targets = targets.long()
        if normalised:
            train, validation = unit_length(train), unit_length(validation)
        views = {}
        for view, features in train.items():
            labels = targets
            if features.dim() == 3:  # position by position: every real position an item of its input's class
                real = ~features.isnan().any(-1)  # (n, positions)
                features, labels = features[real], targets[:, None].expand_as(real)[real]
                keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:FIT_POSITIONS]
                features, labels = features[keep], labels[keep]
            features = features.double()
            means = torch.stack([features[labels == c].mean(0) if (labels == c).any() else features.mean(0)
                                 for c in range(int(targets.max()) + 1)])
            precision = torch.from_numpy(LedoitWolf(assume_centered=True).fit((features - means[labels]).numpy()).precision_)
            scale = torch.quantile(cls.distance(validation[view], means.float(), precision.float()), quantile)
            views[view] = (means, precision, float(scale))
        detector = cls(views, threshold=0.0, quantile=quantile, combine=combine, normalised=normalised)
        detector.threshold = float(torch.quantile(detector(validation), quantile))
        if not (np.isfinite(detector.threshold) and all(np.isfinite(s) and s > 0 for _, _, s in views.values())):
            raise ValueError(f"the {len(targets)} training items vary too little within their classes to tell how "
                             "far an input lies from them: no out-of-distribution detector was fitted")
        return detector

    def save(self, directory: Path) -> None:
        """ood.safetensors: per view the class means and the precision's upper triangle (it is symmetric: half the
        bytes, and the file stays under the Hub's 10 MB limit for plain git with the image encoder's ~2,000 channels)."""
        import json

        from safetensors.torch import save_file

        tensors = {}
        for view, (means, precision, _) in self.views.items():
            rows, cols = torch.triu_indices(len(precision), len(precision))
            tensors[f"{view}.means"] = means.cpu().contiguous()
            tensors[f"{view}.precision_upper"] = precision.cpu()[rows, cols].contiguous()
        meta = {"threshold": self.threshold, "quantile": self.quantile, "combine": self.combine,
                "normalised": self.normalised,
                "scales": {k: s for k, (_, _, s) in self.views.items()}}
        save_file(tensors, str(Path(directory) / OOD_FILE), metadata={"detector": json.dumps(meta)})

    @classmethod
    def load(cls, directory: Path) -> "OODDetector | None":
        """The checkpoint's detector, or None where it has none (a checkpoint from before it existed)."""
        import json

        from safetensors import safe_open

        path = Path(directory) / OOD_FILE
        if not path.is_file():
            return None
        views = {}
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["detector"])
            for view, scale in meta["scales"].items():
                means, upper = f.get_tensor(f"{view}.means"), f.get_tensor(f"{view}.precision_upper")
                dim = means.shape[1]
                rows, cols = torch.triu_indices(dim, dim)
                precision = torch.zeros(dim, dim, dtype=upper.dtype)
                precision[rows, cols] = upper
                precision[cols, rows] = upper
                views[view] = (means, precision, scale)
        # files written before these settings: the largest of the views, of the features as they come
        return cls(views, meta["threshold"], meta["quantile"], meta.get("combine", "max"), meta.get("normalised", False))


def unit_length(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each view's feature vectors divided by their length (a position by position view: each position's; padding
    stays NaN)."""
    return {k: torch.nn.functional.normalize(v.float(), dim=-1) for k, v in features.items()}


def views_of(model, inter, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The detector's views of a batch, from the encoder's features (batch, [layers,] positions, dim), their mask
    (batch, positions) and the classifier's intermediates: {view: (batch, dim)}, and where the encoder gives layers
    "positions": its first block's states at POSITIONS_PER_INPUT positions (spread_positions), (batch, count, dim);
    where its features concatenate an image encoder's stages, "early" (early_channels)."""
    mask = mask.to(inter.mixed.device)[..., None]
    last = (features[:, -1] if features.dim() == 4 else features).to(inter.mixed.device).float()
    views = {"head": model.norm(inter.pooled), "mixed": masked_mean(inter.mixed, mask, dim=1),
             "encoder": masked_mean(last, mask, dim=1)}
    if features.dim() == 4:
        first_block = features[:, min(1, features.shape[1] - 1)].to(inter.mixed.device).float()  # (b, p, d)
        views["positions"] = spread_positions(first_block, mask[..., 0])
    early = early_channels(model.config)
    if early is not None:
        views["early"] = masked_mean(last[..., :early], mask, dim=1)
    return views


def early_channels(config) -> int | None:
    """How many of the features' leading channels the "early" view reads: those of every stage but the last two,
    where the features concatenate four stages or more (the stage_projection adapter: EfficientNet-Lite0's blocks
    7, 10 and 14 of its 7, 10, 14, 15 and head, 384 channels) and they number at most EARLY_MAX_CHANNELS; else None."""
    if config.adapter.get("name") != "stage_projection":
        return None
    channels = config.adapter["kwargs"]["channels"]
    early = sum(channels[:-2])
    return early if len(channels) >= 4 and early <= EARLY_MAX_CHANNELS else None


def spread_positions(states: torch.Tensor, mask: torch.Tensor, count: int = POSITIONS_PER_INPUT) -> torch.Tensor:
    """At most `count` of each input's real positions, evenly spread over it (all of a shorter one): states
    (batch, positions, dim), mask (batch, positions) -> (batch, count, dim), NaN where an input has fewer. A fixed
    count keeps a fit's memory to items x count x dim whatever the inputs' lengths."""
    real_first = (~mask).to(torch.uint8).argsort(dim=1, stable=True)  # (b, positions): padding on either side
    lengths = mask.sum(1, keepdim=True)  # (b, 1)
    step = torch.arange(count, device=states.device)[None, :]  # (1, count)
    spread = (step * (lengths - 1) / max(count - 1, 1)).round().long()
    index = real_first.gather(1, torch.where(lengths >= count, spread, step.clamp(max=states.shape[1] - 1)))
    picked = states.gather(1, index[..., None].expand(-1, -1, states.shape[-1]))  # (b, count, dim)
    return picked.masked_fill((step >= lengths)[..., None], float("nan"))


@torch.no_grad()
def view_features(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{view: (items, dim)} for batches of encoder (features, mask)."""
    model.eval()
    out = {view: [] for view in VIEWS}
    for features, mask in batches:
        _, inter = model(features.to(model.device).float(), mask.to(model.device), return_intermediates=True)
        for view, values in views_of(model, inter, features, mask).items():
            out[view].append(values.float().cpu())
    return {view: torch.cat(values) for view, values in out.items() if values}  # "positions", "early": where there are


def encoded_batches(model, inputs: list, batch_size: int = 32):
    """(features, mask) of raw inputs, encoded by the model's frozen encoder a batch at a time."""
    for start in range(0, len(inputs), batch_size):
        encoded = model.encoder(inputs[start:start + batch_size])
        yield encoded.features, encoded.mask


def cached_batches(cache, items: list[int], batch_size: int = 256):
    """(features, mask) of items already in a training run's feature cache (daam.features)."""
    for start in range(0, len(items), batch_size):
        features, mask, _ = cache.batch(items[start:start + batch_size])
        yield features, mask


def summary(detector: OODDetector, features: dict[str, torch.Tensor], counts: dict[str, int]) -> dict:
    """What metrics.json records of a fitted detector: its rule, threshold, and the share of test items flagged."""
    flagged = float((detector(features["test"]) > detector.threshold).float().mean())
    return {"method": method_words(detector), "views": list(detector.views), "combine": detector.combine,
            "quantile": detector.quantile, "threshold": round(detector.threshold, 4),
            "fitted_on": {"train": counts["train"], "val": counts["val"]},
            "test_items": counts["test"], "test_flagged": round(flagged, 4)}


def fit_for(config, train: dict[str, torch.Tensor], targets: torch.Tensor,
            validation: dict[str, torch.Tensor]) -> OODDetector:
    """OODDetector.fit by the rule of the checkpoint's modality: the views it leaves out, and how the rest combine
    (daam.modalities: ood_skip, ood_combine)."""
    from .modalities import modality

    rule = modality(config.modality)
    kept = lambda views: {k: v for k, v in views.items() if k not in rule.ood_skip}  # noqa: E731
    return OODDetector.fit(kept(train), targets, kept(validation), combine=rule.ood_combine)


def method_words(detector: OODDetector) -> str:
    """The detector's rule in words, for metrics and cards."""
    length = " at unit length" if detector.normalised else ""
    return ("the Mahalanobis distance to the nearest training class (one shared covariance, Ledoit-Wolf) of views of "
            f"the input{length} ({'; '.join(VIEW_WORDS[k] for k in detector.views)}), each distance in units of its "
            f"validation quantile, {COMBINE_WORDS[detector.combine]}")
