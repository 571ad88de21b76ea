"""The audio checkpoint against Whisper itself on real speech, and what explaining a clip costs.

    python benchmarks/bench_audio.py [--checkpoint checkpoints/audio] [--repeats 30] [--write]

1. Real human recordings (klettres-data's 52 letter clips, never used to train or select): the shipped DAAM
   checkpoint beside Whisper tiny.en zero-shot (the same weights run by CTranslate2, its first token restricted to
   the letters A-Z, the clip padded to 30 s as Whisper expects) and beside the mean-pool and attention-pool
   baselines trained on the same frozen encoder in the same training run (metrics.json: their weights are not
   shipped). Also the "no spoken letter" rule (daam.modalities.no_answer: the speech probe of daam.speech, then
   the confidence floor): how many real clips it rejects, and what it says of a tone, noise, a chirp, a chord and
   the two music clips that come with Gradio.
2. Latency on a 1 s clip, side by side in one run: DAAMClassifier.explain (what /explain_audio runs: decoding,
   log-mel, encoder, DAAM, relevance) against the bare encoder forward on the same log-mel; p50 and the ratio. Then
   explain with the relevance's silenced reference encoded in the clip's own batch against in a pass of its own.
Needs `apt-get install klettres-data` and `pip install ctranslate2` (requirements-dev.txt)."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daam import load_pretrained  # noqa: E402
from daam.audio import decode_audio, prepare_audio  # noqa: E402
from daam.data.spoken_letters import LETTERS, real_letter_clips  # noqa: E402
from daam.modalities import MODALITIES, no_answer  # noqa: E402
from daam.whisper import SAMPLE_RATE, log_mel, model_path  # noqa: E402

START_OF_TRANSCRIPT, NO_TIMESTAMPS = "<|startoftranscript|>", "<|notimestamps|>"


class ZeroShotWhisper:
    """Whisper tiny.en as it is (CTranslate2), asked for one token and allowed only the letters (" A" or "A")."""

    def __init__(self) -> None:
        import ctranslate2

        self.ctranslate2 = ctranslate2
        directory = model_path().parent
        vocabulary = (directory / "vocabulary.txt").read_text().split("\n")
        self.letter_of = {vocabulary.index(t): letter for letter in LETTERS for t in ("Ġ" + letter, letter)}
        self.suppressed = [i for i in range(len(vocabulary)) if i not in self.letter_of]
        self.prompt = [vocabulary.index(START_OF_TRANSCRIPT), vocabulary.index(NO_TIMESTAMPS)]
        self.model = ctranslate2.models.Whisper(str(directory), device="cpu", compute_type="float32")

    def __call__(self, path: Path) -> str:
        import torchaudio

        samples, rate = decode_audio(path)
        wave = torchaudio.functional.resample(torch.from_numpy(samples.mean(1)), rate, SAMPLE_RATE)[: 30 * SAMPLE_RATE]
        padded = torch.zeros(30 * SAMPLE_RATE)
        padded[: len(wave)] = wave
        mel = self.ctranslate2.StorageView.from_array(log_mel(padded)[None].numpy())
        result = self.model.generate(mel, [self.prompt], max_length=3, suppress_tokens=self.suppressed,
                                     suppress_blank=False)
        return self.letter_of[result[0].sequences_ids[0][0]]


def clip_bytes(samples: np.ndarray) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


def not_speech() -> dict[str, bytes | str]:
    """Sounds that are not a spoken letter: one second each of four made here, and Gradio's two music clips."""
    import gradio

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    music = Path(gradio.__file__).parent / "media_assets" / "audio"
    return {"440 Hz tone": clip_bytes(0.3 * np.sin(2 * np.pi * 440 * t)),
            "white noise": clip_bytes(0.1 * rng.standard_normal(SAMPLE_RATE)),
            "chirp 200-1000 Hz": clip_bytes(0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t)),
            "C major chord": clip_bytes(sum(0.1 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))),
            **{f"{name} (music)": str(music / name) for name in ("sax.wav", "cantina.wav") if (music / name).is_file()}}


def p50_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path(__file__).resolve().parents[1] / "checkpoints" / "audio")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="record the figures in metrics.json and the card")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_pretrained(args.checkpoint)
    metrics = json.loads((args.checkpoint / "metrics.json").read_text())
    clips, targets = real_letter_clips()
    if not clips:
        raise SystemExit("klettres-data is not installed: `apt-get install klettres-data`")

    whisper = ZeroShotWhisper()
    ours = [model.explain(str(c)) for c in clips]
    daam_right = sum(e.predicted_label == LETTERS[y] for e, y in zip(ours, targets))
    zero_shot_right = sum(whisper(c) == LETTERS[y] for c, y in zip(clips, targets))
    floor = MODALITIES["audio"].min_confidence
    rejected = [no_answer(e) is not None for e in ours]
    real = metrics.get("real_clips") or {}
    n = len(clips)
    print(f"Real human recordings (klettres-data), {n} clips, accuracy:")
    print(f"  DAAM (shipped checkpoint)            {daam_right / n:.4f}  ({daam_right}/{n})")
    print(f"  Whisper tiny.en zero-shot (A-Z only) {zero_shot_right / n:.4f}  ({zero_shot_right}/{n})")
    for name, label in (("daam", "DAAM, mean over seeds"), ("mean_pool_probe", "mean-pool probe, mean over seeds"),
                        ("attention_pool", "attention pool, mean over seeds")):
        if name in real:
            print(f"  {label:<36} {real[name]['mean']:.4f} ± {real[name]['sd']:.4f}  (training run, same clips)")
    wrong_rejected = sum(r and e.predicted_label == LETTERS[y] for r, e, y in zip(rejected, ours, targets))
    print(f"'No spoken letter' (no speech, or top probability < {floor:.0%}): {sum(rejected)}/{n} real clips rejected "
          f"({wrong_rejected} of them named correctly): false rejection rate {sum(rejected) / n:.3f}")
    sounds = {}
    for name, data in not_speech().items():
        e = model.explain(data)
        reason = no_answer(e)
        verdict = f"no spoken letter ({reason})" if reason else f"named {e.predicted_label}"
        sounds[name] = {"speech_probability": round(e.extras.speech_probability, 3),
                        "top_probability": round(max(e.probabilities), 3), "verdict": verdict}
        print(f"  {name:<20} speech probability {e.extras.speech_probability:.3f}, top probability "
              f"{max(e.probabilities):.3f}: {verdict}")

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE  # a 1 s clip with a voiced burst in it
    one_second = clip_bytes(0.3 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12)) * np.hanning(SAMPLE_RATE))
    mel = torch.from_numpy(prepare_audio(one_second).log_mel)[None]
    with torch.no_grad():
        encoder_ms = p50_ms(lambda: model.encoder.model(mel), args.repeats)
    explain_ms = p50_ms(lambda: model.explain(one_second), args.repeats)
    print(f"Latency on a 1 s clip, p50 of {args.repeats}: explain {explain_ms:.1f} ms, bare encoder forward "
          f"{encoder_ms:.1f} ms: explain costs {explain_ms / encoder_ms:.2f}x the encoder")
    prepared = prepare_audio(one_second)
    apart = {}
    for together in (True, False, True, False):  # interleaved: the machine's drift falls on both
        model.encoder.encodes_reference = together  # False: the silenced clip encoded in a pass of its own
        apart.setdefault(together, []).append(p50_ms(lambda: model.explain(prepared), args.repeats))
    del model.encoder.encodes_reference  # the class's own again
    print(f"  the silenced reference encoded in the clip's own batch: explain of the prepared clip "
          f"{min(apart[True]):.1f} ms, in a pass of its own {min(apart[False]):.1f} ms: "
          f"{min(apart[False]) / min(apart[True]):.2f}x faster together")
    if args.write:
        real["whisper_zero_shot"] = {"correct": zero_shot_right, "accuracy": round(zero_shot_right / n, 4),
                                     "command": "python benchmarks/bench_audio.py"}
        real["no_letter_rule"] = {"min_confidence": floor, "speech_probe": "daam/speech_probe.safetensors (python -m daam.fit_speech_probe)",
                                  "rejected": int(sum(rejected)),
                                  "false_rejection_rate": round(sum(rejected) / n, 4), "not_speech": sounds}
        metrics["real_clips"] = real
        metrics["latency_1s_clip"] = {"explain_p50_ms": round(explain_ms, 1), "encoder_p50_ms": round(encoder_ms, 1),
                                      "machine": "the one that ran benchmarks/bench_audio.py"}
        (args.checkpoint / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        from daam.model_card import write_card

        write_card(args.checkpoint, metrics, model.config)
        print(f"wrote the figures into {args.checkpoint / 'metrics.json'} and its model card")


if __name__ == "__main__":
    main()
