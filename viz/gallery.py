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
        parts.append(figures_html(explanation_figures(data), id_prefix=path.stem, include_plotlyjs=first))
        first = False
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text(html_page("DAAM Lens — figure gallery", "\n".join(parts)))
    return page


def figures_html(figures: dict, id_prefix: str, include_plotlyjs: bool = True) -> str:
    """Figures (and HTML strings) as one HTML fragment; plotly.js inlined when asked, so it works offline."""
    parts = []
    for name, fig in figures.items():
        if isinstance(fig, go.Figure):
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if include_plotlyjs else False,
                                     div_id=f"{id_prefix}-{name}", config={"responsive": True}))
            include_plotlyjs = False
        else:
            parts.append(f'<section id="{id_prefix}-{name}">{fig}</section>')
    return "\n".join(parts)


def html_page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:Inter,Helvetica,Arial,sans-serif;max-width:960px;margin:auto;padding:1em}"
            "</style></head><body><h1>" + html.escape(title) + "</h1>" + body + "</body></html>")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m viz.gallery", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--examples", type=Path, default=EXAMPLES)
    args = parser.parse_args()
    page = build_gallery(args.out_dir, sorted(args.examples.glob("*.json")))
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
