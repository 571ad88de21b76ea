"""Spoken English letter names A-Z (ISOLET's task), synthesised offline, and real recordings to test on.

The 26 letter names are spoken by Debian `espeak-ng` (several English languages x every voice
variant x random speed and pitch) and `flite` (its voices of real speakers, also speed-perturbed),
then augmented (silence, band limits, a synthetic room, noise at 30-5 dB SNR, gain) and split by
voice; the test voices are espeak-ng ones. The human recordings in Debian `klettres-data` are a
separate real-speech test set (a HeldOutSet), never used to train or select."""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import SAMPLE_RATE
from ..errors import DataError
from . import SPLIT_SEED, HeldOutSet, Task

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
ESPEAK_LANGUAGES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                    "en-us-nyc"]
KLETTRES = "/usr/share/klettres"  # Debian package klettres-data: en/alpha/A.ogg ..., en_GB/alpha/a.ogg ...


def espeak_variants() -> list[str]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    return sorted({line.split()[3] for line in out.splitlines()[1:] if len(line.split()) >= 4})


def speak_letter(letter: str, language: str, variant: str, speed: int, pitch: int) -> tuple[int, np.ndarray]:
    """One letter name from espeak-ng: (sample rate, mono float32 samples)."""
    import soundfile as sf

    ssml = f'<say-as interpret-as="characters">{letter}</say-as>'  # the letter's name, never a word
    wav = subprocess.run(["espeak-ng", "-m", "-v", f"{language}+{variant}", "-s", str(speed), "-p", str(pitch),
                          "--stdout", ssml], capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return rate, samples


def augment(rate: int, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Recording conditions synthetic voices lack: silence around, band limits, a room, noise, gain."""
    import torchaudio.functional as AF

    x = np.concatenate([np.zeros(int(rng.uniform(0, 0.3) * rate)), samples, np.zeros(int(rng.uniform(0, 0.3) * rate))])
    t = torch.from_numpy(x).float()
    if rng.random() < 0.5:
        # Capped below Nyquist: flite's kal voice is 8 kHz, and a biquad cut-off above Nyquist is unstable.
        t = AF.lowpass_biquad(t, rate, float(min(rng.uniform(2500, 7000), 0.45 * rate)))
    if rng.random() < 0.3:
        t = AF.highpass_biquad(t, rate, float(rng.uniform(80, 400)))
    x = t.numpy()
    if rng.random() < 0.5:  # a synthetic room: exponentially decaying noise as the impulse response
        rt60 = rng.uniform(0.1, 0.6)
        n = int(rt60 * rate)
        response = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
        response[0] = 1.0 / rng.uniform(0.2, 1.0)  # direct sound against reverberation
        # FFT convolution: a direct one costs len(x) x len(response), and was most of the time spent making voices
        x = AF.fftconvolve(torch.from_numpy(x), torch.from_numpy(response / np.abs(response).sum() * 4))[:len(x)].numpy()
    if rng.random() < 0.7:
        snr = rng.choice([30.0, 20.0, 10.0, 5.0])
        noise = rng.standard_normal(len(x))
        if rng.random() < 0.5:  # pink-ish: integrate white noise a little
            noise = np.convolve(noise, np.ones(8) / 8, mode="same")
        speech_power = (x ** 2).mean() + 1e-12
        x = x + noise * np.sqrt(speech_power / (noise ** 2).mean() / 10 ** (snr / 10))
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.05, 0.9)
    return x.astype(np.float32)


def synthesise_voice(job: tuple[str, str, int, int]) -> list[tuple[int, tuple[int, np.ndarray]]]:
    """Every letter in one voice (variant, language), each spoken at a random speed and pitch and augmented."""
    variant, language, copies, seed = job
    rng = np.random.default_rng(seed)
    clips = []
    for label, letter in enumerate(LETTERS):
        rate, samples = speak_letter(letter, language, variant, int(rng.integers(110, 230)), int(rng.integers(15, 85)))
        clips += [(label, (rate, augment(rate, samples, rng))) for _ in range(copies)]
    return clips


# Flite's and Festival's voices are built from recordings of real speakers (CMU ARCTIC, CSTR diphones), so they
# sound unlike espeak-ng's formant synthesis; flite's kal and kal16 are one speaker. flite's rms is kept for
# validation, a second synthesiser to select on.
FLITE_VOICES = {"train": ["kal", "kal16", "awb", "slt"], "val": ["rms"]}
FESTIVAL_VOICES = {"train": ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]}  # Debian festvox-* packages
FESTIVAL_TEXT = {"A": "ay"}  # Festival reads a lone "A" as the article; every other capital as its name


def flite_letter(letter: str, voice: str, stretch: float, pitch_hz: int) -> tuple[int, np.ndarray]:
    """One letter name from flite (a lone capital is spelt out): (sample rate, mono float32 samples)."""
    import soundfile as sf

    wav = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                          "--setf", f"int_f0_target_mean={pitch_hz}", "-t", letter, "-o", "/dev/stdout"],
                         capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return rate, samples


def festival_letter(letter: str, voice: str, stretch: float, pitch_hz: int) -> tuple[int, np.ndarray]:
    """One letter name from Festival's text2wave; its diphone voices keep their pitch (perturb_speaker moves it)."""
    # Headerless 16-bit samples at a rate we set: through a pipe, text2wave's WAV header says 0 samples.
    raw = subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-eval", f"(Parameter.set 'Duration_Stretch {stretch})",
                          "-otype", "raw", "-F", str(SAMPLE_RATE)], input=FESTIVAL_TEXT.get(letter, letter).encode(),
                         capture_output=True, check=True).stdout
    return SAMPLE_RATE, (np.frombuffer(raw, dtype="<i2") / 32768.0).astype(np.float32)


SPEAKERS = {"flite": flite_letter, "festival": festival_letter}  # synthesisers of real speakers' voices


SPEAKER_PERTURBATION = 0.12  # the largest speed change of perturb_speaker, either way


def perturb_speaker(rate: int, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Play the clip up to SPEAKER_PERTURBATION faster or slower: pitch and formants move together, as between speakers."""
    import torchaudio.functional as AF

    factor = rng.uniform(1 - SPEAKER_PERTURBATION, 1 + SPEAKER_PERTURBATION)
    played_at = int(round(rate * factor / 400) * 400)  # a multiple of 400 Hz keeps torchaudio's resampling filter small
    return AF.resample(torch.from_numpy(samples), played_at, rate).numpy()


def synthesise_speaker_voice(job: tuple[str, str, int, int, bool, int]) -> list[tuple[int, tuple[int, np.ndarray]]]:
    """Every letter in one flite or Festival voice, `draws` times at random speed and pitch, `copies` augmented
    copies of each; with `perturb`, each copy is also speaker-perturbed: a few training speakers alone teach few."""
    voice, program, draws, copies, perturb, seed = job
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(draws):
        for label, letter in enumerate(LETTERS):
            rate, samples = SPEAKERS[program](letter, voice, round(rng.uniform(0.75, 1.4), 2), int(rng.integers(80, 230)))
            clips += [(label, (rate, augment(rate, perturb_speaker(rate, samples, rng) if perturb else samples, rng)))
                      for _ in range(copies)]
    return clips


def real_letter_clips(root: Path = Path(KLETTRES)) -> tuple[list[Path], list[int]]:
    """Human recordings of the letters in klettres-data (never used for training or selection)."""
    clips = sorted(root.glob("en/alpha/*.ogg")) + sorted(root.glob("en_GB/alpha/*.ogg"))
    clips = [c for c in clips if c.stem.upper() in LETTERS]
    return clips, [LETTERS.index(c.stem.upper()) for c in clips]


def _run_job(work):
    torch.set_num_threads(1)  # one worker per core
    synthesise, job = work
    return synthesise(job)


def task(args):
    for program, package in (("espeak-ng", "espeak-ng"), ("flite", "flite"),
                             ("text2wave", "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")):
        if shutil.which(program) is None:
            raise DataError(f"{program} not found: `apt-get install {package}` (training voices)")
    variants = espeak_variants()
    random.Random(SPLIT_SEED).shuffle(variants)
    n_val = n_test = max(1, round(0.15 * len(variants)))
    by_split = {"val": variants[:n_val], "test": variants[n_val:n_val + n_test], "train": variants[n_val + n_test:]}
    speaker_voices = {"flite": FLITE_VOICES, "festival": FESTIVAL_VOICES}
    if args.quick:
        by_split = {k: v[:2] for k, v in by_split.items()}
        speaker_voices = {program: {k: v[:1] for k, v in voices.items()} for program, voices in speaker_voices.items()}
    rng = np.random.default_rng(SPLIT_SEED)
    jobs = [(name, synthesise_voice, (variant, str(language), args.augmented_copies if name == "train" else 1,
                                      int(rng.integers(2**31))))
            for name, vs in by_split.items() for variant in vs
            for language in rng.choice(ESPEAK_LANGUAGES, size=args.languages_per_voice, replace=False)]
    speaker_rng = np.random.default_rng(SPLIT_SEED + 1)
    jobs += [(name, synthesise_speaker_voice, (voice, program, args.speaker_draws if name == "train" else args.speaker_draws // 2,
                                               args.augmented_copies if name == "train" else 1, name == "train",
                                               int(speaker_rng.integers(2**31))))
             for program, splits in speaker_voices.items() for name, voices in splits.items() for voice in voices]
    inputs, targets, voices, split = [], [], [], {"train": [], "val": [], "test": []}
    # Each job has its own seed, so the voices come out the same whichever process makes them (up to float rounding
    # in torchaudio's filters, ~1e-7, which depends on the thread count anyway); imap keeps their order.
    # A flite or Festival job takes 10-100x an espeak-ng one (Festival starts anew for every letter): started first,
    # they cannot leave one worker alone with them at the end. The clips are put back in the jobs' order.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][1] is synthesise_voice)
    made = [None] * len(jobs)
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        done = pool.imap(_run_job, [jobs[i][1:] for i in order])
        for i, clips in zip(order, tqdm(done, total=len(jobs), desc="synthesising voices", unit="voice")):
            made[i] = clips
    for (name, _, job), clips in zip(jobs, made):
        for label, clip in clips:
            split[name].append(len(inputs))
            inputs.append(clip)
            targets.append(label)
            voices.append(job[0])  # both kinds of job name their voice first
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.split(" Data at:")[0].strip()  # not this machine's paths
    flite_version = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout.split("version:")[-1].strip()
    task = Task("Spoken English letter names A-Z (ISOLET's task)", LETTERS, inputs, targets, split,
                {"synthesiser": version, "languages": ESPEAK_LANGUAGES, "voices_per_split": by_split,
                 "flite": {"version": flite_version, "voices_per_split": speaker_voices["flite"], "draws": args.speaker_draws},
                 "festival": {"voices_per_split": speaker_voices["festival"], "draws": args.speaker_draws},
                 "languages_per_voice": args.languages_per_voice, "augmented_copies": args.augmented_copies,
                 "examples": len(inputs),
                 "split": {"seed": SPLIT_SEED, "by": "voice: no espeak-ng variant or flite voice is in two splits; "
                                                            "the test voices are espeak-ng ones"}},
                sort_key=lambda clip: len(clip[1]), groups=voices)
    clips, real_targets = real_letter_clips()
    if clips:
        task.held_out["real_clips"] = HeldOutSet(clips, real_targets, f"{KLETTRES}/{{en,en_GB}}/alpha/*.ogg (klettres-data, GPL-2+)")
    else:
        print(f"klettres-data not found under {KLETTRES}: no real-recording figure")
        task.held_out["real_clips"] = None
    return task
