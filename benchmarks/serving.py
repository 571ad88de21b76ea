"""Start a Gradio app script for a benchmark, over loopback, and always stop it."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def serve(script: Path, *args: str):
    """Start a Gradio app script (with its command-line args) on a free loopback port; yield (pid, url) once it
    answers; always stop it."""
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False"))
    started = time.perf_counter()
    try:
        while True:
            try:
                Client(url, verbose=False)
                break
            except Exception:
                if proc.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit(f"{script.name} did not start within 120 s")
                time.sleep(0.2)
        yield proc.pid, url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
