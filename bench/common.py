"""What every benchmark shares: the machine description, tables, JSON results, app processes."""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiploop.gateway.envoy import envoy_binary
from shiploop.procs import free_port, terminate_group

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent


# -- the machine -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def envoy_version() -> str:
    try:
        out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    text = out.strip().split("version:", 1)[-1].strip()
    parts = text.split("/")
    return f"{parts[1]} ({'/'.join(parts[2:])})" if len(parts) > 2 else text or "unknown"


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_total_mb": _meminfo_mb("MemTotal"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "envoy": envoy_version(),
        "shiploop_git": git_revision(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Other work on the machine skews every number here; record how busy it was at the start.
        "loadavg_1_5_15": list(os.getloadavg()),
    }


def _meminfo_mb(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def print_header(title: str, what: str, how: str, info: dict[str, Any]) -> None:
    print(f"== {title} ==")
    print(f"what: {what}")
    print(f"how:  {how}")
    print(
        f"on:   {info['cpu_model']}, {info['usable_cpus']} usable of {info['logical_cpus']} CPUs, "
        f"{info['memory_total_mb']} MB RAM, Linux {info['kernel']}"
    )
    print(f"      Python {info['python']}, Envoy {info['envoy']}, shiploop {info['shiploop_git']}, {info['date_utc']}")
    print(f"      load average at start {' '.join(f'{x:.2f}' for x in info['loadavg_1_5_15'])}")
    print(flush=True)


# -- numbers and tables --------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); nan for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p90, p99, max of samples given in seconds, returned in milliseconds."""
    if not samples_s:
        return {"count": 0}
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "count": len(ms),
        "mean_ms": sum(ms) / len(ms),
        "min_ms": ms[0],
        "p50_ms": percentile(ms, 0.50),
        "p90_ms": percentile(ms, 0.90),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": ms[-1],
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table in Markdown pipe syntax, so it can be pasted into docs as is."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    # Text columns (the first row's cell is a str) align left, numbers right.
    left = [bool(rows) and isinstance(rows[0][i], str) and not _numeric(rows[0][i]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = (v.ljust(w) if lf else v.rjust(w) for v, w, lf in zip(values, widths, left, strict=True))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ("-" if lf else ":") for w, lf in zip(widths, left, strict=True)) + "|"
    return "\n".join([line(list(headers)), sep, *(line(r) for r in cells)])


def _numeric(text: str) -> bool:
    return text[:1].isdigit()


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nresults written to {path.relative_to(REPO)}")
    return path


# -- processes -------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    """VmRSS of a live process in kB (from /proc/<pid>/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class AppProcess:
    proc: subprocess.Popen[bytes]
    port: int
    version: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        terminate_group(self.proc.pid, 3)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def start_fast_app(version: str, log_dir: Path, timeout_s: float = 10.0) -> AppProcess:
    """Start bench/fast_app.py on a free port in its own process group; return once it accepts connections."""
    port = free_port()
    env = dict(os.environ, PORT=str(port), SHIPLOOP_VERSION=version, SHIPLOOP_SERVICE="bench")
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"app-{version}-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "fast_app.py")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = AppProcess(proc, port, version)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fast_app {version} exited with code {proc.returncode}; see {log_dir}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return app
        except OSError:
            pass
        if time.monotonic() > deadline:
            app.stop()
            raise RuntimeError(f"fast_app {version} did not listen within {timeout_s:g}s")
        time.sleep(0.02)


@dataclass
class StarterDaemon:
    """A real shiploop daemon serving the `shiploop init` starter project."""

    proc: subprocess.Popen[bytes]
    root: Path
    gateway_port: int
    api: str  # http://127.0.0.1:PORT
    token: str

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"


@contextmanager
def starter_daemon(work: Path, timeout_s: float = 60.0) -> Iterator[StarterDaemon]:
    """Write the starter project under `work`, start its daemon on a free gateway port, and
    yield once the daemon's record is live; at exit ask it to go down, and end whatever it
    left running (replicas and Envoy, by the store's pids) if it crashed."""
    import httpx

    from shiploop.cli.starter import write_starter
    from shiploop.paths import running_daemon, state_dir_of
    from shiploop.server.controlplane import teardown_without_daemon

    root = work / "project"
    write_starter(root)
    gateway_port = free_port()
    log = work / "daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shiploop.daemon", str(root), "--port", str(gateway_port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    daemon: StarterDaemon | None = None
    try:
        deadline = time.monotonic() + timeout_s
        while (info := running_daemon(root)) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not come up within {timeout_s:g} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        token = (state_dir_of(root) / "token").read_text().strip()
        daemon = StarterDaemon(proc, root, gateway_port, f"http://127.0.0.1:{info['api_port']}", token)
        yield daemon
    finally:
        if daemon is not None:
            try:
                httpx.post(f"{daemon.api}/v1/down", headers={"Authorization": f"Bearer {token}"}, timeout=60)
            except httpx.HTTPError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            terminate_group(proc.pid, 5)
            proc.wait(timeout=5)
        teardown_without_daemon(root)
