"""The Playground tab: shape one head's densities with sliders, from scratch or from a checkpoint's head, and see
a mixture keep both modes of a sample while the product collapses to one Gaussian."""

from __future__ import annotations

import functools

import gradio as gr

import viz
from daam import InputError
from daam.explanation import count_z
from daam.playground import SAMPLE, head_parameters, shape_head

from . import serving

PLAYGROUND_DENSITIES = 3
FROM_SCRATCH = "from scratch"
# Slider (name, low, high) and the scratch start: a density on each of the sample's two modes (z = -0.8 and
# +1.1), and a lighter one out at z = 3. The mixture keeps both modes; the product collapses to one Gaussian.
PLAYGROUND_SLIDERS = (("offset", -4, 4), ("scale", 0.05, 3), ("weight", 0.001, 1))
SCRATCH = {"offset": [-0.8, 1.1, 3.0], "scale": [0.35, 0.45, 0.5], "weight": [1.0, 1.0, 0.3]}
NEGLIGIBLE_GATE = 1e-3  # a gate whose peak is below this lets nothing through


@functools.cache
def playground_heads() -> dict[str, tuple]:
    """Dropdown label -> (attention module, head): every density head of the loaded checkpoints."""
    return {f"{name}: {stage} stage, head {h}": (module, h) for name, model in serving.loaded()[0].items()
            for stage, module in model.density_stages().items() for h in range(module.num_heads)}


@serving.user_errors
def playground(mode: str, *values: float):
    k = PLAYGROUND_DENSITIES
    shaped = shape_head(mode, values[:k], values[k:2 * k], values[2 * k:])
    peak = float(shaped.density.curve.max())
    if mode == "product":
        c = shaped.density.collapsed
        text = (f"**Product mode** is one Gaussian, whatever the sliders: centre {c['offset'][0]:.2f}, scale "
                f"{c['scale'][0]:.2f}.")
    else:
        text = f"**Mixture mode**: the gate has {shaped.peaks} peak{'s' if shaped.peaks != 1 else ''}."
    if peak < NEGLIGIBLE_GATE:
        text += f" Its highest value is {peak:.1e}: it is practically zero everywhere and lets nothing through."
    elif mode == "product":
        text += f" Its peak is {peak:.2f}."
    return text, viz.mixture_curves(shaped.density, z_counts=count_z(shaped.z)[None], title="The gate you shaped"), viz.gated_sample(SAMPLE, shaped.gate)


@serving.user_errors
def playground_start(source: str):
    """Slider values from a checkpoint head (or the scratch defaults)."""
    if source not in playground_heads():
        return [v for name, _, _ in PLAYGROUND_SLIDERS for v in SCRATCH[name]]
    params = head_parameters(*playground_heads()[source])
    if any(len(v) != PLAYGROUND_DENSITIES for v in params.values()):
        raise InputError(f"This head has {len(params['offsets'])} densities; the playground shows {PLAYGROUND_DENSITIES}.")
    return [round(min(max(float(v), lo), hi), 2) for values, (_, lo, hi) in zip(params.values(), PLAYGROUND_SLIDERS)
            for v in values]  # the sliders' own step: no 8-digit floats


def playground_tab() -> tuple:
    gr.Markdown("Shape one head's gate by hand. A **mixture** can keep several ranges of z; the original "
                "**product** of Gaussians always collapses to a single Gaussian.")
    with gr.Row():
        source = gr.Dropdown([FROM_SCRATCH, *playground_heads()], value=FROM_SCRATCH, label="Start from")
        mode = gr.Radio(["mixture", "product"], value="mixture", label="Mode", elem_id="mode")
    sliders = []
    with gr.Row():
        for name, lo, hi in PLAYGROUND_SLIDERS:
            with gr.Column():
                for k in range(PLAYGROUND_DENSITIES):
                    sliders.append(gr.Slider(lo, hi, value=SCRATCH[name][k], step=0.01, label=f"density {k} {name}",
                                             elem_id=f"{name}-{k}"))
    outputs = [gr.Markdown(elem_id="playground-verdict"), gr.Plot(label="Gate over z", elem_id="playground-curve"),
               gr.Plot(label="A sample input, gated")]
    gr.on([control.change for control in [mode, *sliders]], playground, [mode, *sliders], outputs,
          api_visibility="private", trigger_mode="always_last")
    source.change(playground_start, source, sliders, api_visibility="private")
    return mode, sliders, outputs
