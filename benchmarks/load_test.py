"""Load and memory soak of the running app, over loopback only; bounded in count and time.

    python benchmarks/load_test.py [--clients 8] [--requests 25] [--soak 500]

1. Single-request latency: median of 12 sequential mixed requests (text, image, audio), and per endpoint.
2. Load: `clients` visitors in parallel (plain HTTP by default, HttpVisitor; --client gradio_client), each sending
   `requests` mixed requests;
   prints p50, p95, max, errors and throughput (goal: 0 errors, p95 <= 4x the single-request p50).
3. Memory: the server's RSS after warm-up and after `soak` more mixed requests
   (goal: growth < 200 MB).
4. Reference: steps 1 and 2 against benchmarks/trivial_app.py, an endpoint that does nothing under the
   same queue settings, so the framework's own ratio is printed beside the app's (skip: --no-reference)."""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serving import serve  # noqa: E402
DEADLINE_S = 1200  # the whole run stops here, whatever the counts


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def requests_cycle():
    """Mixed requests over every modality that has a checkpoint: (endpoint, argument) pairs, forever."""
    from gradio_client import handle_file

    pool = [("/explain_text", "A warm, funny and beautifully acted film."),
            ("/explain_text", "The plot makes no sense and the ending drags on forever.")]
    for modality, pattern in (("image", "image_*.png"), ("audio", "audio_*.wav")):
        if (ROOT / "checkpoints" / modality / "config.json").is_file():
            pool += [(f"/explain_{modality}", handle_file(str(p))) for p in sorted((ROOT / "examples").glob(pattern))[:2]]
    return itertools.cycle(pool)


class HttpVisitor:
    """A visitor speaking Gradio's documented REST API over one keep-alive connection: a file goes up through
    POST /gradio_api/upload, the call is POST /gradio_api/call/<endpoint>, its answer the event stream of GET
    /gradio_api/call/<endpoint>/<event id>. gradio_client does the same with more machinery (a status thread, a
    job per call), about 70 ms of CPU a request on this machine: as much as the app's own work, taken from the
    cores the app is measured on. Visitors come from other machines; this load generator stays out of the way."""

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=f"{url}gradio_api/", timeout=DEADLINE_S)
        # One session a visitor, as a browser tab and gradio_client have: without one, Gradio builds a session's
        # state (a copy of every component's config, in proportion to the app's size) for every call.
        self.session = uuid.uuid4().hex[:11]

    def predict(self, argument, api_name: str):
        if isinstance(argument, dict):  # gradio_client.handle_file's file reference
            path = Path(argument["path"])
            with open(path, "rb") as f:
                uploaded = self.http.post("upload", files=[("files", (path.name, f))]).raise_for_status().json()[0]
            argument = {"path": uploaded, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        call = self.http.post(f"call{api_name}", json={"data": [argument], "session_hash": self.session}).raise_for_status()
        with self.http.stream("GET", f"call{api_name}/{call.json()['event_id']}") as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    if event == "error":
                        raise RuntimeError(line.removeprefix("data:").strip())
                    return json.loads(line.removeprefix("data:"))[0]
        raise RuntimeError(f"{api_name}: the event stream ended without an answer")


def visitor(url: str, kind: str):
    """A client of the app at url: plain HTTP (HttpVisitor) or gradio_client's Client."""
    if kind == "http":
        return HttpVisitor(url)
    from gradio_client import Client

    return Client(url, verbose=False)


def timed(client, endpoint, argument) -> tuple[str, float, str | None]:
    """(endpoint, seconds, error or None) of one request."""
    started = time.perf_counter()
    try:
        client.predict(argument, api_name=endpoint)
        return endpoint, time.perf_counter() - started, None
    except Exception as error:  # any failure counts as an error of the load test
        return endpoint, time.perf_counter() - started, f"{endpoint}: {error}"


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least a fraction q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def per_endpoint(results: list[tuple[str, float, str | None]]) -> str:
    by_endpoint: dict[str, list[float]] = {}
    for endpoint, seconds, _ in results:
        by_endpoint.setdefault(endpoint, []).append(seconds)
    return ", ".join(f"{e} p50 {statistics.median(v) * 1e3:.0f} / p95 {percentile(v, 0.95) * 1e3:.0f} ms"
                     for e, v in by_endpoint.items())


def measure(url: str, cycle, clients: int, requests: int, label: str, kind: str = "http") -> None:
    """Print single-request and loaded latencies of `cycle`'s requests against the app at `url`, sent by `kind`
    visitors (see visitor)."""
    client = visitor(url, kind)
    for _ in range(6):  # warm-up: every endpoint once or more
        timed(client, *next(cycle))
    single = [timed(client, *next(cycle)) for _ in range(12)]
    single_p50 = statistics.median(r[1] for r in single)

    # One thread per client, each sending its requests one after another, as a user would: a gradio_client
    # Client shared by threads races on its one event stream and cancels requests on the client side.
    users = [visitor(url, kind) for _ in range(clients)]
    work = [[next(cycle) for _ in range(requests)] for _ in users]

    def one_client(c: int) -> list[tuple[str, float, str | None]]:
        return [timed(users[c], *request) for request in work[c]]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients), timeout=DEADLINE_S) for r in rs]
    throughput = len(results) / (time.perf_counter() - started)
    latencies = [r[1] for r in results]
    errors = [r[2] for r in results if r[2]]
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    print(f"{label}: single request p50 {single_p50 * 1e3:.0f} ms (12 sequential requests): {per_endpoint(single)}")
    print(f"{label}: load {clients} clients x {requests} requests = {len(results)}: p50 {p50 * 1e3:.0f} ms, "
          f"p95 {p95 * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms, errors {len(errors)}, "
          f"{throughput:.1f} requests/s; p95 / single p50 = {p95 / single_p50:.1f}x   (goal: 0 errors, <= 4x)")
    print(f"  by endpoint under load: {per_endpoint(results)}")
    for error in errors[:5]:
        print("  error:", error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--soak", type=int, default=500)
    parser.add_argument("--client", choices=["http", "gradio_client"], default="http",
                        help="how the visitors are simulated (see HttpVisitor; gradio_client: as before 2026-12-04)")
    parser.add_argument("--app", type=Path, default=ROOT / "app.py",
                        help="the app to load (another checkout's app.py, to compare before and after a change)")
    parser.add_argument("--no-reference", action="store_true", help="skip the trivial-endpoint reference")
    args = parser.parse_args()

    begun = time.perf_counter()
    with serve(args.app.resolve()) as (pid, url):
        cycle = requests_cycle()
        measure(url, cycle, args.clients, args.requests, "app", args.client)
        client = visitor(url, args.client)
        before = rss_mb(pid)
        soak_errors = 0
        for count in range(args.soak):
            soak_errors += timed(client, *next(cycle))[2] is not None
            if time.perf_counter() - begun > DEADLINE_S:
                print(f"soak stopped at the {DEADLINE_S} s deadline after {count + 1} requests")
                break
        after = rss_mb(pid)
        print(f"memory: server RSS {before:.0f} MB after warm-up and load, {after:.0f} MB after {args.soak} more mixed "
              f"requests: growth {after - before:+.0f} MB, errors {soak_errors}   (goal < 200 MB)")
    if not args.no_reference:
        with serve(ROOT / "benchmarks" / "trivial_app.py") as (_, url):
            measure(url, itertools.cycle([("/echo", "A warm, funny and beautifully acted film.")]), args.clients,
                    args.requests, "reference (trivial endpoint)", args.client)


if __name__ == "__main__":
    main()
