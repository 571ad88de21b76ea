"""The bad-input matrix, through the named API of a running app.

Every input gets an Explanation or a clear message, within 30 s, and the server keeps answering."""

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_audio import voiced, wav
from test_images import encoded, garment, png_header_only

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 30


def call(app_url, endpoint: str, value):
    """(answer or None, message or None, seconds)."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    started = time.perf_counter()
    try:
        return client.predict(value, api_name=endpoint), None, time.perf_counter() - started
    except AppError as error:
        return None, str(error), time.perf_counter() - started


def check(answer, message, seconds, expect: str | None):
    """expect None: an Explanation; otherwise a message containing `expect`."""
    assert seconds < LIMIT_S
    if expect is None:
        assert message is None, message
        assert abs(sum(answer["probabilities"]) - 1) < 1e-4 and answer["predicted_label"] in answer["labels"]
    else:
        assert answer is None and message is not None and expect in message, message
        assert "Traceback" not in message


TEXTS = {
    "empty": ("", "empty"),
    "whitespace": (" \t\n  ", "empty"),
    "one-megabyte": ("word " * 200_000, "limit is 50,000"),
    "right-to-left": ("هذا الفيلم رائع حقا، أنصح به بشدة", None),
    "hebrew": ("סרט נפלא ומרגש", None),
    "zero-width": ("\u200b\u200c\u200d\ufeff", None),
    "emoji-only": ("😀🎬🍿👍", None),
    "control-characters": ("great\x00film\x07with\x1bescapes\r\n", None),
    "mixed-scripts": ("Great фильм 素晴らしい película", None),
}


@pytest.mark.parametrize("name", TEXTS)
def test_text(app_url, name):
    text, expect = TEXTS[name]
    check(*call(app_url, "/explain_text", text), expect)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(garment().rotate(90, expand=True).convert("RGB"), "JPEG", exif=exif.tobytes())


def _palette_with_transparency() -> bytes:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((20, 20, 20, 255), (16, 8, 48, 56))
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    return encoded(palette, "PNG", transparency=palette.getpixel((0, 0)))


def _animated_gif() -> bytes:
    frames = [garment().convert("P"), Image.new("L", (120, 120), 235).convert("P")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


IMAGES = {  # name -> (file name, bytes, expected message or None)
    "not-an-image": ("notes.png", b"just some text\n" * 50, "not an image"),
    "truncated-png": ("cut.png", _half(encoded(garment(size=300).convert("RGB"), "PNG")), "truncated or corrupt"),
    "truncated-jpeg": ("cut.jpg", _half(encoded(garment(size=300).convert("RGB"), "JPEG")), "truncated or corrupt"),
    "decompression-bomb": ("bomb.png", png_header_only(20000, 20000), "megapixels"),
    "one-pixel": ("dot.png", encoded(Image.new("L", (1, 1), 128), "PNG"), "nothing stands out"),
    "cmyk-jpeg": ("cmyk.jpg", encoded(garment().convert("CMYK"), "JPEG"), None),
    "16-bit-png": ("deep.png", encoded(Image.fromarray(np.asarray(garment()).astype(np.uint16) * 257), "PNG"), None),
    "palette-transparency": ("palette.png", _palette_with_transparency(), None),
    "exif-rotated": ("rotated.jpg", _exif_rotated(), None),
    "animated-gif": ("animated.gif", _animated_gif(), None),
    "svg": ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', "SVG"),
}


def _uploaded(tmp_path: Path, name: str, data: bytes):
    from gradio_client import handle_file

    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


@pytest.mark.parametrize("name", IMAGES)
def test_image(app_url, tmp_path, name):
    if not (ROOT / "checkpoints" / "image" / "config.json").is_file():
        pytest.skip("no image checkpoint")
    filename, data, expect = IMAGES[name]
    check(*call(app_url, "/explain_image", _uploaded(tmp_path, filename, data)), expect)


AUDIO = {
    "zero-length": ("empty.wav", wav(np.zeros(0, np.float32), 16_000), "no samples"),
    "50-ms": ("short.wav", wav(voiced(16_000, 0.05, 0.0, 0.05), 16_000), "at least 100 ms"),
    "silence": ("quiet.wav", wav(np.zeros(48_000, np.float32), 16_000), "no speech found"),
    "ten-minutes": ("long.wav", wav(0.2 * voiced(8_000, 600.0, 1.0, 598.0), 8_000), None),
    "8-khz": ("phone.wav", wav(voiced(8_000, 1.5, 0.4), 8_000), None),
    "96-khz": ("studio.wav", wav(voiced(96_000, 1.5, 0.4), 96_000), None),
    "six-channels": ("surround.wav", wav(voiced(16_000, 1.5, 0.4, channels=6), 16_000), None),
    "corrupt": ("broken.wav", wav(voiced(16_000, 1.5, 0.4), 16_000)[:44] + bytes(range(256)) * 8, None),
    "not-audio-named-wav": ("fake.wav", b"definitely not a RIFF file" * 40, "not audio"),
}


@pytest.mark.parametrize("name", AUDIO)
def test_audio(app_url, tmp_path, name):
    if not (ROOT / "checkpoints" / "audio" / "config.json").is_file():
        pytest.skip("no audio checkpoint")
    filename, data, expect = AUDIO[name]
    answer, message, seconds = call(app_url, "/explain_audio", _uploaded(tmp_path, filename, data))
    if name == "corrupt":  # a valid header over garbage samples: noise to analyse, or a message; never a crash
        assert seconds < LIMIT_S and (answer is not None or "Traceback" not in message)
        return
    check(answer, message, seconds, expect)


def test_server_still_answers_after_the_matrix(app_url):
    answer, message, _ = call(app_url, "/explain_text", "A charming, clever film.")
    assert message is None and answer["predicted_label"] in ("fresh", "rotten")


def test_server_side_paths_are_never_opened(app_url, tmp_path):
    """A request naming a file on the server (not uploaded through Gradio) is refused before the handler runs."""
    import json
    import urllib.request

    if not (ROOT / "checkpoints" / "image" / "config.json").is_file():
        pytest.skip("no image checkpoint")
    planted = tmp_path / "valid.png"
    garment().save(planted)  # a perfectly good image: only the path makes it unacceptable
    endpoint = app_url + "gradio_api/call/explain_image"
    for path in (str(planted), "/etc/passwd", str(ROOT / "examples" / "image_drawn_tshirt.png")):
        body = json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}).encode()
        request = urllib.request.Request(endpoint, data=body, headers={"Content-Type": "application/json"})
        event = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
        stream = urllib.request.urlopen(f"{endpoint}/{event}", timeout=30).read().decode()
        assert stream.startswith("event: error") and "predicted_label" not in stream, stream[:300]
