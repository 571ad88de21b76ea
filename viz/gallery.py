"""`python -m viz.gallery OUTDIR`: one HTML page with every figure of each example explanation.

Reads examples/*.json (Explanation JSON, as written by Explanation.to_json()) and writes
OUTDIR/index.html with plotly.js inlined once, so the page works offline."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import plotly.graph_objects as go

from .explanation import explanation_figures

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def build_gallery(out_dir: Path, sources: list[Path]) -> Path:
    if not sources:
        raise ValueError("no example explanations (*.json) to draw")
    parts, first = [], True
    for path in sources:
        data = json.loads(path.read_text())
        parts.append(f"<h2>{html.escape(path.stem)} — {html.escape(data['modality'])}: "
                     f"predicted <em>{html.escape(str(data['predicted_label']))}</em></h2>")
        for name, fig in explanation_figures(data).items():
            if isinstance(fig, go.Figure):
                parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if first else False,
                                         div_id=f"{path.stem}-{name}", config={"responsive": True}))
                first = False
            else:
                parts.append(f'<section id="{path.stem}-{name}">{fig}</section>')
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'><title>DAAM Lens gallery</title>"
                    "<style>body{font-family:Inter,Helvetica,Arial,sans-serif;max-width:960px;margin:auto;padding:1em}"
                    "</style></head><body><h1>DAAM Lens — figure gallery</h1>" + "\n".join(parts) + "</body></html>")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m viz.gallery", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--examples", type=Path, default=EXAMPLES)
    args = parser.parse_args()
    page = build_gallery(args.out_dir, sorted(args.examples.glob("*.json")))
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
