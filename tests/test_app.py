"""The app, running: named API against explain() called directly, and real browser sessions."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from browser import chromium_page
from daam import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_binds_to_loopback_by_default(app_url):
    assert app_url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_explain_text_endpoint_matches_explain_called_directly(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    sentence = "Smart, funny and surprisingly moving."
    answer = client.predict(sentence, api_name="/explain_text")
    direct = load_pretrained(ROOT / "checkpoints" / "text").explain(sentence)
    assert answer["predicted_label"] == direct.predicted_label
    assert answer["position_labels"] == direct.position_labels
    np.testing.assert_allclose(answer["probabilities"], direct.probabilities, atol=1e-5)
    np.testing.assert_allclose(answer["position_weights"], direct.position_weights, atol=1e-5)
    np.testing.assert_allclose(answer["layer_importance"], direct.layer_importance, atol=1e-5)


@pytest.mark.slow
def test_bad_text_gets_a_clear_message_and_the_app_keeps_serving(app_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="empty"):
        client.predict("   ", api_name="/explain_text")
    with pytest.raises(AppError, match="limit is 50,000"):
        client.predict("word " * 20_000, api_name="/explain_text")
    assert client.predict("Great.", api_name="/explain_text")["predicted_label"] in ("fresh", "rotten")


EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("modality, example", [("image", "image_drawn_trousers.png"), ("audio", "audio_espeak_b.wav")])
@pytest.mark.slow
def test_file_endpoints_match_explain_called_directly(app_url, modality, example):
    from gradio_client import Client, handle_file

    if not (ROOT / "checkpoints" / modality / "config.json").is_file():
        pytest.skip(f"no {modality} checkpoint")
    client = Client(app_url, verbose=False)
    answer = client.predict(handle_file(str(EXAMPLES / example)), api_name=f"/explain_{modality}")
    direct = load_pretrained(ROOT / "checkpoints" / modality).explain(str(EXAMPLES / example))
    assert answer["modality"] == modality and answer["predicted_label"] == direct.predicted_label
    np.testing.assert_allclose(answer["probabilities"], direct.probabilities, atol=1e-5)
    np.testing.assert_allclose(answer["position_weights"], direct.position_weights, atol=1e-5)
    np.testing.assert_allclose(answer["layer_importance"], direct.layer_importance, atol=1e-5)


@pytest.mark.parametrize("modality, content, message", [
    ("image", b"plain text, not a picture", "not an image"),
    ("audio", b"RIFF....WAVE but not audio at all", "not audio"),
])
@pytest.mark.slow
def test_bad_files_get_a_clear_message_and_the_app_keeps_serving(app_url, tmp_path, modality, content, message):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    if not (ROOT / "checkpoints" / modality / "config.json").is_file():
        pytest.skip(f"no {modality} checkpoint")
    bad = tmp_path / ("bad.png" if modality == "image" else "bad.wav")
    bad.write_bytes(content)
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(bad)), api_name=f"/explain_{modality}")
    assert client.predict("Great.", api_name="/explain_text")["predicted_label"] in ("fresh", "rotten")


RESULT_SHOWN = "/(fresh|rotten) \\(/.test(document.querySelector('#text-summary').innerText)"


def explain_sentence(page, text: str, submit: str = "click") -> None:
    """Type a sentence, explain it (the Explain button, or Enter), and wait until its result is drawn."""
    page.locator("#text-input textarea").fill(text)
    if submit == "enter":
        page.locator("#text-input textarea").press("Enter")
    else:
        page.locator("#explain-text").click()
    page.wait_for_function(RESULT_SHOWN, timeout=60000)
    page.wait_for_selector("#text-positions .main-svg", timeout=30000)
    page.wait_for_timeout(500)  # a click while the last event is still finishing is ignored (trigger_mode "once")


@pytest.mark.browser
def test_browser_explains_a_sentence(app_url, tmp_path):
    with chromium_page(1200, 1000) as (page, errors):
        page.goto(app_url)
        explain_sentence(page, "A warm and wonderful film.")
        summary = page.locator("#text-summary").inner_text()
        ticks = page.locator("#text-positions .xtick text").all_text_contents()
        downloads_before = page.locator("#text-downloads").count()  # no empty download box before an export
        page.get_by_role("button", name="Export JSON and figures").click()
        page.wait_for_function("/explanation\\s*\\.json[\\s\\S]*figures\\s*\\.html/.test("
                               "(document.querySelector('#text-downloads') || {innerText: ''}).innerText)", timeout=30000)
        page.screenshot(path=str(tmp_path / "text.png"), full_page=True)
    assert "warm" in ticks and "wonderful" in ticks
    assert "fresh" in summary or "rotten" in summary
    assert downloads_before == 0
    assert errors == []


@pytest.mark.browser
def test_browser_runs_the_deletion_test_on_the_sentence(app_url):
    with chromium_page(1200, 1000) as (page, errors):
        page.goto(app_url)
        page.locator("#text-input textarea").fill("The jokes fall flat and the plot makes no sense.")
        page.get_by_text("Can I trust this?").click()
        page.locator("#text-trust").click()
        page.wait_for_function("document.querySelector('#text-trust-verdict').innerText.includes('random')",
                               timeout=60000)
        verdict = page.locator("#text-trust-verdict").inner_text()
    assert "Removing the 20% most relevant words lowers the probability of rotten" in verdict
    assert errors == []


@pytest.mark.browser
def test_browser_explains_an_uploaded_image(app_url, tmp_path):
    if not (ROOT / "checkpoints" / "image" / "config.json").is_file():
        pytest.skip("no image checkpoint")
    with chromium_page(1200, 1200) as (page, errors):
        page.goto(app_url)
        page.get_by_role("tab", name="Image").click()
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "image_drawn_tshirt.png"))
        page.wait_for_selector("#image-input img", timeout=30000)
        page.locator("#explain-image").click()
        page.wait_for_selector("#image-positions .main-svg", timeout=60000)
        page.wait_for_selector("#image-seen img", timeout=30000)
        summary = page.locator("#image-summary").inner_text()
        page.screenshot(path=str(tmp_path / "image.png"), full_page=True)
    assert "%" in summary
    assert errors == []


@pytest.mark.browser
def test_browser_playground_switches_to_product_and_shows_the_collapse(app_url, tmp_path):
    with chromium_page(1200, 1000) as (page, errors):
        page.goto(app_url)
        page.get_by_role("tab", name="Playground").click()
        page.wait_for_function("document.querySelector('#playground-verdict').innerText.includes('peaks')",
                               timeout=60000)
        mixture = page.locator("#playground-verdict").inner_text()
        page.locator("#mode").get_by_text("product").click()
        page.wait_for_function("document.querySelector('#playground-verdict').innerText.includes('one Gaussian')",
                               timeout=30000)
        product = page.locator("#playground-verdict").inner_text()
        page.wait_for_selector("#playground-curve .main-svg")
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert "3 peaks" in mixture  # the scratch start: a density on each of the sample's modes and one at z = 3
    assert "one Gaussian" in product and "practically zero" in product  # its modes far apart: the product keeps nothing
    assert errors == []


def test_export_writes_json_and_offline_html_and_prunes_old_exports(monkeypatch):
    from ui import explain_tab, serving

    monkeypatch.setattr(explain_tab, "KEEP_EXPORTS", 2)
    explanation = serving.endpoint("explain", "text")("A lovely film.")
    for _ in range(4):
        json_path, html_path = explain_tab.export(explanation)
    assert json.loads(Path(json_path).read_text())["predicted_label"] == explanation["predicted_label"]
    page = Path(html_path).read_text()
    assert "export-positions" in page and "plotly" in page.lower()
    assert len(list(explain_tab.EXPORTS.iterdir())) <= 3  # the kept ones plus the newest


def test_playground_starts_from_a_checkpoint_head_or_from_scratch():
    from ui import playground_tab

    label = next(k for k in playground_tab.playground_heads() if k.startswith("text: positions"))
    attention, head = playground_tab.playground_heads()[label]
    p = attention.density_parameters()
    values = playground_tab.playground_start(label)
    np.testing.assert_allclose(values[:3], np.clip(p["offsets"][head].numpy(), -4, 4), atol=0.005)
    np.testing.assert_allclose(values[3:6], np.clip(p["scales"][head].numpy(), 0.05, 3), atol=0.005)
    np.testing.assert_allclose(values[6:], np.clip(p["weights"][head].numpy(), 0.001, 1), atol=0.005)
    assert all(v == round(v, 2) for v in values)  # the sliders' step: no long floats on screen
    scratch = [v for name in ("offset", "scale", "weight") for v in playground_tab.SCRATCH[name]]
    assert playground_tab.playground_start(playground_tab.FROM_SCRATCH) == scratch


def test_playground_default_keeps_both_modes_of_the_sample_and_a_vanished_gate_is_called_so():
    from ui import playground_tab
    from daam.playground import SAMPLE, shape_head

    start = playground_tab.playground_start(playground_tab.FROM_SCRATCH)
    shaped = shape_head("mixture", start[:3], start[3:6], start[6:])
    z = shaped.z
    low_mode, high_mode = np.median(z[: 700]), np.median(z[700:])  # SAMPLE's two clusters, standardised
    valley = (low_mode + high_mode) / 2
    gate_at = lambda v: shaped.gate[np.argmin(np.abs(z - v))]  # noqa: E731
    assert gate_at(low_mode) > 2 * gate_at(valley) and gate_at(high_mode) > 2 * gate_at(valley)
    assert len(SAMPLE) == 1200
    text, _, _ = playground_tab.playground("product", -2, 0, 2, 0.1, 0.1, 0.1, 1, 1, 1)  # narrow factors far apart
    assert "practically zero" in text and "peak 1" not in text


def test_slow_requests_get_a_message_instead_of_hanging(monkeypatch):
    import gradio as gr

    from ui import serving

    monkeypatch.setattr(serving, "REQUEST_TIMEOUT_S", 0.2)
    slow = serving.user_errors(lambda: time.sleep(2))
    started = time.perf_counter()
    with pytest.raises(gr.Error, match="longer than 0.2 s"):
        slow()
    assert time.perf_counter() - started < 1.5
    assert serving.user_errors(lambda: "quick")() == "quick"


class RecordingModel:
    """explain_batch records each batch; the first waits until released, so that others queue behind it; an input
    "bad" makes any batch holding it fail, as an input that fails in the model does."""

    def __init__(self) -> None:
        import threading

        self.batches, self.release = [], threading.Event()

    def explain_batch(self, values: list) -> list:
        self.batches.append(list(values))
        if len(self.batches) == 1:
            self.release.wait(5)
        if "bad" in values:
            raise ValueError(f"cannot read {values}")
        return [f"explained {v}" for v in values]

    def explain(self, value):
        return self.explain_batch([value])[0]


def test_requests_waiting_for_one_model_are_explained_together_and_a_bad_one_fails_alone():
    from ui.serving import Batcher

    batcher, model, other = Batcher(max_batch=3), RecordingModel(), RecordingModel()
    other.release.set()
    first = batcher.submit(model, "first")
    while not model.batches:  # the batcher is busy with it
        time.sleep(0.01)
    waiting = [batcher.submit(model, v) for v in ("a", "bad", "b", "c")] + [batcher.submit(other, "x")]
    gave_up = batcher.submit(model, "gave up")
    gave_up.cancel()  # its visitor stopped waiting: never run
    model.release.set()
    assert first.result(5) == "explained first"
    assert [f.result(5) for f in waiting[:1] + waiting[2:]] == ["explained a", "explained b", "explained c", "explained x"]
    with pytest.raises(ValueError, match="bad"):
        waiting[1].result(5)
    # a, bad and b in one batch (max_batch 3), that failing, each alone; then c; the other model's on its own
    assert model.batches == [["first"], ["a", "bad", "b"], ["a"], ["bad"], ["b"], ["c"]]
    assert other.batches == [["x"]] and gave_up.cancelled()
    assert "gave up" not in sum(model.batches, [])


@pytest.mark.parametrize("modality, example", [("image", "image_fmnist_shirt.png"), ("audio", "audio_espeak_b.wav"),
                                               ("text", None)])
def test_an_input_prepared_ahead_is_explained_as_the_input_itself_and_a_bad_file_fails_there(modality, example,
                                                                                              tmp_path):
    from daam import InputError
    from daam.explanation import Explanation

    model = load_pretrained(ROOT / "checkpoints" / modality)
    raw = "A tender, funny film." if example is None else str(ROOT / "examples" / example)
    prepared = model.prepare_input(raw)
    assert (prepared is raw) == (modality == "text")  # text has no per-input work of its own
    ahead, direct = model.explain_batch([prepared, raw])
    np.testing.assert_allclose(ahead.probabilities, direct.probabilities, atol=1e-6)
    np.testing.assert_allclose(ahead.position_relevance, direct.position_relevance, atol=1e-6)
    assert Explanation.from_json(ahead.to_json()).position_labels == direct.position_labels
    if example is not None:
        broken = tmp_path / f"broken{Path(example).suffix}"
        broken.write_bytes(b"not a file of this kind")
        with pytest.raises(InputError):
            model.prepare_input(str(broken))


PLOT_WIDTHS = """() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent !== null)
  .map(p => [p.querySelector('.main-svg').getBoundingClientRect().width, p.parentElement.getBoundingClientRect().width])"""


@pytest.mark.parametrize("width", [800, 1280])
@pytest.mark.browser
def test_browser_figures_fit_their_containers_and_the_head_control_redraws_them(app_url, width, tmp_path):
    with chromium_page(width, 900) as (page, errors):
        page.goto(app_url)
        explain_sentence(page, "A warm, funny and beautifully acted film.", submit="enter")  # Enter explains
        text_plots = page.evaluate(PLOT_WIDTHS)
        before = page.locator("#text-positions .main-svg").first.inner_html()
        page.locator("#head input").click()
        page.get_by_role("option", name="head 2", exact=True).click()
        page.wait_for_function("[...document.querySelectorAll('#text-positions .ytick text')].map(t => t.textContent)"
                               ".join() === 'head 2'", timeout=30000)
        rows = page.locator("#text-positions .ytick text").all_text_contents()
        after = page.locator("#text-positions .main-svg").first.inner_html()
        page.get_by_role("tab", name="Image").click()
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "image_fmnist_shirt.png"))
        page.wait_for_selector("#image-input img", timeout=30000)
        page.locator("#explain-image").click()
        page.wait_for_selector("#image-positions .main-svg", timeout=60000)
        page.wait_for_timeout(500)
        image_plots = page.evaluate(PLOT_WIDTHS)
        page.screenshot(path=str(tmp_path / f"image_{width}.png"), full_page=True)
    assert len(text_plots) >= 5 and len(image_plots) >= 5
    for drawn, container in text_plots + image_plots:
        assert drawn <= container + 1, (width, text_plots, image_plots)
    assert before != after and rows == ["head 2"]
    assert errors == []


@pytest.mark.browser
def test_browser_bad_input_after_a_good_one_leaves_no_stale_result(app_url):
    with chromium_page(1000, 900) as (page, errors):
        page.goto(app_url)
        explain_sentence(page, "A warm and wonderful film.")
        page.locator("#text-input textarea").fill("   ")
        page.locator("#explain-text").click()
        page.wait_for_function("document.querySelector('#text-summary').innerText.includes('Nothing explained')",
                               timeout=30000)
        summary = page.locator("#text-summary").inner_text()
        plots = page.locator("#text-positions .main-svg").count()
        badges = page.get_by_text("Error", exact=True).count()
        page.wait_for_timeout(500)
        explain_sentence(page, "A dull, lifeless film.")  # the controls still work
        recovered = page.locator("#text-summary").inner_text()
    assert "empty" in summary and "%" not in summary
    assert plots == 0 and badges == 0
    assert "rotten" in recovered or "fresh" in recovered
    assert errors == []


def test_the_summary_says_when_there_is_no_clear_answer_or_the_text_was_unknown():
    from ui import explain_tab
    from daam import Explanation

    e = Explanation.from_json((EXAMPLES / "audio_klettres_en_w.json").read_text())
    e.probabilities = [0.3] + [0.7 / (len(e.labels) - 1)] * (len(e.labels) - 1)
    e.predicted_label, e.timings = e.labels[0], {"encoder_ms": 0.2, "daam_ms": 3.4}
    summary = explain_tab.summary(e)
    assert "No clear spoken letter" in summary and "30.0%" in summary and "encoder under 1 ms" in summary
    e.extras.speech_probability = 0.02  # the speech probe's verdict comes first
    assert "does not sound like speech" in explain_tab.summary(e) and "2.0%" in explain_tab.summary(e)
    assert Explanation.from_json(e.to_json()).extras.speech_probability == 0.02
    unknown = explain_tab.summary(load_pretrained(ROOT / "checkpoints" / "text").explain("😀🎉 🙂"))
    assert "[UNK]" in unknown and "almost nothing" in unknown


def test_models_tab_folds_a_cards_details_and_examples_say_what_they_are():
    from ui import inputs, models_tab

    summary, details = models_tab.card_parts(ROOT / "checkpoints" / "text" / "README.md")
    assert summary.count("\n## ") == models_tab.CARD_SUMMARY_SECTIONS and "## Results" in summary
    assert details.startswith("## ") and "## Limitations" in details and "---" not in summary[:5]
    labels = dict(inputs.examples_of("audio"))
    assert labels[str(EXAMPLES / "audio_espeak_b.wav")].startswith("spoken B")
    assert all(not label.endswith((".wav", ".ogg")) for label in labels.values())


def test_an_unreadable_clip_is_described_without_internal_details():
    from daam import InputError
    from daam.audio import decode_audio

    with pytest.raises(InputError) as error:
        decode_audio(b"this is not audio" * 50)
    assert "BytesIO" not in str(error.value) and "0x" not in str(error.value)


@pytest.mark.slow
def test_compare_text_endpoint_returns_every_mechanism_on_one_scale(app_url):
    from gradio_client import Client

    if not (ROOT / "checkpoints" / "text" / "comparison.json").exists():
        pytest.skip("no text comparison")
    client = Client(app_url, verbose=False)
    sentence = "Smart, funny and surprisingly moving."
    answer = client.predict(sentence, api_name="/compare_text")
    direct = load_pretrained(ROOT / "checkpoints" / "text").explain(sentence)
    rows = answer["rows"]
    assert rows[0]["name"] == "daam" and rows[0]["predicted_label"] == direct.predicted_label and len(rows) >= 7
    assert answer["position_labels"] == direct.position_labels
    for row in rows:
        assert {"name", "predicted_label", "probabilities", "position_weights"} <= set(row)
        assert len(row["position_weights"]) == len(direct.position_labels)
        assert abs(sum(row["position_weights"]) - 1) < 1e-3


@pytest.mark.browser
def test_browser_compares_mechanisms_on_a_sentence(app_url, tmp_path):
    if not (ROOT / "checkpoints" / "text" / "comparison.json").exists():
        pytest.skip("no text comparison")
    with chromium_page(1200, 1000) as (page, errors):
        page.goto(app_url)
        page.get_by_role("tab", name="Compare").click()
        table = page.locator("#compare-text-table").inner_text()
        page.locator("#compare-text-input textarea").fill("A tedious, joyless slog.")
        page.locator("#compare-text-run").click()
        page.wait_for_function("document.querySelector('#compare-text-verdict').innerText.includes('DAAM predicts')",
                               timeout=60000)
        page.wait_for_function("document.querySelectorAll('#compare-text-weights .ytick text').length >= 7",
                               timeout=30000)
        rows = page.locator("#compare-text-weights .ytick text").all_text_contents()
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert "daam" in table and "gated_attention" in table
    assert len(rows) >= 7 and any(r.startswith("daam:") for r in rows)
    assert errors == []


@pytest.mark.slow
def test_dataset_endpoint_pages_the_shipped_test_set_with_the_filters_of_the_tab(app_url):
    from gradio_client import Client

    from daam.dataset_view import PAGE_ROWS, DatasetView, Filters

    client = Client(app_url, verbose=False)
    labels = json.loads((ROOT / "checkpoints" / "text" / "config.json").read_text())["labels"]
    view = DatasetView.read(ROOT / "checkpoints" / "text" / "dataset", labels)
    answer = client.predict(True, "fresh", "", 0.0, 1.0, "", "confidence", True, 0, api_name="/dataset_text")
    assert answer["total"] == len(view.rows(Filters(errors_only=True, label="fresh"))) > PAGE_ROWS
    rows = answer["rows"]
    assert len(rows) == PAGE_ROWS and all(r["label"] == "fresh" and r["predicted_label"] == "rotten" for r in rows)
    assert [r["confidence"] for r in rows] == sorted((r["confidence"] for r in rows), reverse=True)
    assert len(rows[0]["relevance"]) == len(rows[0]["position_labels"])
    searched = client.predict(False, "", "", 0.0, 1.0, "funny", "id", False, 0, api_name="/dataset_text")
    assert searched["total"] == len(view.rows(Filters(search="funny"))) > 0
    assert all("funny" in r["input"].lower() for r in searched["rows"])
    with pytest.raises(Exception, match="not a label of this checkpoint"):
        client.predict(False, "meh", "", 0.0, 1.0, "", "id", False, 0, api_name="/dataset_text")


@pytest.mark.browser
def test_browser_dataset_tab_filters_and_opens_a_row_in_its_tab(app_url, tmp_path):
    with chromium_page(1280, 1000) as (page, errors):
        page.goto(app_url)
        page.get_by_role("tab", name="Dataset").click()
        summary = page.locator("#dataset-text-summary")
        page.wait_for_function("document.querySelector('#dataset-text-summary').innerText.includes('held-out')",
                               timeout=30000)
        everything = summary.inner_text()
        page.get_by_label("Errors only").first.check()
        page.wait_for_function("document.querySelector('#dataset-text-summary').innerText.includes('accuracy 0.0%')",
                               timeout=30000)  # errors only: none of the rows is right
        errors_only = summary.inner_text()
        first_input = page.locator("#dataset-text-table [role='gridcell']").nth(7)  # the input: the last column
        sentence = first_input.inner_text().strip()
        page.screenshot(path=str(tmp_path / "dataset.png"), full_page=True)
        first_input.click()
        page.wait_for_function(RESULT_SHOWN, timeout=60000)
        opened = page.locator("#text-input textarea").input_value()
        explained = page.locator("#text-summary").inner_text()
    assert "1,271 of 1,271 held-out items" in everything and "comprehensiveness" in everything
    assert " of 1,271 held-out items" in errors_only and "accuracy 0.0%" in errors_only
    assert opened.startswith(sentence.rstrip("…")) and sentence
    assert ("fresh" in explained or "rotten" in explained) and errors == []


@pytest.mark.slow
def test_the_api_says_when_an_input_is_unlike_the_training_data(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    review = client.predict("Smart, funny and surprisingly moving.", api_name="/explain_text")
    noise = client.predict("qwxz 0x3f9a !!?? 12 9981 zzkq", api_name="/explain_text")
    assert review["out_of_distribution"] is False and noise["out_of_distribution"] is True
    assert noise["ood_score"] > review["ood_score"]
