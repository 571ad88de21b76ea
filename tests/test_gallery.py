"""The gallery renders in a real headless Chromium: no JavaScript errors, a non-blank screenshot."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import chromium_page
from viz.gallery import EXAMPLES, build_gallery


@pytest.mark.browser
def test_gallery_renders_every_example_without_errors(tmp_path):
    sources = sorted(EXAMPLES.glob("*.json"))
    assert sources, "examples/ should hold example explanations"
    page_path = build_gallery(tmp_path, sources)
    with chromium_page() as (page, errors):
        page.goto(page_path.as_uri())
        page.wait_for_selector(".plotly .main-svg", timeout=30000)
        plots = page.locator(".js-plotly-plot").count()
        shot = page.screenshot(full_page=True)
    assert errors == []
    expected = sum(len(json.loads(p.read_text())["density"]) + 3 for p in sources)  # prediction, positions, importance + densities
    assert plots >= expected
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=float)
    assert pixels.std() > 10, "the screenshot is blank"
    (Path(tmp_path) / "gallery.png").write_bytes(shot)
