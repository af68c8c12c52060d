"""Proxy sidecar overhead against the fake upstream on loopback (the proxy benchmark).

Three processes share the machine: the fake upstream (uvicorn + uvloop + httptools), the sidecar
(``ProxyApp`` on uvicorn, one worker, recording to a SQLite file in a temp folder) and the load
generator, ``wrk`` (installed from Debian's packages if missing; if that fails an asyncio httpx
load generator is used and the output says so). For 1, 16 and 64 concurrent connections, JSON and
SSE calls, each configuration runs once straight at the fake ("direct") and once through the
sidecar, with the same client in the same run, and the table shows:

* requests/s through the sidecar (and direct);
* added latency p50 / p99 = sidecar percentile minus direct percentile;
* sidecar CPU time per request (from ``/proc/<pid>/stat`` over the run, its journal writer's
  child process included) and its peak RSS.

After the table, the sidecar's database is checked against the calls wrk completed: every one is
one row of ``proxy_events`` (nothing lost, no id twice).

A probe then measures time to first streamed chunk (direct vs sidecar, one client), and a short
run compares uvicorn's asyncio + h11 with uvloop + httptools for the sidecar, and another the journal
committed by a thread of the sidecar against its child process (1 client, alternating rounds). Last, the request
path's share of recording alone: ``Recorder.record`` (one JSON line written to the journal) per
call, beside putting the same event on an in-memory queue (what recording cost before the journal).

Enforcement overhead (rate limits per monitor token): three sidecars on the same machine, each
called by one connection with a monitor token, in alternating rounds so each sees the same load:
limits off (a token without limits), limits on with counters in the process, and limits on with
counters in Redis on loopback (``LLM_USAGE_REDIS_URL``; skipped when no Redis answers on
127.0.0.1:6379). The limits are far above the load, so no call is refused: the difference in p50
is the cost of the check itself.

Run with ``make bench BENCH=proxy`` (about three minutes); ``python -m tests.bench.bench_proxy
enforcement`` runs only the enforcement part.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DURATION = 5
KEY = "sk-bench-0000000000"
BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}'
STREAM_BODY = BODY[:-1] + ',"stream":true}'
# The production server options (limits, header timeout) unless the run compares another parser.
SIDE_SCRIPT = """
import sys, uvicorn
from collector.core.settings import get_settings
from collector.proxy.app import ProxyApp
from collector.proxy.server import uvicorn_options
loop, http, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra = {} if http == "httptools" else {"http": http}
uvicorn.run(ProxyApp(), **uvicorn_options(get_settings(), host="127.0.0.1", port=port, loop=loop,
            log_level="warning", **extra))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _own_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # a child that ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the sidecar's journal writer, uvicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live children (and theirs): the sidecar's cost includes its writer's."""
    return _own_cpu(pid) + sum(cpu_seconds(child) for child in children(pid))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ensure_wrk() -> str | None:
    if shutil.which("wrk"):
        return shutil.which("wrk")
    print("wrk not found; installing it from Debian's packages (apt-get install -y wrk) ...", flush=True)
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return shutil.which("wrk")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    wrk: str, url: str, body: str, conns: int, seconds: int, lua_dir: Path, token: str = ""
) -> dict[str, float]:
    script = lua_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
        + (f'wrk.headers["X-Monitor-Token"] = "{token}"\n' if token else "")
    )
    out = subprocess.run(
        [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    for pct in ("50", "99"):
        result[f"p{pct}"] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        result["errors"] = 1
    return result


def run_httpx(url: str, body: str, conns: int, seconds: int, token: str = "") -> dict[str, float]:
    """Fallback load generator: ``conns`` asyncio workers on one httpx.AsyncClient."""

    async def main() -> tuple[list[float], float]:
        lat: list[float] = []
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        if token:
            headers["x-monitor-token"] = token
        async with httpx.AsyncClient(limits=limits) as client:
            end = time.perf_counter() + seconds

            async def worker() -> None:
                while time.perf_counter() < end:
                    t = time.perf_counter()
                    r = await client.post(url, content=body, headers=headers)
                    await r.aread()
                    lat.append((time.perf_counter() - t) * 1000)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conns)))
            return lat, time.perf_counter() - start

    lat, elapsed = asyncio.run(main())
    q = statistics.quantiles(lat, n=100)
    return {"rps": len(lat) / elapsed, "requests": float(len(lat)), "p50": q[49], "p99": q[98]}


def first_chunk_ms(urls: list[str], n: int = 200) -> list[list[float]]:
    """Time to the first body chunk of ``n`` streamed calls per URL, alternating between the URLs
    call by call so both paths see the same machine load (one keep-alive client each).
    """
    out: list[list[float]] = [[] for _ in urls]
    clients = [
        httpx.Client(transport=httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]))
        for _ in urls
    ]
    try:
        for _ in range(n):
            for i, (client, url) in enumerate(zip(clients, urls, strict=True)):
                t = time.perf_counter()
                with client.stream("POST", url, content=STREAM_BODY, headers={"authorization": f"Bearer {KEY}"}) as r:
                    chunks = r.iter_raw()
                    next(chunks)
                    out[i].append((time.perf_counter() - t) * 1000)
                    for _ in chunks:
                        pass
    finally:
        for client in clients:
            client.close()
    return out


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def start_sidecar(
    tmp: Path,
    fake_url: str,
    loop: str = "uvloop",
    http: str = "httptools",
    data_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "LLM_USAGE_DATA_DIR": str(data_dir or tmp / f"data-{loop}-{http}"),
        "LLM_USAGE_PROXY_OPENAI_URL": f"{fake_url}/v1",
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    proc = subprocess.Popen([sys.executable, "-c", SIDE_SCRIPT, loop, http, str(port)], env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    wait_up(f"{url}/healthz", proc)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    """Print the overhead table (see the module docstring)."""
    wrk = ensure_wrk()
    print(f"load generator: {'wrk (' + wrk + ')' if wrk else 'asyncio httpx (wrk unavailable)'}; {DURATION} s per run")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fake_port = free_port()
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.upstream", str(fake_port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        fake_url = f"http://127.0.0.1:{fake_port}"
        try:
            wait_up(f"{fake_url}/v1/models", fake)
            side, side_url = start_sidecar(tmp, fake_url)
            try:
                sent = _matrix(wrk, tmp, fake_url, side, side_url)
                _settle(side_url)
                _recorded_once(tmp / "data-uvloop-httptools", sent)
                direct_ttfb, side_ttfb = first_chunk_ms(
                    [f"{fake_url}/v1/chat/completions", f"{side_url}/openai/v1/chat/completions"]
                )
                d50, d99, s50, s99 = (
                    pct(direct_ttfb, 50),
                    pct(direct_ttfb, 99),
                    pct(side_ttfb, 50),
                    pct(side_ttfb, 99),
                )
                print(
                    f"\nfirst streamed chunk, 1 client, 200 calls each, alternating:"
                    f" direct p50 {d50:.2f} / p99 {d99:.2f} ms;"
                    f" sidecar p50 {s50:.2f} / p99 {s99:.2f} ms; added p50 {s50 - d50:+.2f} ms, p99 {s99 - d99:+.2f} ms"
                )
                print(f"sidecar peak RSS: {peak_rss_mb(side.pid):.0f} MiB")
                _workers(wrk, tmp, fake_url, side_url)
            finally:
                stop(side)
            _writer_ab(wrk, tmp, fake_url)
            _loops(wrk, tmp, fake_url)
            _enforcement(wrk, tmp, fake_url)
        finally:
            stop(fake)
        _record_cost(tmp)


def _settle(side_url: str) -> None:
    """Wait until the sidecar's recorder has written its backlog (so it does not skew the probe)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and httpx.get(f"{side_url}/healthz").json()["queue_depth"]:
        time.sleep(0.2)


def _load(
    wrk: str | None, url: str, body: str, conns: int, seconds: int, tmp: Path, token: str = ""
) -> dict[str, float]:
    if wrk:
        return run_wrk(wrk, url, body, conns, seconds, tmp, token)
    return run_httpx(url, body, conns, seconds, token)


def _tokens(data_dir: Path) -> tuple[str, str, str]:
    """Tokens without limits, with both limits and with a request limit only (far above the load)."""
    from collector.core.settings import get_settings
    from collector.db.migrate import open_database
    from collector.proxy.tokens import create_token, set_limits

    settings = get_settings().model_copy(update={"data_dir": data_dir, "database_url": ""})
    engine = open_database(url=settings.resolved_database_url())
    _, free = create_token(engine, team="bench")
    limited_id, limited = create_token(engine, team="bench")
    set_limits(engine, limited_id, rpm=10**9, tpm=10**12)
    rpm_id, rpm_only = create_token(engine, team="bench")
    set_limits(engine, rpm_id, rpm=10**9)
    engine.dispose()
    return free, limited, rpm_only


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis(socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def _enforcement(wrk: str | None, tmp: Path, fake_url: str, rounds: int = 5, seconds: int = 3) -> None:
    """p50 of one connection with limits off, on (local counters) and on (Redis), alternating."""
    redis_on = _redis_up()
    setups: list[tuple[str, dict[str, str], int]] = [("limits off", {}, 0), ("limits on, local", {}, 1)]
    if redis_on:
        prefix = f"bench-{os.getpid()}:"
        redis_env = {"LLM_USAGE_REDIS_URL": "redis://127.0.0.1:6379/0", "LLM_USAGE_REDIS_KEY_PREFIX": prefix}
        setups.append(("rpm+tpm, Redis", redis_env, 1))
        setups.append(("rpm only, Redis", redis_env, 2))
    sides = []
    try:
        for i, (name, env, which) in enumerate(setups):
            data = tmp / f"enforce-{i}"
            data.mkdir()
            token = _tokens(data)[which]
            side, url = start_sidecar(tmp, fake_url, data_dir=data, extra_env=env)
            sides.append((name, side, f"{url}/openai/v1/chat/completions", token))
        p50s: dict[str, list[float]] = {name: [] for name, *_ in sides}
        for _name, _, url, token in sides:
            _load(wrk, url, BODY, 1, 1, tmp, token)  # warm up
        for _ in range(rounds):
            for name, _, url, token in sides:
                result = _load(wrk, url, BODY, 1, seconds, tmp, token)
                if result.get("errors"):
                    print(f"  {name}: errors (refused or failed calls)!")
                p50s[name].append(result["p50"])
        base = statistics.median(p50s["limits off"])
        print(f"\nenforcement overhead, JSON, 1 connection, {rounds} alternating rounds of {seconds} s (median p50):")
        for name, values in p50s.items():
            med = statistics.median(values)
            print(f"  {name:<18} p50 {med:.3f} ms  ({med - base:+.3f} ms vs limits off)")
        if not redis_on:
            print("  limits in Redis: skipped (no Redis on 127.0.0.1:6379)")
    finally:
        for _, side, _, _ in sides:
            stop(side)


def _matrix(wrk: str | None, tmp: Path, fake_url: str, side: subprocess.Popen[bytes], side_url: str) -> int:
    """The table; returns how many calls through the sidecar completed (warm-ups included)."""
    direct = f"{fake_url}/v1/chat/completions"
    proxied = f"{side_url}/openai/v1/chat/completions"
    sent = _load(wrk, proxied, BODY, 4, 1, tmp)["requests"]  # warm up: pool, imports, price table
    sent += _load(wrk, proxied, STREAM_BODY, 4, 1, tmp)["requests"]
    print(
        f"\n{'mode':<7}{'conns':>6} | {'direct rps':>10} {'p50':>7} {'p99':>7} | {'sidecar rps':>11} {'p50':>7}"
        f" {'p99':>7} | {'added p50':>9} {'added p99':>9} | {'CPU/req':>8}"
    )
    for mode, body in (("json", BODY), ("stream", STREAM_BODY)):
        for conns in (1, 16, 64):
            d = _load(wrk, direct, body, conns, DURATION, tmp)
            cpu0 = cpu_seconds(side.pid)
            s = _load(wrk, proxied, body, conns, DURATION, tmp)
            sent += s["requests"]
            cpu = (cpu_seconds(side.pid) - cpu0) / max(s["requests"], 1) * 1e6
            flag = "  (errors!)" if s.get("errors") or d.get("errors") else ""
            print(
                f"{mode:<7}{conns:>6} | {d['rps']:>10.0f} {d['p50']:>6.2f}m {d['p99']:>6.2f}m | {s['rps']:>11.0f}"
                f" {s['p50']:>6.2f}m {s['p99']:>6.2f}m | {s['p50'] - d['p50']:>+8.2f}m {s['p99'] - d['p99']:>+8.2f}m"
                f" | {cpu:>6.0f}us{flag}",
                flush=True,
            )
    return int(sent)


def _recorded_once(data_dir: Path, completed: int) -> None:
    """Every completed call is one row of ``proxy_events``: nothing lost, nothing twice.

    A load generator stopping mid-call may leave a call the sidecar answered (and recorded) but
    the generator did not count, so rows may exceed ``completed`` by at most the calls in flight
    at each run's cut; fewer rows than completed calls would be a loss.
    """
    (db,) = data_dir.glob("*.db")
    with sqlite3.connect(db) as conn:
        rows, ids, cut = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id), SUM(client_gone) FROM proxy_events"
        ).fetchone()
    verdict = "nothing lost" if rows >= completed and ids == rows else "LOST OR DOUBLED"
    print(
        f"\nrecorded: {rows:,} events for {completed:,} calls wrk completed ({rows - completed:+,} answered as wrk"
        f" stopped; {cut or 0} of them cut mid-call), {ids:,} distinct ids: {verdict}"
    )


def start_workers(tmp: Path, fake_url: str, workers: int) -> tuple[subprocess.Popen[bytes], str, list[int]]:
    """``llm-usage proxy --workers N`` (the command itself); returns it, its URL and the workers' pids."""
    port = free_port()
    env = {
        **os.environ,
        "LLM_USAGE_DATA_DIR": str(tmp / f"data-workers-{workers}"),
        "LLM_USAGE_PROXY_OPENAI_URL": f"{fake_url}/v1",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [str(Path(sys.executable).parent / "llm-usage"), "proxy", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(f"{url}/healthz", proc)
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < workers and time.monotonic() < deadline:  # each new connection may reach another worker
        pids.add(httpx.get(f"{url}/healthz").json()["pid"])
    return proc, url, sorted(pids)


def _workers(wrk: str | None, tmp: Path, fake_url: str, side_url: str, rounds: int = 3, seconds: int = 3) -> None:
    """16 connections, JSON: direct, one worker and two workers (``--workers 2``), alternating rounds."""
    proc, url, pids = start_workers(tmp, fake_url, 2)
    try:
        targets = {
            "direct": f"{fake_url}/v1/chat/completions",
            "1 worker": f"{side_url}/openai/v1/chat/completions",
            f"--workers 2 ({len(pids)} up)": f"{url}/openai/v1/chat/completions",
        }
        _load(wrk, targets[f"--workers 2 ({len(pids)} up)"], BODY, 16, 1, tmp)  # warm up both workers
        results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, target in targets.items():
                results[name].append(_load(wrk, target, BODY, 16, seconds, tmp))
        print(f"\nworkers, JSON, 16 connections, {rounds} alternating rounds of {seconds} s (median):")
        for name, runs in results.items():
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50"] for r in runs)
            p99 = statistics.median(r["p99"] for r in runs)
            flag = "  (errors!)" if any(r.get("errors") for r in runs) else ""
            print(f"  {name:<20} {rps:>7.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms{flag}")
    finally:
        stop(proc)


def _writer_ab(wrk: str | None, tmp: Path, fake_url: str, rounds: int = 5, seconds: int = 3) -> None:
    """1 connection, JSON: the journal committed by a thread of the sidecar or by its child process.

    Alternating rounds against two sidecars that differ only in ``LLM_USAGE_PROXY_WRITER_PROCESS``,
    so both see the same machine: the p99 difference is what moving the writer's work out of the
    serving process (and below it in CPU priority) buys.
    """
    sides = {
        name: start_sidecar(
            tmp, fake_url, data_dir=tmp / f"data-writer-{flag}", extra_env={"LLM_USAGE_PROXY_WRITER_PROCESS": flag}
        )
        for name, flag in (("writer thread", "false"), ("writer process", "true"))
    }
    try:
        targets = {"direct": f"{fake_url}/v1/chat/completions"}
        targets |= {name: f"{url}/openai/v1/chat/completions" for name, (_, url) in sides.items()}
        for target in targets.values():
            _load(wrk, target, BODY, 4, 1, tmp)  # warm up
        results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, target in targets.items():
                proc = sides[name][0] if name in sides else None
                cpu0 = cpu_seconds(proc.pid) if proc else 0.0
                run = _load(wrk, target, BODY, 1, seconds, tmp)
                run["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / max(run["requests"], 1) * 1e6 if proc else 0.0
                results[name].append(run)
        print(f"\njournal writer, JSON, 1 connection, {rounds} alternating rounds of {seconds} s (median):")
        d50, d99 = (statistics.median(r[k] for r in results["direct"]) for k in ("p50", "p99"))
        for name, runs in results.items():
            p50, p99, cpu = (statistics.median(r[k] for r in runs) for k in ("p50", "p99", "cpu_us"))
            added = f"  added p50 {p50 - d50:+.2f} / p99 {p99 - d99:+.2f} ms, {cpu:.0f} us CPU per call" if cpu else ""
            print(f"  {name:<16} p50 {p50:.2f} ms  p99 {p99:.2f} ms{added}")
    finally:
        for proc, _ in sides.values():
            stop(proc)


def _loops(wrk: str | None, tmp: Path, fake_url: str) -> None:
    print("\nevent loop / HTTP parser of the sidecar, JSON, 1 and 16 connections (3 s each):")
    for loop, http in (("asyncio", "h11"), ("uvloop", "httptools")):
        side, side_url = start_sidecar(tmp, fake_url, loop, http)
        try:
            url = f"{side_url}/openai/v1/chat/completions"
            _load(wrk, url, BODY, 4, 1, tmp)
            one = _load(wrk, url, BODY, 1, 3, tmp)
            many = _load(wrk, url, BODY, 16, 3, tmp)
            print(
                f"  {loop + ' + ' + http:<20} 1 conn: p50 {one['p50']:.2f} ms, p99 {one['p99']:.2f} ms;"
                f" 16 conns: {many['rps']:.0f} req/s"
            )
        finally:
            stop(side)


def _record_cost(tmp: Path, n: int = 20_000) -> None:
    """Per-call cost of journaling an event on the request path, against a queue put (same run)."""
    import queue

    from collector.proxy.recorder import Recorder, new_event_id
    from collector.proxy.spool import Spool

    event = {
        "id": new_event_id(), "ts": time.time(), "provider": "openai", "upstream": "openai",
        "endpoint": "chat.completions", "method": "POST", "model": "gpt-4o-mini-2024-07-18", "status": 200,
        "stream": False, "partial": False, "usage_known": True, "error": "", "input_tokens": 120,
        "cache_read_tokens": 20, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0, "output_tokens": 35,
        "reasoning_tokens": 4, "latency_ms": 1.234, "ttfb_ms": 0.9, "team": "", "project": "", "token_id": 0,
        "api_key_fp": "fp_0123456789abcdef0123", "service_tier": "default", "response_id": "chatcmpl-x",
        "client_gone": False,
    }  # fmt: skip
    spool = Spool(tmp / "record-cost")
    spool.open()  # the writer thread is not started: this measures the request path alone
    recorder = Recorder(None, spool)
    q: queue.Queue[dict[str, object]] = queue.Queue()
    journal, put = [], []
    for _ in range(n):
        t = time.perf_counter_ns()
        recorder.record(event)
        journal.append((time.perf_counter_ns() - t) / 1000)
        t = time.perf_counter_ns()
        q.put_nowait(event)
        put.append((time.perf_counter_ns() - t) / 1000)
    spool.close()
    print(
        f"\nrecording on the request path, {n} calls: journal write p50 {pct(journal, 50):.1f} /"
        f" p99 {pct(journal, 99):.1f} us; in-memory queue put (before the journal) p50 {pct(put, 50):.1f} /"
        f" p99 {pct(put, 99):.1f} us"
    )


def enforcement_only() -> None:
    """Only the enforcement comparison (the fake upstream and three sidecars)."""
    wrk = ensure_wrk()
    print(f"load generator: {'wrk (' + wrk + ')' if wrk else 'asyncio httpx (wrk unavailable)'}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fake_port = free_port()
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.upstream", str(fake_port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        fake_url = f"http://127.0.0.1:{fake_port}"
        try:
            wait_up(f"{fake_url}/v1/models", fake)
            _enforcement(wrk, tmp, fake_url)
        finally:
            stop(fake)


if __name__ == "__main__":
    enforcement_only() if sys.argv[1:] == ["enforcement"] else main()
