"""A Gradio app with one endpoint that does nothing, under app.py's queue settings.

load_test.py puts it under the same load as the real app, so the framework's own share of the
latency (HTTP, queue, event stream, JSON, gradio_client) is printed beside the app's."""

import os

import gradio as gr


def echo(text: str) -> dict:
    return {"text": text}


with gr.Blocks() as demo:
    gr.api(echo, api_name="echo")
demo.queue(default_concurrency_limit=8, max_size=64)  # app.py's: ui.serving.CONCURRENT_REQUESTS
demo.launch(server_name="127.0.0.1", server_port=int(os.environ["GRADIO_SERVER_PORT"]))
