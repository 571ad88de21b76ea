"""DAAM beside other attention and pooling mechanisms, on the same frozen features, in numbers and per input.

    python -m daam.compare text  [--checkpoint checkpoints/text]
    python -m daam.compare image
    python -m daam.compare audio

Each mechanism of daam.mechanisms is the classifier's pool in DAAM's place (same adapter, layer mix, head) and is
trained on the same cached encoder features, with the same split, budget (the modality's TrainSettings) and
selection rule (per run: the epoch with the best validation accuracy) as the shipped checkpoint, for the same seeds.
The test split is touched once per run, at the end. DAAM's row is the shipped checkpoint's own figures
(metrics.json, training_curves.json). Writes <checkpoint>/comparison.json and each mechanism's best-on-validation
head to <checkpoint>/mechanisms/<name>.safetensors, which the app's Compare tab runs beside DAAM.

Per row: accuracy and macro-F1 over seeds, trainable parameters, ms per item for the head on encoder features (one
batch of 64: the shipped examples repeated; every head timed side by side in interleaved rounds; `--timings-only`
redoes just this), the convergence curve (validation accuracy per epoch, mean over seeds), and `faithfulness`:
the deletion test's drop of the predicted probability when the 20% of units (words, cells, frames) the mechanism
weights most are removed, mean over held-out test items (DAAM: its mean raw gate), beside random units."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .errors import DataError
from .faithfulness import FRACTIONS, deletion_curves, unit_case
from .model import DAAMClassifier
from .pools import COMPARED

MECHANISM_NAMES = {
    "daam": "DAAM (the shipped checkpoint)",
    "daam_original": "DAAM as the original release (normalised product)",
    "softmax_attention": "softmax attention pooling",
    "multihead_attention": "multi-head dot-product attention, learned query",
    "additive_attention": "additive (Bahdanau) attention",
    "gated_attention": "gated attention pooling (Ilse et al. 2018)",
    "mean": "mean pooling",
}
DELETION_FRACTION = 0.2
TIMING_BATCH = 64  # inputs whose encoder features every head is timed on


def load_mechanisms(checkpoint: str | Path, daam: DAAMClassifier) -> dict[str, nn.Module]:
    """The shipped comparison's trained heads (with DAAM first), ready to run on DAAM's encoder features; empty where
    the checkpoint has no comparison."""
    from safetensors.torch import load_file

    directory = Path(checkpoint) / "mechanisms"
    if not directory.is_dir():
        return {}
    out: dict[str, nn.Module] = {"daam": daam}
    for name in MECHANISM_NAMES:
        path = directory / f"{name}.safetensors"
        if name != "daam" and path.exists():
            model = DAAMClassifier(daam.config.with_pool(name))
            try:
                model.load_state_dict(load_file(str(path)))
            except Exception as error:  # noqa: BLE001 — unreadable, or saved by an older version of the head
                warnings.warn(f"{path} does not load ({str(error)[:200]}); run python -m daam.compare "
                              f"{daam.config.modality} --mechanisms {name} to train it again", RuntimeWarning)
                continue
            model.set_encoder(daam.encoder)
            out[name] = model.to(daam.device).eval()
    return out


@torch.no_grad()
def compare_input(mechanisms: dict[str, nn.Module], item) -> dict:
    """Every mechanism on one raw input, sharing one encoder pass: its prediction and per-position weights."""
    daam = mechanisms["daam"]
    encoded = daam.encoder([item])  # checks the input, as explain() does
    features, mask = encoded.features.to(daam.device).float(), encoded.mask.to(daam.device)
    n = int(mask[0].sum())
    rows = []
    for name, model in mechanisms.items():
        logits, weights = model.eval()(features, mask, return_weights=True)
        probabilities = logits.softmax(-1)[0].cpu().numpy()
        rows.append({"name": name, "title": MECHANISM_NAMES[name],
                     "predicted_label": daam.config.labels[int(probabilities.argmax())],
                     "probabilities": [round(float(p), 6) for p in probabilities],
                     "position_weights": [round(float(w), 6) for w in weights[0, :n].cpu().numpy()]})
    return {"position_labels": list(encoded.position_labels[0]), "labels": list(daam.config.labels), "rows": rows}


def load_comparison(checkpoint: str | Path) -> dict | None:
    path = Path(checkpoint) / "comparison.json"
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------- the run
def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def ms_per_item(mechanisms: dict[str, nn.Module], features: torch.Tensor, mask: torch.Tensor, rounds: int = 15) -> dict:
    """Median ms per item of each head's forward on one batch of cached features, timed side by side: every round
    runs every head once, in turn, so that the machine's drift hits all alike (the encoder pass is shared, not in it)."""
    samples = {name: [] for name in mechanisms}
    for round_ in range(rounds + 1):  # the first round warms up
        for name, model in mechanisms.items():
            started = time.perf_counter()
            model.eval()(features, mask)
            if round_:
                samples[name].append(time.perf_counter() - started)
    return {name: round(float(np.median(v)) * 1e3 / len(features), 4) for name, v in samples.items()}


def update_timings(checkpoint: Path, daam: DAAMClassifier) -> dict:
    """Time every shipped head on one batch (the modality's shipped examples, repeated to TIMING_BATCH inputs) and
    write the figures into comparison.json."""
    from .examples import example_inputs

    examples = example_inputs(daam.config.modality)
    inputs = (examples * TIMING_BATCH)[:TIMING_BATCH]
    encoded = daam.encoder(inputs)
    timings = ms_per_item(load_mechanisms(checkpoint, daam), encoded.features.float(), encoded.mask)
    comparison = load_comparison(checkpoint)
    for row in comparison["mechanisms"]:
        row["ms_per_item"] = timings[row["name"]]
    comparison["ms_per_item"] = (f"each head on one batch of {len(inputs)} inputs' encoder features (the shipped "
                                 "examples, repeated), median of 15 interleaved rounds; the encoder pass is shared "
                                 "and not counted")
    (checkpoint / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    return timings


@torch.no_grad()
def unit_weights(model: nn.Module, case) -> tuple[torch.Tensor, np.ndarray]:
    """A model's logits for a deletion-test case's input, and its weights summed into the case's units."""
    encoded = model.encoder([case.source])
    logits, weights = model.eval()(encoded.features.float(), encoded.mask, return_weights=True)
    return logits, case.per_unit(weights[0, : int(encoded.mask[0].sum())].numpy())


@torch.no_grad()
def deletion_drop(model: nn.Module, items: list, rng: np.random.Generator) -> tuple[float, float]:
    """Mean drop of the predicted probability at 20% deletion, by the model's own weights and by random units."""
    at = FRACTIONS.index(DELETION_FRACTION)
    drops, randoms = [], []
    for item in items:
        case = unit_case(model, item)
        logits, weights = unit_weights(model, case)
        scores = {"weights": weights, "random": rng.random(case.units)}
        curves = deletion_curves(case, scores, int(logits.argmax(-1)[0]), insertion=False)
        drops.append(curves["weights"][0][at])
        randoms.append(curves["random"][0][at])
    return float(np.mean(drops)), float(np.mean(randoms))


def run(task, encoder: nn.Module, config, settings, args, data_time_s: float = 0.0) -> dict:
    """Train every mechanism for the checkpoint's seeds on one feature cache, test once, and write the comparison."""
    from safetensors.torch import save_file

    from .metrics import classification_report, mean_sd
    from .features import features_for
    from .train import best_on_validation, predict, train_seeds

    started = time.time()
    checkpoint = Path(args.checkpoint)
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    sizes = {k: len(v) for k, v in task.split.items()}
    if sizes != metrics["split"]["sizes"]:
        raise DataError(f"split sizes {sizes} differ from the checkpoint's {metrics['split']['sizes']}: "
                         "run with the arguments the checkpoint was trained with")
    daam = DAAMClassifier.from_pretrained(checkpoint)
    daam.set_encoder(encoder)
    cache = features_for(task, encoder, daam.config, args)
    seeds = metrics["seeds"]
    y_test = cache.labels[task.split["test"]].numpy()
    rng = np.random.default_rng(0)
    test = task.split["test"]
    items = [task.inputs[i] for i in sorted(rng.choice(test, min(args.faithfulness_items, len(test)), replace=False))]
    (checkpoint / "mechanisms").mkdir(exist_ok=True)
    random_drops = []

    def measure(model: nn.Module) -> dict:
        drop, random_drop = deletion_drop(model, items, np.random.default_rng(1))
        random_drops.append(random_drop)
        return {"parameters": trainable_parameters(model), "faithfulness": round(drop, 4)}

    curves = json.loads((checkpoint / "training_curves.json").read_text())["daam"]
    daam_results = metrics["results"]["daam"]
    earlier = {r["name"]: r for r in (load_comparison(checkpoint) or {}).get("mechanisms", [])}
    names = args.mechanisms or list(COMPARED)
    rows = [{"name": "daam", "title": MECHANISM_NAMES["daam"],
             "accuracy_mean": daam_results["test_accuracy"]["mean"], "accuracy_sd": daam_results["test_accuracy"]["sd"],
             "seeds": seeds, "macro_f1": daam_results["test_macro_f1"]["mean"],
             "curve": [round(float(v), 5) for v in np.mean([c["val_accuracy"] for c in curves.values()], 0)],
             **measure(daam)}]
    for name in names:
        runs = train_seeds(lambda: DAAMClassifier(config.with_pool(name)), cache, task.split,
                           settings, seeds, name)
        reports = [classification_report(y_test, predict(model, cache, test)[0], task.labels) for _, model, _ in runs]
        chosen = runs[best_on_validation(runs)][1]
        chosen.set_encoder(encoder)
        # float16 on disk keeps a head to a few hundred KB (the image heads carry their own stage projections)
        save_file({k: v.detach().half().contiguous() for k, v in chosen.state_dict().items()},
                  str(checkpoint / "mechanisms" / f"{name}.safetensors"), metadata={"format": "pt"})
        accuracy = mean_sd([r["accuracy"] for r in reports])
        rows.append({"name": name, "title": MECHANISM_NAMES[name], "accuracy_mean": accuracy["mean"],
                     "accuracy_sd": accuracy["sd"], "seeds": seeds,
                     "macro_f1": mean_sd([r["macro_f1"] for r in reports])["mean"],
                     "curve": [round(float(v), 5) for v in np.mean([info["curves"]["val_accuracy"] for *_, info in runs], 0)],
                     **measure(chosen)})
        print(f"{name}: test accuracy {accuracy['mean']:.4f} ± {accuracy['sd']:.4f}, "
              f"deletion drop at 20% {rows[-1]['faithfulness']:.3f}")
    rows += [earlier[name] for name in COMPARED if name not in names and name in earlier]  # kept from the last run
    rows = [next(r for r in rows if r["name"] == name) for name in MECHANISM_NAMES if any(r["name"] == name for r in rows)]
    comparison = {
        "task": metrics["task"], "split": metrics["split"], "seeds": seeds,
        "command": f"python -m daam.compare {args.modality}",
        "selection": metrics["selection"], "train_settings": vars(settings),
        "faithfulness": {"items": len(items), "fraction": DELETION_FRACTION, "unit": unit_case(daam, items[0]).unit,
                         "random": round(float(np.mean(random_drops)), 4),
                         "what": "drop of the predicted probability when the top 20% of units by the mechanism's "
                                 "per-position weights are removed (DAAM: its mean raw gate), held-out test items"},
        "mechanisms": rows,
        "mechanisms_trained": names,  # in this run; the other rows come from the previous one
        "run_time_s": round(time.time() - started, 1),
        "data_time_s": data_time_s,  # making the task's data, before the run: python -m daam.compare takes both
    }
    (checkpoint / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    update_timings(checkpoint, daam)
    print(f"wrote {checkpoint / 'comparison.json'} in {comparison['run_time_s']} s (and {data_time_s} s making the data)")
    return comparison


def main(argv: list[str] | None = None) -> None:
    from .cli import build_parser, parse, prepare, run_command, settings_for

    parser = build_parser("python -m daam.compare", __doc__)
    parser.add_argument("--checkpoint", help="the shipped checkpoint to compare with (default checkpoints/<modality>)")
    parser.add_argument("--faithfulness-items", type=int, default=60, help="held-out test items for the deletion test")
    parser.add_argument("--mechanisms", nargs="+", choices=sorted(COMPARED),
                        help="train only these again; the other rows are kept from the existing comparison.json")
    parser.add_argument("--timings-only", action="store_true",
                        help="only time every shipped head again, side by side, and update comparison.json")
    args = parse(parser, argv)
    args.checkpoint = args.checkpoint or f"checkpoints/{args.modality}"
    if args.timings_only:  # no data needed: the heads are timed on the shipped examples
        print(update_timings(Path(args.checkpoint), DAAMClassifier.from_pretrained(args.checkpoint)))
        return

    def work() -> None:
        settings = settings_for(args)
        task, encoder, config, data_time_s = prepare(args)
        run(task, encoder, config, settings, args, data_time_s)

    run_command(parser, work)


if __name__ == "__main__":
    main()
