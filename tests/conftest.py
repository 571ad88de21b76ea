"""Shared fixtures: the app running in a subprocess on a free port, always cleaned up; training runs' feature caches
in the run's own temporary folder, never the user's."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def feature_cache(tmp_path_factory):
    """DAAM_FEATURE_CACHE for every training run in the tests (subprocesses inherit it)."""
    os.environ["DAAM_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("features"))
    yield
    os.environ.pop("DAAM_FEATURE_CACHE", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """One app for the whole run: every app test talks to the same server, as users would."""
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail("app exited during start-up:\n" + proc.stdout.read()[-3000:])
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("app did not start within 120 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
