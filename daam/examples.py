"""`python -m daam.examples`: the example inputs in examples/ and their Explanations (JSON).

Inputs: three pictures of clothing drawn here (dark on a light background, like a photo), a few
Fashion-MNIST test images (needs Debian `dataset-fashion-mnist`), letters spoken by espeak-ng
voices the audio checkpoint never trained on (needs `espeak-ng`) and two human recordings from
klettres-data (GPL-2+, see examples/ATTRIBUTION.md). Missing sources are skipped with a note.
The app's example lists and the viz gallery (`python -m viz.gallery`) read examples/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import DataError
from .model import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples"
TEXT_EXAMPLES = {
    "text_fresh": "A warm, funny and beautifully acted film that earns every one of its tears.",
    "text_rotten": "The jokes fall flat, the plot makes no sense and the ending drags on forever.",
    "text_mixed": "Gorgeous to look at, but the story is thin and the second half is a slog.",
}
FASHION_ITEMS = {"image_fmnist_ankle_boot": 0, "image_fmnist_trouser": 2, "image_fmnist_shirt": 4}  # test-set indices
SPOKEN = {"audio_espeak_b": ("B", "en-us", "Alicia"), "audio_espeak_q": ("Q", "en-gb-x-rp", "Quincy")}  # test voices
KLETTRES_CLIPS = {"audio_klettres_en_gb_m": "en_GB/alpha/m.ogg", "audio_klettres_en_w": "en/alpha/W.ogg"}
# What each example file is, with the answer a person would give: the app's example buttons.
EXAMPLE_LABELS = {
    "image_drawn_tshirt": "T-shirt/top · drawn, photo-like", "image_drawn_trousers": "Trouser · drawn, photo-like",
    "image_drawn_handbag": "Bag · drawn, photo-like", "image_fmnist_ankle_boot": "Ankle boot · Fashion-MNIST test",
    "image_fmnist_trouser": "Trouser · Fashion-MNIST test", "image_fmnist_shirt": "Shirt · Fashion-MNIST test",
    **{stem: f"spoken {letter} · espeak-ng voice {voice}" for stem, (letter, _, voice) in SPOKEN.items()},
    **{stem: f"spoken {Path(clip).stem.upper()} · real voice (KLettres)" for stem, clip in KLETTRES_CLIPS.items()},
}


def example_inputs(modality: str) -> list:
    """The shipped examples of a modality, as explain() takes them: sentences, or paths of the files."""
    if modality == "text":
        return list(TEXT_EXAMPLES.values())
    return [str(p) for p in sorted(OUT.glob(f"{modality}_*")) if p.suffix not in (".json", ".md")]


def example_label(path: Path) -> str:
    """An example file's button label: what it is and the expected answer (its file name if unknown)."""
    return EXAMPLE_LABELS.get(Path(path).stem, Path(path).name)


def _canvas(size: int = 360) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A light, slightly uneven background, as a phone photo of a garment on a sheet would have."""
    y, x = np.mgrid[0:size, 0:size]
    shade = 232 - 18 * (x + y) / (2 * size) + np.random.default_rng(size).normal(0, 2, (size, size))
    image = Image.fromarray(np.clip(shade, 0, 255).astype(np.uint8)).convert("RGB")
    return image, ImageDraw.Draw(image)


def draw_tshirt() -> Image.Image:
    image, draw = _canvas()
    draw.polygon([(120, 70), (150, 60), (180, 78), (210, 60), (240, 70), (300, 120), (270, 160), (245, 140),
                  (245, 300), (115, 300), (115, 140), (90, 160), (60, 120)], fill=(40, 60, 110))
    draw.arc((150, 45, 210, 95), 20, 160, fill=(230, 230, 230), width=4)  # the collar seam
    return image.filter(ImageFilter.GaussianBlur(1.2))


def draw_trousers() -> Image.Image:
    image, draw = _canvas()
    draw.polygon([(130, 40), (230, 40), (250, 320), (200, 320), (182, 120), (178, 120), (160, 320), (110, 320)],
                 fill=(70, 55, 45))
    draw.line((130, 52, 230, 52), fill=(120, 100, 80), width=3)  # waistband
    return image.filter(ImageFilter.GaussianBlur(1.2))


def draw_handbag() -> Image.Image:
    image, draw = _canvas()
    draw.arc((130, 60, 230, 190), 180, 360, fill=(30, 30, 30), width=12)  # the handle
    draw.rounded_rectangle((80, 125, 280, 290), radius=18, fill=(25, 25, 30))
    draw.rectangle((170, 160, 190, 180), fill=(200, 180, 90))  # the clasp
    return image.filter(ImageFilter.GaussianBlur(1.2))


def write_inputs() -> None:
    OUT.mkdir(exist_ok=True)
    for name, draw in (("image_drawn_tshirt", draw_tshirt), ("image_drawn_trousers", draw_trousers),
                       ("image_drawn_handbag", draw_handbag)):
        draw().save(OUT / f"{name}.png")
    try:
        from .data.fashion_mnist import ROOT as FASHION_MNIST, read_idx

        images, _ = read_idx(Path(FASHION_MNIST), "t10k")
        for name, index in FASHION_ITEMS.items():
            Image.fromarray(images[index]).save(OUT / f"{name}.png")
    except DataError as missing:
        print(f"skipped Fashion-MNIST examples: {missing}")
    if shutil.which("espeak-ng"):
        import soundfile as sf

        from .data.spoken_letters import speak_letter

        for name, (letter, language, variant) in SPOKEN.items():
            rate, samples = speak_letter(letter, language, variant, 150, 50)
            sf.write(OUT / f"{name}.wav", samples, rate)
    else:
        print("skipped espeak-ng examples: `apt-get install espeak-ng`")
    for name, relative in KLETTRES_CLIPS.items():
        source = Path("/usr/share/klettres") / relative
        if source.is_file():
            shutil.copyfile(source, OUT / f"{name}.ogg")
        else:
            print(f"skipped {source}: `apt-get install klettres-data`")


def write_explanations() -> None:
    inputs = {"text": dict(TEXT_EXAMPLES),
              "image": {p.stem: p for p in sorted(OUT.glob("image_*.png"))},
              "audio": {p.stem: p for p in sorted(OUT.glob("audio_*")) if p.suffix in (".wav", ".ogg")}}
    for modality, items in inputs.items():
        checkpoint = ROOT / "checkpoints" / modality
        if not (checkpoint / "config.json").is_file():
            print(f"no {modality} checkpoint: skipped its explanations")
            continue
        model = load_pretrained(checkpoint)
        for name, item in items.items():
            explanation = model.explain(str(item) if isinstance(item, Path) else item)
            (OUT / f"{name}.json").write_text(explanation.to_json())
            print(f"wrote examples/{name}.json: {explanation.predicted_label}")
    summary = {p.stem: json.loads(p.read_text())["predicted_label"] for p in sorted(OUT.glob("*.json"))}
    print(json.dumps(summary, indent=1))


def main() -> None:
    write_inputs()
    write_explanations()


if __name__ == "__main__":
    main()
