"""`python -m daam.fit_speech_probe`: fit the speech probe (daam.speech) and print its figures.

Speech: the letters spoken by 12 espeak-ng variants and 3 flite voices, augmented as for the letter classifier.
Not speech: `sounds`, clips of nine families made here. A fifth of both is held out to validate; the shipped probe
is then fitted on all of them and written to daam/speech_probe.safetensors. Tested, never fitted, on klettres-data's
real letter clips, on sounds from another seed, and on the two music clips that come with Gradio."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from .data.spoken_letters import LETTERS, augment, espeak_variants, flite_letter, real_letter_clips, speak_letter
from .modalities.audio import SpeechEncoder
from .speech import PROBE_PATH, SAMPLE_RATE, clip_summary, fit


def sounds(n: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """n clips of 0.5-3 s that are not speech, each from one of nine families, at a random level."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = np.arange(int(rng.uniform(0.5, 3.0) * SAMPLE_RATE)) / SAMPLE_RATE
        family = i % 9
        if family == 0:  # a tone with a few harmonics
            f = rng.uniform(80, 3000)
            x = sum(rng.uniform(0, 1 / k) * np.sin(2 * np.pi * f * k * t) for k in range(1, int(rng.integers(1, 5)) + 1))
        elif family == 1:  # a chord
            x = sum(np.sin(2 * np.pi * rng.uniform(100, 1500) * t) for _ in range(int(rng.integers(2, 5))))
        elif family == 2:  # a chirp
            f0, f1 = rng.uniform(100, 4000, 2)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1])))
        elif family == 3:  # white, pink-ish or brown-ish noise
            x = rng.standard_normal(len(t))
            for _ in range(int(rng.integers(0, 3))):
                x = np.cumsum(x) * 0.05 + x * 0.5
        elif family == 4:  # beeps
            x = np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * (np.sin(2 * np.pi * rng.uniform(1, 8) * t) > 0)
        elif family == 5:  # clicks
            x = np.zeros(len(t))
            x[rng.integers(0, len(t), int(rng.integers(3, 40)))] = 1.0
            x = np.convolve(x, np.exp(-np.arange(200) / 30.0))[: len(t)]
        elif family == 6:  # mains hum
            f = rng.choice([50.0, 60.0])
            x = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 8))
        elif family == 7:  # a melody: notes of a harmonic instrument with vibrato and an attack-decay envelope
            notes = rng.uniform(110, 880, int(rng.integers(2, 8)))
            which = np.minimum((t / t[-1] * len(notes)).astype(int), len(notes) - 1)
            f = notes[which] * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
            phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
            within = (t * len(notes) / t[-1]) % 1
            x = sum(rng.uniform(0.2, 1) / k * np.sin(k * phase) for k in range(1, int(rng.integers(3, 12))))
            x = x * np.minimum(within * 20, 1) * np.exp(-within * rng.uniform(0.5, 3))
        else:  # a noise burst through a resonance
            x = np.convolve(rng.standard_normal(len(t)) * np.exp(-t * rng.uniform(2, 10)),
                            np.sin(2 * np.pi * rng.uniform(200, 2000) * np.arange(400) / SAMPLE_RATE)
                            * np.exp(-np.arange(400) / 80.0))[: len(t)]
        x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.05, 0.9)
        out.append((SAMPLE_RATE, x.astype(np.float32)))
    return out


@torch.no_grad()
def summarise(encoder, clips: list, batch: int = 32) -> torch.Tensor:
    out = []
    for start in range(0, len(clips), batch):
        encoded = encoder(clips[start:start + batch])
        out.append(clip_summary(encoded.features, encoded.mask))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file


    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", type=int, default=12, help="espeak-ng variants speaking every letter")
    parser.add_argument("--sounds", type=int, default=720, help="synthetic non-speech clips")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    variants = espeak_variants()[: args.voices]
    speech = [(r, augment(r, x, rng)) for v in variants for r, x in (speak_letter(L, "en", v, 170, 50) for L in LETTERS)]
    speech += [(r, augment(r, x, rng)) for voice in ("kal", "awb", "slt") for r, x in
               (flite_letter(L, voice, 1.0, 110) for L in LETTERS)]
    noise = sounds(args.sounds, seed=0)
    encoder = SpeechEncoder()
    x = summarise(encoder, speech + noise)
    y = torch.cat([torch.ones(len(speech)), torch.zeros(len(noise))])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    val, train = order[: len(y) // 5], order[len(y) // 5:]
    probe = fit(x[train], y[train])
    with torch.no_grad():
        val_accuracy = float(((probe.probability(x[val]) >= 0.5) == y[val].bool()).float().mean())
    print(f"fitted on {len(train)} clips; validation accuracy {val_accuracy:.4f} on {len(val)} held-out clips")
    probe = fit(x, y)  # the shipped probe uses every fitting clip
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, str(PROBE_PATH))
    print(f"wrote {PROBE_PATH}")

    clips, _ = real_letter_clips()
    if clips:
        p = probe.probability(summarise(encoder, [str(c) for c in clips]))
        print(f"real letter clips (klettres-data, {len(clips)}): {int((p < 0.5).sum())} wrongly rejected")
    other = sounds(160, seed=1)
    p = probe.probability(summarise(encoder, other))
    print(f"sounds from another seed ({len(other)}): {int((p >= 0.5).sum())} wrongly accepted as speech")
    import gradio

    for name in ("sax.wav", "cantina.wav"):
        music = Path(gradio.__file__).parent / "media_assets" / "audio" / name
        if music.is_file():
            print(f"{name} (music shipped with Gradio): speech probability "
                  f"{float(probe.probability(summarise(encoder, [str(music)]))[0]):.3f}")


if __name__ == "__main__":
    main()
