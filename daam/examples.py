"""`python -m daam.examples`: write example Explanations (JSON) from the shipped checkpoints.

The gallery (`python -m viz.gallery`) and the app's examples read them from examples/."""

from __future__ import annotations

from pathlib import Path

from .hub import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
TEXT_EXAMPLES = {
    "text_fresh": "A warm, funny and beautifully acted film that earns every one of its tears.",
    "text_rotten": "The jokes fall flat, the plot makes no sense and the ending drags on forever.",
    "text_mixed": "Gorgeous to look at, but the story is thin and the second half is a slog.",
}


def main() -> None:
    out = ROOT / "examples"
    out.mkdir(exist_ok=True)
    model = load_pretrained(ROOT / "checkpoints" / "text")
    for name, text in TEXT_EXAMPLES.items():
        (out / f"{name}.json").write_text(model.explain(text).to_json())
        print(f"wrote examples/{name}.json")


if __name__ == "__main__":
    main()
