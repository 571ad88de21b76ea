"""The Explanation contract: everything a view needs about one prediction, as plain Python and numpy.

This module imports neither torch nor anything of daam that does: `viz` reads Explanations through it,
and it is the one place that turns them into JSON and back (`to_dict` / `from_dict`). Its typed parts:

- `DensityStage`: one DAAM stage's learned densities (parameters, and every head's gate on a z-grid);
  they depend only on the checkpoint, so a model computes them once and every Explanation shares them.
- `ImageExtras`, `AudioExtras`: what a modality adds for its view (the picture the model saw, the
  spectrogram). Text needs none. In JSON, `extras` carries its `kind`, so `from_dict` knows its type.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping

import numpy as np

JSON_DECIMALS = 6
Z_RANGE = 4.0  # the z-values the views draw: density curves over [-Z_RANGE, Z_RANGE]
Z_EDGES = np.linspace(-Z_RANGE, Z_RANGE, 41)  # the bins each head's z-values are counted in
PNG_PREFIX = "data:image/png;base64,"


# ---------------------------------------------------------------------------- codec
def to_plain(value):
    """Arrays, numpy scalars and dataclasses of them as JSON-ready lists, numbers and strings.

    Floats are rounded to JSON_DECIMALS places, far below anything a figure can show: that keeps answers
    about a third smaller."""
    if isinstance(value, np.ndarray):
        return (np.round(value.astype(np.float64), JSON_DECIMALS) if value.dtype.kind == "f" else value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, JSON_DECIMALS)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def png_data_uri(image: np.ndarray, compress_level: int = 1) -> str:
    """A uint8 (H, W) or (H, W, 3) image as a lossless PNG data URI (compression level 1: the fastest, and a picture
    this size stays small)."""
    from PIL import Image

    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3 and (image == image[:, :, :1]).all():
        image = image[:, :, 0]  # grey stored once, not three times
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return PNG_PREFIX + base64.b64encode(buffer.getvalue()).decode()


def png_array(uri: str) -> np.ndarray:
    """The uint8 array of a PNG data URI."""
    from PIL import Image

    if not isinstance(uri, str) or not uri.startswith(PNG_PREFIX):
        raise ValueError(f"expected a PNG data URI, got one starting {str(uri)[:30]!r}")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(PNG_PREFIX):]))))


def _floats(values, ndim: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"expected {ndim} dimensions, got shape {array.shape}")
    return array


def z_bins(values: np.ndarray) -> np.ndarray:
    """The Z_EDGES bin of each z-value, those beyond ±Z_RANGE in the end bins: floor((z + Z_RANGE) / width) in
    float32 as written (the model computes it on its tensors with the same operations, so both agree exactly)."""
    bins = len(Z_EDGES) - 1
    scaled = np.asarray(values, dtype=np.float32) * np.float32(bins / (2 * Z_RANGE)) + np.float32(bins / 2)
    return np.clip(scaled, 0, bins - 0.5).astype(np.int64)


def count_z(values: np.ndarray) -> np.ndarray:
    """How many of `values` fall in each of Z_EDGES' bins (z_bins): (bins,) int64."""
    return np.bincount(z_bins(values).ravel(), minlength=len(Z_EDGES) - 1)


def _counts(values) -> np.ndarray:
    """(heads, bins) z-counts from JSON, checked against Z_EDGES."""
    array = np.asarray(values, dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != len(Z_EDGES) - 1:
        raise ValueError(f"z_counts: expected (heads, {len(Z_EDGES) - 1}) counts, got shape {array.shape}")
    return array


# ---------------------------------------------------------------------------- typed parts
@dataclass
class DensityStage:
    """One stage's learned densities: parameters (heads, densities) and every head's gate over `grid`."""

    mode: str  # "mixture" or "product"
    offsets: np.ndarray  # (heads, densities)
    scales: np.ndarray  # (heads, densities)
    weights: np.ndarray  # (heads, densities): mixture weights, rows sum to 1
    grid: np.ndarray  # (G,) z-values the curves are drawn at
    curve: np.ndarray  # (heads, G): the gate
    components: np.ndarray  # (heads, densities, G): w_k N_k(z) (mixture), or the factors (product)
    collapsed: dict[str, np.ndarray] | None = None  # product mode: {"offset", "scale", "peak"}, (heads,) each
    standardises: str = "input"  # what z is: "input" (every channel's value) or "score" (each head's learned score)

    @property
    def heads(self) -> int:
        return self.curve.shape[0]

    def to_dict(self) -> dict:
        return {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "DensityStage":
        collapsed = data.get("collapsed")
        return cls(mode=str(data["mode"]), offsets=_floats(data["offsets"], 2), scales=_floats(data["scales"], 2),
                   weights=_floats(data["weights"], 2), grid=_floats(data["grid"], 1), curve=_floats(data["curve"], 2),
                   components=_floats(data["components"], 3),
                   collapsed=None if collapsed is None else {k: _floats(v, 1) for k, v in collapsed.items()},
                   standardises=str(data.get("standardises", "input")))


@dataclass
class ImageExtras:
    """What the model saw: the preprocessed picture. In JSON a lossless PNG data URI, not 50,000 numbers."""

    kind: ClassVar[str] = "image"
    image: np.ndarray  # (224, 224) uint8

    def to_dict(self) -> dict:
        return {"kind": self.kind, "image": {"png": png_data_uri(self.image), "shape": list(self.image.shape)}}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ImageExtras":
        return cls(image=png_array(data["image"]["png"]))


@dataclass
class AudioExtras:
    """The clip as the model heard it: its log-mel spectrogram, and where frames and positions lie in time."""

    kind: ClassVar[str] = "audio"
    log_mel: np.ndarray  # (mels, frames): the log-mel the encoder reads (Whisper's: log10 power, scaled)
    frame_times: np.ndarray  # (frames,) seconds into the original clip
    position_times: np.ndarray  # (positions,) seconds: the time of each of the Explanation's positions
    duration_s: float  # of the whole original clip
    speech_probability: float | None = None  # that the clip holds speech at all (daam.speech); None: not checked

    def to_dict(self) -> dict:
        return {"kind": self.kind} | {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "AudioExtras":
        speech = data.get("speech_probability")
        return cls(log_mel=_floats(data["log_mel"], 2), frame_times=_floats(data["frame_times"], 1),
                   position_times=_floats(data["position_times"], 1), duration_s=float(data["duration_s"]),
                   speech_probability=None if speech is None else float(speech))


Extras = ImageExtras | AudioExtras
EXTRAS_TYPES: dict[str, type] = {cls.kind: cls for cls in (ImageExtras, AudioExtras)}
STAGES = ("positions", "layers")  # DAAM over positions, DAAM over the encoder's layers


# ---------------------------------------------------------------------------- the explanation
OPTIONAL_FIELDS = ("extras", "relevance_method", "ood_score", "out_of_distribution")  # absent from older JSON
@dataclass
class Explanation:
    modality: str
    labels: list[str]
    probabilities: list[float]
    predicted_label: str
    position_labels: list[str]  # one per real position: tokens, patch "row r, col c", times
    position_weights: np.ndarray  # (heads, positions): raw gates, what each head lets through (mean over its channels)
    # (positions,): signed support for the predicted label, by relevance_method (daam.relevance): "pool", the pool's
    # first-order account (text); "reference", exact at the pool against the input with the position removed
    # (audio: silenced); "encoder_gradient", gradient x input per position through the encoder (images: a cell's
    # removal reaches the features of its neighbours too).
    position_relevance: np.ndarray
    head_relevance: np.ndarray  # (heads, positions): the method's account split over the heads that let it through
    layer_importance: np.ndarray  # (layers, dim): the Importance Factor, mean gate per layer and feature
    layer_names: list[str]
    density: dict[str, DensityStage]  # by stage ("positions", "layers")
    # by stage: (heads, bins) how many of this input's z-values each head saw in each of Z_EDGES' bins; the end bins
    # also count those beyond ±Z_RANGE
    z_counts: dict[str, np.ndarray]
    truncated: bool  # the model saw only part of the input
    truncation_note: str  # what it left out, in words ("" when nothing)
    timings: dict[str, float]  # {"encoder_ms", "daam_ms"}
    extras: Extras | None = None  # what the modality adds for its view (text: none)
    relevance_method: str = ""  # the name of the method that filled the relevance ("" in JSON written before it)
    # daam.ood: the input's score (its views' squared Mahalanobis distances to the nearest training class, in units of
    # their validation quantiles, combined by its modality's rule), and whether it lies beyond the checkpoint's
    # threshold (farther than its QUANTILE of held-out items); None where the checkpoint has no detector
    ood_score: float | None = None
    out_of_distribution: bool | None = None

    @property
    def heads(self) -> int:
        return self.position_weights.shape[0]

    def to_dict(self) -> dict:
        """The JSON form as plain lists, numbers and strings: what the API answers."""
        return {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}  # not asdict: it deep-copies arrays

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Explanation":
        """The inverse of to_dict; a ValueError names what is missing or unknown."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an Explanation is read from a dict, got {type(data).__name__}")
        if "z_values" in data and "z_counts" not in data:  # written before z_counts: per head, a sample of z-values
            z_counts = {stage: np.stack([count_z(_floats(z, 1)) for z in heads])
                        for stage, heads in data["z_values"].items()}
            data = {k: v for k, v in data.items() if k != "z_values"} | {"z_counts": z_counts}
        names = [f.name for f in fields(cls)]
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"unknown Explanation fields: {sorted(unknown)}")
        missing = [n for n in names if n not in data and n not in OPTIONAL_FIELDS]
        if missing:
            raise ValueError(f"the explanation is missing the field {missing[0]!r}")
        values = dict(data)
        values["position_weights"] = _floats(data["position_weights"], 2)
        values["position_relevance"] = _floats(data["position_relevance"], 1)
        values["head_relevance"] = _floats(data["head_relevance"], 2)
        values["layer_importance"] = _floats(data["layer_importance"], 2)
        values["density"] = {stage: DensityStage.from_dict(d) for stage, d in data["density"].items()}
        values["z_counts"] = {stage: _counts(counts) for stage, counts in data["z_counts"].items()}
        extras = data.get("extras")
        if extras:
            kind = extras.get("kind")
            if kind not in EXTRAS_TYPES:
                raise ValueError(f"unknown extras kind {kind!r}; known: {sorted(EXTRAS_TYPES)}")
            values["extras"] = EXTRAS_TYPES[kind].from_dict(extras)
        else:
            values["extras"] = None
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        return cls.from_dict(json.loads(text))

    @classmethod
    def coerce(cls, value: "Explanation | Mapping") -> "Explanation":
        """An Explanation as it is, or one read from its dict form (the API's JSON)."""
        return value if isinstance(value, cls) else cls.from_dict(value)

