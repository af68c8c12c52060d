"""The OTLP receiver's throughput and memory, beside the proxy's event path (the otel benchmark).

Two measurements, each for the receiver and for the baseline, in the same run:

* **throughput**: the receiver (``llm-usage otel``, one process, SQLite file in a temp folder)
  takes pre-built OTLP/HTTP protobuf exports of 500 GenAI spans each (realistic attributes,
  message content included, which it drops) from 4 sender threads as fast as it answers; spans/s
  counts only exports answered ``200`` (written to the database before the answer). Baseline:
  the proxy's event path, ``collector.proxy.recorder.Recorder`` in its own process writing
  ``proxy_events`` to a SQLite file, fed as fast as its queue allows.
* **memory at 10,000 spans/s for 60 s**: the same two, paced at 10,000 spans (events) a second;
  peak and final RSS of the receiving process (``/proc/<pid>/status``), and the rate achieved.

Run with ``make bench BENCH=otel`` (about three minutes).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

ROOT = Path(__file__).resolve().parents[2]
BATCH = 500
RATE = 10_000
SOAK_SECONDS = 60
THROUGHPUT_SPANS = 100_000
CLI = str(Path(sys.executable).parent / "llm-usage")

RECORDER_SCRIPT = """
import sys, time, json, threading
from datetime import UTC, datetime
from collector.db.migrate import open_database
from collector.core.settings import get_settings
from collector.proxy.recorder import Recorder, Spool, new_event_id
mode, seconds, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
settings = get_settings()
engine = open_database(settings)
rec = Recorder(engine, Spool(settings.data_dir / "spool"), queue_size=10000, batch_size=500, interval=0.5)
rec.start()
def event():
    return {"id": new_event_id(), "ts": time.time(), "provider": "openai", "upstream": "openai",
            "endpoint": "chat.completions", "method": "POST", "model": "gpt-4o-mini", "status": 200,
            "stream": False, "partial": False, "usage_known": True, "error": "", "input_tokens": 1200,
            "cache_read_tokens": 200, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0,
            "output_tokens": 300, "reasoning_tokens": 0, "latency_ms": 812.5, "ttfb_ms": 120.0,
            "team": "search", "project": "ranker", "token_id": 1, "api_key_fp": "fp_0123456789abcdef0123",
            "service_tier": "default", "response_id": "chatcmpl-x"}
sent = 0
start = time.perf_counter()
if mode == "max":
    while sent < rate:
        while rec.depth() > 8000:
            time.sleep(0.001)
        rec.record(event()); sent += 1
    rec.flush(sent, timeout=300)
else:
    tick = 0.1
    while time.perf_counter() - start < seconds:
        due = int((time.perf_counter() - start) * rate)
        while sent < due:
            rec.record(event()); sent += 1
        time.sleep(tick / 10)
    rec.flush(sent, timeout=300)
elapsed = time.perf_counter() - start
rec.stop()
print(json.dumps({"events": sent, "seconds": elapsed}), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Peak and last RSS of a process, sampled every 0.5 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.last = pid, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.last = rss_mb(self.pid)
            except FileNotFoundError:
                return
            self.peak = max(self.peak, self.last)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


TEMPLATES = 20
#: Message content as instrumentations capture it when asked to: the receiver drops it on arrival.
CONTENT = '[{"role":"user","parts":[{"type":"text","content":"' + "x" * 300 + '"}]}]'
#: Every trace id starts with these 8 bytes in a template; each send replaces them (unique ids).
TEMPLATE_SEED = 0x5EED_0F_0E_7E_1E_0000


class Bodies:
    """``TEMPLATES`` pre-built exports; the i-th send gets its own trace ids by a byte replace."""

    def __init__(self, run: int) -> None:
        self.templates = build_templates()
        self.run = run
        self.marker = TEMPLATE_SEED.to_bytes(8, "big")

    def __getitem__(self, i: int) -> bytes:
        seed = (TEMPLATE_SEED + 1 + self.run * 10_000_000 + i // TEMPLATES).to_bytes(8, "big")
        return self.templates[i % TEMPLATES].replace(self.marker, seed)


def build_templates() -> list[bytes]:
    """Exports of ``BATCH`` chat spans each, with unique ids, over the last hour."""
    now_ns = time.time_ns()
    seed = TEMPLATE_SEED
    bodies = []
    for b in range(TEMPLATES):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(
            [
                _kv("service.name", f"svc-{b % 7}"),
                _kv("service.namespace", "shop"),
                _kv("telemetry.sdk.language", "python"),
            ]
        )
        spans = rs.scope_spans.add().spans
        for i in range(BATCH):
            n = b * BATCH + i
            span = spans.add()
            span.trace_id = (seed << 64 | n).to_bytes(16, "big")
            span.span_id = (n + 1).to_bytes(8, "big")
            span.name = "chat gpt-4o-mini"
            span.end_time_unix_nano = now_ns - (n % 3600) * 1_000_000_000
            span.start_time_unix_nano = span.end_time_unix_nano - 800_000_000
            span.attributes.extend(
                [
                    _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.request.model", "gpt-4o-mini"),
                    _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                    _kv("gen_ai.response.id", f"chatcmpl-{n}"),
                    _kv("gen_ai.usage.input_tokens", 1200),
                    _kv("gen_ai.usage.cache_read.input_tokens", 200),
                    _kv("gen_ai.usage.output_tokens", 300),
                    _kv(
                        "gen_ai.input.messages",
                        '[{"role":"user","parts":[{"type":"text","content":"' + "x" * 300 + '"}]}]',
                    ),
                    _kv("server.address", "api.openai.com"),
                ]
            )
        bodies.append(req.SerializeToString())
    return bodies


def start_receiver(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "LLM_USAGE_DATA_DIR": data_dir, "LLM_USAGE_OTEL_ROLLUP_INTERVAL_SECONDS": "3600"}
    env.pop("LLM_USAGE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [CLI, "otel", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("receiver did not start")
        time.sleep(0.1)


def send_all(url: str, bodies: Bodies, count: int, threads: int = 4) -> tuple[int, float, list[float]]:
    """Post ``count`` bodies (``threads`` at a time); returns (spans answered 200, seconds, latencies ms)."""
    lock = threading.Lock()
    queue = list(reversed(range(count)))
    ok = [0]
    latencies: list[float] = []

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    body = bodies[queue.pop()]
                t0 = time.perf_counter()
                r = client.post(f"{url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if r.status_code == 200:
                        ok[0] += BATCH

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return ok[0], time.perf_counter() - start, latencies


def paced(url: str, bodies: Bodies, seconds: int) -> tuple[int, float]:
    """Send ``RATE`` spans a second for ``seconds`` (one export every BATCH/RATE s, 4 threads)."""
    interval = BATCH / RATE
    lock = threading.Lock()
    next_i = [0]
    ok = [0]
    start = time.perf_counter()

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                due = start + i * interval
                if due - start >= seconds:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                r = client.post(
                    f"{url}/v1/traces",
                    content=bodies[i],
                    headers={"content-type": "application/x-protobuf"},
                )
                if r.status_code == 200:
                    with lock:
                        ok[0] += BATCH

    pool = [threading.Thread(target=worker) for _ in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return ok[0], time.perf_counter() - start


def receiver_runs() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_receiver(tmp)
        try:
            with RssSampler(proc.pid) as rss:
                spans, seconds, lat = send_all(url, Bodies(1), THROUGHPUT_SPANS // BATCH)
            out["throughput"] = spans / seconds
            out["throughput_rss"] = rss.peak
            out["export_p50_ms"] = statistics.median(lat)
            with RssSampler(proc.pid) as rss:
                spans, seconds = paced(url, Bodies(2), SOAK_SECONDS)
            out["soak_rate"] = spans / seconds
            out["soak_peak_rss"], out["soak_last_rss"] = rss.peak, rss.last
        finally:
            proc.terminate()
            proc.wait(30)
    return out


def recorder_runs() -> dict[str, float]:
    import json

    out: dict[str, float] = {}
    for mode, seconds, rate in (("max", 0, THROUGHPUT_SPANS), ("paced", SOAK_SECONDS, RATE)):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "LLM_USAGE_DATA_DIR": tmp, "PYTHONPATH": str(ROOT)}
            env.pop("LLM_USAGE_DATABASE_URL", None)
            proc = subprocess.Popen(
                [sys.executable, "-c", RECORDER_SCRIPT, mode, str(seconds), str(rate)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            with RssSampler(proc.pid) as rss:
                stdout, _ = proc.communicate(timeout=600)
            result = json.loads(stdout.decode().strip().splitlines()[-1])
            rate_done = result["events"] / result["seconds"]
            if mode == "max":
                out["throughput"], out["throughput_rss"] = rate_done, rss.peak
            else:
                out["soak_rate"], out["soak_peak_rss"], out["soak_last_rss"] = rate_done, rss.peak, rss.last
    return out


def main() -> None:
    """Print the receiver's figures beside the proxy event path's."""
    ours = receiver_runs()
    base = recorder_runs()
    rows = [
        ("max throughput (spans or events / s)", f"{ours['throughput']:,.0f}", f"{base['throughput']:,.0f}"),
        ("peak RSS during the throughput run", f"{ours['throughput_rss']:.0f} MB", f"{base['throughput_rss']:.0f} MB"),
        (f"achieved rate, paced at {RATE:,}/s for {SOAK_SECONDS} s", f"{ours['soak_rate']:,.0f}",
         f"{base['soak_rate']:,.0f}"),
        ("peak / final RSS at that rate", f"{ours['soak_peak_rss']:.0f} / {ours['soak_last_rss']:.0f} MB",
         f"{base['soak_peak_rss']:.0f} / {base['soak_last_rss']:.0f} MB"),
    ]  # fmt: skip
    print(f"\nOTLP receiver (llm-usage otel, SQLite, {BATCH}-span exports, 4 senders) vs proxy event path (Recorder)")
    print(f"{'':52} {'receiver':>18} {'proxy events':>18}")
    for name, a, b in rows:
        print(f"{name:52} {a:>18} {b:>18}")
    print(f"receiver export latency p50 under full load: {ours['export_p50_ms']:.0f} ms")


if __name__ == "__main__":
    main()
