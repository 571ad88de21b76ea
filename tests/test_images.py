"""Image input: decoding every awkward file, the shared preprocessing, the image classifier and its checkpoint.

Pictures are made in the test (no Debian data set, no network)."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from daam import DAAMClassifier, DAAMConfig, Explanation, load_pretrained
from daam.images import MODEL_SIZE, load_image, prepare_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "image"


def garment(dark_on_light: bool = True, size: int = 120) -> Image.Image:
    """A boot-like shape, off-centre, on a plain background."""
    background, ink = (235, 30) if dark_on_light else (0, 220)
    image = Image.new("L", (size, size), background)
    ImageDraw.Draw(image).polygon([(20, 15), (50, 15), (50, 70), (95, 80), (95, 100), (20, 100)], fill=ink)
    return image


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 3.0) -> bool:
    return float(np.abs(a.astype(float) - b.astype(float)).mean()) < tolerance


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return prepare_image(garment())


# ---------------------------------------------------------------------------- preprocessing
def test_photo_and_fashion_mnist_polarity_give_the_same_picture(reference):
    assert reference.shape == (MODEL_SIZE, MODEL_SIZE) and reference.dtype == np.uint8
    assert reference[0, 0] == 0 and reference.max() == 255  # black background, light object
    assert close(prepare_image(garment(dark_on_light=False)), reference, 6)


def test_object_is_cropped_and_centred(reference):
    rows, cols = np.nonzero(reference > 64)
    centre = np.array([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2])
    assert np.abs(centre - MODEL_SIZE / 2).max() < 12
    assert rows.max() - rows.min() > 0.75 * MODEL_SIZE  # it fills the frame, up to the margin


def test_bigger_and_shifted_copies_are_seen_alike(reference):
    big = Image.new("L", (900, 600), 235)
    big.paste(garment().resize((360, 360)), (480, 200))
    seen, expected = prepare_image(big) > 128, reference > 128
    assert (seen & expected).sum() / (seen | expected).sum() > 0.9  # the same shape, give or take an edge pixel


@pytest.mark.parametrize("convert", [
    pytest.param(lambda im: encoded(im.convert("CMYK"), "JPEG", quality=95), id="cmyk-jpeg"),
    pytest.param(lambda im: encoded(im.convert("RGB"), "JPEG", quality=95), id="rgb-jpeg"),
    pytest.param(lambda im: encoded(Image.fromarray((np.asarray(im).astype(np.uint16) * 257)), "PNG"), id="16-bit-png"),
    pytest.param(lambda im: encoded(im.convert("P"), "GIF"), id="palette-gif"),
    pytest.param(lambda im: encoded(im, "WEBP", lossless=True), id="webp"),
    pytest.param(lambda im: encoded(im, "TIFF"), id="tiff"),
    pytest.param(lambda im: encoded(im, "BMP"), id="bmp"),
])
def test_file_formats_and_modes_give_the_same_picture(convert, reference):
    assert close(prepare_image(convert(garment())), reference, 5)  # 5: JPEG's ringing at quality 95


def test_transparency_is_a_light_background(reference):
    # The garment on a fully transparent canvas whose hidden colour is black: alpha must win.
    rgba = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    mask = garment().point(lambda v: 255 if v < 128 else 0)
    rgba.paste((30, 30, 30, 255), mask=mask)
    assert close(prepare_image(encoded(rgba, "PNG")), reference)
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)  # a palette image whose background index is transparent
    palette.info["transparency"] = palette.getpixel((0, 0))
    assert close(prepare_image(encoded(palette, "PNG", transparency=palette.getpixel((0, 0)))), reference)


def test_exif_rotation_is_applied(reference):
    sideways = garment().rotate(90, expand=True)  # stored rotated; orientation 6 says "turn 90° clockwise"
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(sideways.convert("RGB"), "JPEG", quality=95, exif=exif.tobytes())
    assert close(prepare_image(data), reference, 4)
    assert not close(prepare_image(encoded(sideways.convert("RGB"), "JPEG", quality=95)), reference, 4)


def test_animated_gif_uses_its_first_frame(reference):
    frames = [garment().convert("P"), Image.new("L", (120, 120), 235).convert("P")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert close(prepare_image(data), reference)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels: enough for a decoder to try to allocate them."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, message", [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"this is a text file, not a picture\n" * 20, "not an image", id="not-an-image"),
    pytest.param(png_header_only(20000, 20000), "megapixels", id="decompression-bomb"),
    pytest.param(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "SVG", id="svg"),
    pytest.param(encoded(Image.new("L", (1, 1), 200), "PNG"), "nothing stands out", id="1x1"),
    pytest.param(encoded(Image.new("RGB", (64, 64), (240, 240, 240)), "PNG"), "nothing stands out", id="blank"),
])
def test_bad_images_get_a_clear_message(data, message):
    with pytest.raises(ValueError, match=message):
        prepare_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_get_a_clear_message(fmt):
    data = encoded(garment(size=300).convert("RGB"), fmt)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        prepare_image(data[: len(data) // 2])


def test_paths_and_missing_files(tmp_path, reference):
    path = tmp_path / "boot.png"
    garment().save(path)
    assert close(prepare_image(path), reference, 0.01)
    with pytest.raises(ValueError, match="no image file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="cannot read image data"):
        load_image(3.5)


# ---------------------------------------------------------------------------- classifier
def small_image_config() -> DAAMConfig:
    channels = [3, 5]
    return DAAMConfig("image", [f"c{i}" for i in range(4)], num_layers=2, dim=8, layer_heads=2, position_heads=2,
                      adapter={"name": "stage_projection", "kwargs": {"channels": channels, "dim": 8}})


def test_adapter_weights_are_saved_and_loaded(tmp_path):
    torch.manual_seed(0)
    model = DAAMClassifier(small_image_config()).eval()
    features, mask = torch.randn(3, 49, 8), torch.ones(3, 49, dtype=torch.bool)
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert any(k.startswith("adapter.") for k in loaded.state_dict())
    torch.testing.assert_close(loaded(features, mask), model(features, mask), rtol=0, atol=0)
    with torch.no_grad():
        model.adapter.projections[0].weight.add_(1.0)  # the adapter matters to the output
    assert not torch.allclose(loaded(features, mask), model(features, mask))


needs_checkpoint = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no image checkpoint shipped")


@needs_checkpoint
def test_shipped_checkpoint_explains_the_examples():
    model = load_pretrained(SHIPPED)
    examples = sorted((ROOT / "examples").glob("image_fmnist_*.png"))
    assert examples, "examples/image_fmnist_*.png are missing"
    names = {"ankle_boot": "Ankle boot", "trouser": "Trouser", "shirt": "Shirt"}
    correct = 0
    for path in examples:
        e = model.explain(str(path))
        assert e.position_weights.shape == (model.config.position_heads, 49)
        assert e.layer_importance.shape == (model.config.num_layers, model.config.dim)
        assert np.array_equal(e.extras.image, prepare_image(path))  # what the model saw is what training sees
        assert abs(sum(e.probabilities) - 1) < 1e-5
        correct += e.predicted_label == names[path.stem.removeprefix("image_fmnist_")]
    assert correct >= len(examples) - 1


@needs_checkpoint
def test_json_carries_the_seen_image_as_a_lossless_png():
    import viz

    e = load_pretrained(SHIPPED).explain(garment())
    plain = e.to_dict()
    image = plain["extras"]["image"]
    assert image["png"].startswith("data:image/png;base64,") and image["shape"] == [224, 224]
    assert len(image["png"]) < 224 * 224  # a few kB, not 50,176 numbers
    assert np.array_equal(Explanation.from_json(e.to_json()).extras.image, e.extras.image)
    assert np.array_equal(viz.png_array(image["png"]), e.extras.image)  # what viz draws is what the model saw
    with pytest.raises(ValueError, match="PNG data URI"):
        viz.png_array("data:image/jpeg;base64,AAAA")


@needs_checkpoint
def test_encoder_uses_the_shared_preprocessing(monkeypatch):
    """Training and the app both reach pixels only through daam.images.prepare_image."""
    import daam.images

    model = load_pretrained(SHIPPED)
    calls = []
    original = daam.images.prepare_image
    monkeypatch.setattr(daam.images, "prepare_image", lambda source: calls.append(source) or original(source))
    image = garment()
    e = model.explain(image)
    assert calls == [image]
    assert np.array_equal(e.extras.image, original(image))


def test_bulk_encoding_takes_one_batch_size_and_falls_back_to_eager():
    """compile_for_bulk's path: batches of the compiled size only (others stay eager), the eager features' values,
    and where the compiled call fails, a warning and the eager path from then on. The compile itself is stood in
    for by a shape-recording wrapper; benchmarks/bench_encoders.py runs the real one."""
    from daam.modalities.image import ImageEncoder

    encoder = ImageEncoder()
    encoder.compile_for_bulk(3)
    shapes = []
    encoder._bulk = lambda seen: shapes.append(tuple(seen.shape)) or encoder.features(seen)
    pictures = torch.randint(0, 256, (3, 224, 224), generator=torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        eager = encoder.features(pictures)
        assert torch.allclose(encoder._encode(pictures), eager, atol=1e-5)
        assert torch.allclose(encoder._encode(pictures[:2]), eager[:2], atol=1e-5)
        assert shapes == [(3, 224, 224)]

        def broken(seen):
            raise RuntimeError("no compiler")

        encoder._bulk = broken
        with pytest.warns(RuntimeWarning, match="compiling the image encoder failed"):
            assert torch.allclose(encoder._encode(pictures), eager, atol=1e-5)
        assert encoder._bulk is None


def test_a_run_compiles_its_encoder_only_for_bulk_work(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import daam.features
    from daam.data import Task
    from daam.encoders import Encoded

    class Recording(torch.nn.Module):
        position_axis = 1

        def __init__(self):
            super().__init__()
            self.compiled_for = []

        def compile_for_bulk(self, batch_size):
            self.compiled_for.append(batch_size)

        def forward(self, items):
            n = len(items)
            return Encoded(torch.zeros(n, 2, 3), torch.ones(n, 2, dtype=torch.bool), [["a", "b"]] * n, [""] * n, [None] * n)

    def task(n: int) -> Task:
        return Task("toy", ["a"], list(range(n)), [0] * n, {}, {})

    monkeypatch.setattr(daam.features, "BULK_COMPILE_FROM", 5)
    few, many = Recording(), Recording()
    config, args = SimpleNamespace(encoder={}, preprocessing={}), SimpleNamespace(cache_dir=str(tmp_path))
    daam.features.features_for(task(4), few, config, args, batch_size=2)
    cache = daam.features.features_for(task(5), many, config, args, batch_size=2)
    assert few.compiled_for == [] and many.compiled_for == [2]
    assert [cache.length(i) for i in range(5)] == [2] * 5
