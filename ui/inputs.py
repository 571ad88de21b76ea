"""The app's input widgets, by a modality's input kind, and its example inputs."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from daam.audio import MAX_SECONDS, WINDOW_S

from . import serving


class UploadedImage(gr.Image):
    """gr.Image that hands the uploaded file itself to the handler, undecoded.

    Gradio would decode it with its own settings first (converting modes, and failing with a generic
    error on a non-image); daam.images decodes every case itself and says clearly what is wrong."""

    # Drawn by the browser as the built-in Image component: only the server-side preprocessing differs.
    is_template = True

    @classmethod
    def get_component_class_id(cls) -> str:
        return gr.Image.get_component_class_id()

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)  # Gradio's own upload folder: it has already checked the upload
        return super().preprocess(payload)


def input_widget(name: str, compare: bool = False):
    """The input widget of a modality's input kind, and the widgets that show what the model saw (None in the
    Compare tab, whose widgets are named compare-<modality>-...)."""
    kind = serving.entry(name).input_kind
    if compare:
        elem_id = f"compare-{name}-input"
        if kind == "text":
            return gr.Textbox(label="Sentence (Enter to compare)", lines=1, max_lines=12, max_length=serving.MAX_TEXT_CHARS,
                              elem_id=elem_id, placeholder="A warm, funny and beautifully acted film."), None
        if kind == "image":
            return UploadedImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                 label="Image", elem_id=elem_id, height=260), None
        return gr.Audio(type="filepath", sources=["upload", "microphone"], label="Clip", elem_id=elem_id), None
    if kind == "text":  # one line that grows: Enter explains, Shift+Enter starts a new line
        return gr.Textbox(label="Sentence (Enter to explain, Shift+Enter for a new line)", lines=1, max_lines=12,
                          max_length=serving.MAX_TEXT_CHARS, elem_id=f"{name}-input",
                          placeholder="A warm, funny and beautifully acted film."), None
    if kind == "image":
        if serving.is_shipped(name):
            gr.Markdown("One garment, ideally on a plain background. Photos (dark on light) are inverted, "
                        "cropped and centred to look like Fashion-MNIST: *what the model sees* shows the result.")
        with gr.Row():
            image = UploadedImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                  label="Image", elem_id=f"{name}-input", height=300)
            seen = gr.Image(label="What the model sees", interactive=False, height=300, elem_id=f"{name}-seen")
        return image, seen
    if serving.is_shipped(name):
        gr.Markdown(f"Say one English letter name (A–Z). Silence around the speech is trimmed; speech longer "
                    f"than {WINDOW_S:g} s is cut to its loudest {WINDOW_S:g} s; clips up to "
                    f"{MAX_SECONDS / 60:.0f} minutes are accepted.")
    return gr.Audio(type="filepath", sources=["upload", "microphone"], label="Clip", elem_id=f"{name}-input"), None


def api_input(name: str):
    """A hidden input for the named file endpoint, so Gradio's upload checks apply to API calls too."""
    kind = serving.entry(name).input_kind
    return (UploadedImage(type="filepath", image_mode=None, visible=False) if kind == "image"
            else gr.Audio(type="filepath", visible=False))


def asked(button: gr.Button, source) -> list:
    """The events that ask for a result: the button, and Enter in a text box."""
    return [button.click] + ([source.submit] if isinstance(source, gr.Textbox) else [])


def examples_of(name: str) -> list[tuple[str, str]]:
    """(input, button label) pairs: the sentences themselves; for files, what they are and the expected answer."""
    from daam.data.files import test_examples
    from daam.examples import example_inputs, example_label

    inputs = example_inputs(name) if serving.is_shipped(name) else test_examples(serving.served()[name].directory)
    if serving.entry(name).input_kind == "text":
        return [(text, text) for text in inputs]
    return [(path, example_label(Path(path))) for path in inputs]
