"""Explanation: everything the view needs about one prediction, as plain Python and numpy."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class Explanation:
    modality: str
    labels: list[str]
    probabilities: list[float]
    predicted_label: str
    position_labels: list[str]  # one per real position: tokens, patch "r,c", times
    position_weights: np.ndarray  # (heads, positions): mean gate over each head's channels
    layer_importance: np.ndarray  # (layers, dim): the Importance Factor, mean gate per layer and feature
    layer_names: list[str]
    # {"layers"|"positions": {"offsets", "scales", "weights": (heads, densities), "mode",
    #   "grid": (G,), "curve": (heads, G), "components": (heads, densities, G), product mode: "collapsed_*"}}
    density: dict
    z_values: dict  # {"layers"|"positions": [per head: 1-D array of this input's z-values]}
    truncated: bool
    timings: dict  # {"encoder_ms", "daam_ms"}
    extras: dict = field(default_factory=dict)  # modality-specific data for the view

    def to_dict(self) -> dict:
        """The JSON form as plain lists, numbers and strings: what the API answers and what viz reads.

        Arrays' floats are rounded to JSON_DECIMALS places, far below anything a figure can show: that
        keeps answers about a third smaller. Arrays in extras keep their dtype; an image (2-D uint8, as
        "what the model sees") travels as {"png": a PNG data URI, "shape"}: 224x224 pixels as numbers were
        200 KB of an image answer and most of the time Gradio and gradio_client spend on it."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: it deep-copies every array
        data["extras"] = {k: _extra_to_plain(v) for k, v in self.extras.items()}
        return _to_plain(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        data = json.loads(text)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown Explanation fields: {sorted(unknown)}")
        data["position_weights"] = np.asarray(data["position_weights"], dtype=np.float32)
        data["layer_importance"] = np.asarray(data["layer_importance"], dtype=np.float32)
        data["density"] = {
            stage: {k: (v if isinstance(v, str) else np.asarray(v, dtype=np.float32)) for k, v in params.items()}
            for stage, params in data["density"].items()
        }
        data["z_values"] = {stage: [np.asarray(v, dtype=np.float32) for v in heads] for stage, heads in data["z_values"].items()}
        data["extras"] = {k: _extra_from_plain(v) for k, v in data.get("extras", {}).items()}
        return cls(**data)


JSON_DECIMALS = 6
PNG_PREFIX = "data:image/png;base64,"


def _extra_to_plain(value):
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype == np.uint8 and value.ndim == 2:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(value).save(buffer, format="PNG", compress_level=1)  # lossless; level 1: 0.5 ms, not 1-3
        return {"png": PNG_PREFIX + base64.b64encode(buffer.getvalue()).decode(), "shape": list(value.shape)}
    return {"array": value, "dtype": str(value.dtype)}


def _extra_from_plain(value):
    if isinstance(value, dict) and "png" in value:
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(base64.b64decode(value["png"].removeprefix(PNG_PREFIX)))))
    if isinstance(value, dict) and "array" in value:
        return np.asarray(value["array"], dtype=value["dtype"])
    return value


def _to_plain(value):
    if isinstance(value, np.ndarray):
        return (np.round(value.astype(np.float64), JSON_DECIMALS) if value.dtype.kind == "f" else value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value
