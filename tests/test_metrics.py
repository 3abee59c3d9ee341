"""``serve asgi --metrics-port``: Prometheus text, scraped and parsed with
prometheus_client's own parser -- requests by status class, the latency
histogram, open connections, the engine's counters -- from one process
and from a supervisor summing its workers, across a SIGHUP that replaces
them (the counters never go down). Both backends."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, recv_until_eof, stop_server, wait_for

APPS = os.path.join(REPO, "tests", "apps")
TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(backend: str, *options: str):
    metrics = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uringio", "serve", "asgi", "operate_app:app",
                             "--app-dir", APPS, "--port", "0", "--metrics-port", str(metrics),
                             "--backend", backend, *options], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.match(r"listening on 127\.0\.0\.1:(\d+) ", line)
    if not match:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{line!r} {proc.stderr.read()}")
    return proc, int(match.group(1)), metrics


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as got:
        assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = got.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_2xx(port: int) -> float:
    return scrape(port)[("uringio_requests_total", (("status", "2xx"),))]


def get(port: int, count: int) -> None:
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "multi"])
def test_metrics_are_prometheus_text_with_the_requests_and_the_engine(backend, workers):
    proc, port, metrics = start(backend, *workers)
    try:
        # Keep-alive requests (their end is the C path's), and fresh ones.
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as held:
            for _ in range(10):
                held.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while not got.endswith(b"}"):
                    chunk = held.recv(65536)
                    assert chunk
                    got += chunk
            get(port, 10)
            # Written once a second by each worker: within a few seconds.
            assert wait_for(lambda: requests_2xx(metrics) == 20, TIMEOUT)
            samples = scrape(metrics)
            assert samples[("uringio_connections", ())] >= 1   # the held one
        count = samples[("uringio_request_duration_seconds_count", ())]
        assert count == 20
        buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value
                         in samples.items() if name == "uringio_request_duration_seconds_bucket")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)   # cumulative
        assert buckets[-1] == (float("inf"), count)
        assert 0 < samples[("uringio_request_duration_seconds_sum", ())] < 20 * TIMEOUT
        engine = {name: value for (name, labels), value in samples.items()
                  if name.startswith("uringio_engine_") and labels == (("backend", backend),)}
        assert engine["uringio_engine_waits_total"] > 0
        assert engine["uringio_engine_completions_total"] > 0
        if backend == "uring":
            assert engine["uringio_engine_submissions_total"] > 0
            assert engine["uringio_engine_cq_overflows_total"] == 0
    finally:
        assert stop_server(proc) == 0


def test_metrics_only_grow_across_a_sighup(backend):
    proc, port, metrics = start(backend, "--workers", "2")
    try:
        get(port, 10)
        assert wait_for(lambda: requests_2xx(metrics) == 10, TIMEOUT)
        waits = scrape(metrics)[("uringio_engine_waits_total", (("backend", backend),))]
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        get(port, 5)
        # The retired workers' figures stay in the sum; the new ones add theirs.
        assert wait_for(lambda: requests_2xx(metrics) == 15, 3 * TIMEOUT)
        assert scrape(metrics)[("uringio_engine_waits_total", (("backend", backend),))] >= waits
    finally:
        assert stop_server(proc) == 0


def test_metrics_answer_404_elsewhere(backend):
    proc, port, metrics = start(backend)
    try:
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/", timeout=TIMEOUT)
        assert raised.value.code == 404
    finally:
        assert stop_server(proc) == 0


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "multi"])
def test_a_client_dribbling_its_request_does_not_hold_the_endpoint(backend, workers):
    # One byte every half second, for longer than a scrape may take: the
    # endpoint (the supervisor's, one scrape at a time) cuts it off and
    # answers the next scraper within its bound.
    proc, port, metrics = start(backend, *workers)
    stop = threading.Event()

    def dribble() -> None:
        with socket.create_connection(("127.0.0.1", metrics), timeout=TIMEOUT) as slow:
            for byte in b"GET /metrics HTTP/1.1\r\n":
                if stop.wait(0.5):
                    return
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    return   # cut off: as it should be

    slow = threading.Thread(target=dribble)
    try:
        slow.start()
        time.sleep(0.2)   # the slow one first
        began = time.monotonic()
        assert ("uringio_connections", ()) in scrape(metrics)
        assert time.monotonic() - began < TIMEOUT
    finally:
        stop.set()
        slow.join(TIMEOUT)
        assert stop_server(proc) == 0
