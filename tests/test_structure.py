"""The shape of the code: import layering, the Explanation contract, the modality registry, stage mechanisms."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from daam import DAAMClassifier, DAAMConfig, Explanation, InputError
from daam.modalities import MODALITIES

ROOT = Path(__file__).resolve().parents[1]


def project_modules() -> dict[str, Path]:
    files = [*(ROOT / "daam").rglob("*.py"), *(ROOT / "viz").rglob("*.py"), *(ROOT / "ui").rglob("*.py"), ROOT / "app.py"]
    names = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict) -> set[str]:
    """Project modules `name` imports anywhere in its body (function-level imports too).

    Importing a.b.c runs a and a.b first, so those count too, except the importer's own packages: they are
    already importing when it runs, and `from . import sibling` needs nothing of their bodies."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from package import submodule` needs the submodule; `from module import name`, the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            implied = {".".join(parts[:i]) for i in range(1, len(parts))} - own_packages
            found |= ({target} | implied) & set(modules)
    return found - {name}


def test_no_import_cycle_among_the_project_modules():
    modules = project_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
    app_modules = [name for name in graph if name == "app" or name.startswith("ui")]
    # the app builds no attention module itself
    assert len(app_modules) > 1 and not any("daam.attention" in graph[name] for name in app_modules)


def test_the_contract_and_the_registry_load_no_torch():
    code = "import sys, daam.explanation, daam.modalities, viz; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_registry_entry_resolves():
    for entry in MODALITIES.values():
        assert entry.resolve("encoder").modality == entry.name
        assert all(callable(entry.resolve(role)) for role in ("task", "build", "card", "case"))


def test_a_training_run_takes_its_modalitys_architecture_unless_the_command_line_chooses():
    from types import SimpleNamespace

    from daam.cli import build_parser, daam_config, parse

    def config(*argv):
        args = parse(build_parser("train", ""), list(argv))
        encoder = SimpleNamespace(modality=args.modality, name="e")
        return daam_config(args, encoder, ["a", "b"], ["l0", "l1"], 8)

    for name, entry in MODALITIES.items():
        chosen = config(name)
        assert {k: getattr(chosen, k) for k in entry.architecture} == entry.architecture
    assert (config("text").position_mechanism, config("image").position_mechanism) == ("daam_score", "daam")
    overridden = config("text", "--position-mechanism", "daam", "--pooling", "mean", "--offset-spread", "0")
    assert (overridden.position_mechanism, overridden.pooling, overridden.offset_spread) == ("daam", "mean", 0.0)
    assert DAAMClassifier(overridden).pool.position_attention.mean_offsets.abs().max() == 0
    spread = DAAMClassifier(config("text")).pool.position_attention.mean_offsets
    assert torch.equal(spread[0], torch.tensor([-1.5, 0.0, 1.5]))  # both tails and the middle, every head


def tiny_text_model(**config) -> DAAMClassifier:
    torch.manual_seed(0)
    return DAAMClassifier(DAAMConfig("text", ["rotten", "fresh"], num_layers=3, dim=16,
                                     layer_names=["a", "b", "c"], **config)).eval()


def test_a_stage_mechanism_comes_from_the_config():
    features, mask = torch.randn(2, 3, 5, 16), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    daam = tiny_text_model()
    plain = tiny_text_model(position_mechanism="none")
    assert len(plain.pool.position_attention.state_dict()) == 0 and "pool.position_attention.mean_offsets" in daam.state_dict()
    logits, inter = plain(features, mask, return_intermediates=True)
    assert logits.shape == (2, 2) and (inter.positions.gate == 1).all() and inter.positions.z is None
    assert set(plain.densities()) == {"layers"}
    with pytest.raises(ValueError, match="unknown stage mechanism"):
        tiny_text_model(layer_mechanism="no-such")


def test_intermediates_are_the_z_scores_and_gates_of_the_forward_pass():
    model = tiny_text_model()
    features, mask = torch.randn(2, 3, 5, 16), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    _, inter = model(features, mask, return_intermediates=True)
    torch.testing.assert_close(inter.positions.z, model.pool.position_attention.z_scores(inter.mixed, mask=mask[:, :, None]))
    torch.testing.assert_close(inter.layers.z, model.pool.layer_attention.z_scores(inter.hidden, mask=mask[:, None, :, None]))


def test_densities_are_computed_once_per_checkpoint_and_again_after_a_change():
    model = tiny_text_model()
    first = model.densities()
    assert model.densities() is first
    with torch.no_grad():
        model.pool.position_attention.mean_offsets.add_(1.0)
    changed = model.densities()
    assert changed is not first
    np.testing.assert_allclose(changed["positions"].offsets, first["positions"].offsets + 1.0, rtol=1e-6)


def test_the_dict_form_reads_back_and_names_what_is_wrong():
    e = Explanation.from_json((ROOT / "examples" / "audio_espeak_q.json").read_text())
    assert Explanation.from_dict(e.to_dict()).to_dict() == e.to_dict()
    assert Explanation.coerce(e) is e
    with pytest.raises(ValueError, match="missing the field 'labels'"):
        Explanation.from_dict({k: v for k, v in e.to_dict().items() if k != "labels"})
    with pytest.raises(ValueError, match="unknown extras kind"):
        Explanation.from_dict(e.to_dict() | {"extras": {"kind": "smell"}})


def test_the_app_says_input_errors_and_hides_internal_ones(caplog):
    import gradio as gr

    from ui import serving

    def bad_input():
        raise InputError("the text is empty")

    def bug():
        raise ValueError("index 7 is out of bounds")

    with pytest.raises(gr.Error, match="the text is empty"):
        serving.user_errors(bad_input)()
    with pytest.raises(gr.Error, match="Something went wrong") as raised:
        serving.user_errors(bug)()
    assert "out of bounds" not in str(raised.value)
    assert any(r.exc_info for r in caplog.records if "bug" in r.getMessage())  # the traceback goes to the log
    assert not any(r.exc_info for r in caplog.records if "bad_input" in r.getMessage())


@pytest.mark.parametrize("pool", ["daam", "gated_attention"])
def test_a_state_dict_from_before_pools_loads_into_the_pool_and_a_stray_key_still_fails(pool):
    """The shipped checkpoints and comparison heads keep the pool's parameters at the top level (layer_attention.*,
    layer_logits, pooling.*): they load unchanged, strictly."""
    model = tiny_text_model(pool=pool)
    saved = {k.removeprefix("pool."): v.clone() for k, v in model.state_dict().items()}
    assert any(k.startswith("pool.") for k in model.state_dict()) and not any(k.startswith("pool.") for k in saved)
    fresh = tiny_text_model(pool=pool)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    fresh.load_state_dict(saved)
    features, mask = torch.randn(2, 3, 5, 16), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    torch.testing.assert_close(fresh(features, mask), model(features, mask), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="no_such"):
        fresh.load_state_dict(saved | {"no_such": torch.zeros(1)})
