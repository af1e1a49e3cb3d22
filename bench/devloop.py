"""The inner loop: save -> served in `shiploop dev`, the intercept path's added latency, lease removal after kill -9.

    .venv/bin/python -m bench.devloop [--edits 20] [--requests 2000] [--kills 20]

On a copy of examples/shop, run by a real daemon and Envoy (`shiploop up`):

1. save -> served: `shiploop dev api --as bench` runs the shop's api from the
   working tree. The benchmark rewrites api/app.py (a comment line) `--edits`
   times; for each it takes the time from the write to the first response
   through the gateway, with `x-shiploop-dev: bench`, from the new process (Envoy
   names the target's port in x-shiploop-version; one keep-alive GET about every
   millisecond). The CLI's own report of each change (from the file's mtime)
   is recorded beside it.
2. intercept path: bench/fast_app.py on a local port, `shiploop intercept api
   -H x-bench=1 --port P`; `--requests` sequential GETs straight to P and as many
   through the gateway with the header, in alternating blocks of 100, each on one
   keep-alive connection (http.client), in the same run. Added latency = the
   difference of the two distributions' percentiles.
3. lease: `--kills` intercept CLIs (5 at a time, each on its own header value),
   each killed with SIGKILL at a random moment 1-3 s after its route serves (so
   at every phase of the 2 s renewal); the time from the kill to the first
   request with its header answered by stable (polled every ~20 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from bench.common import REPO, machine, percentile, print_header, start_fast_app, summary_ms, table, write_results

NAME = "devloop"
SHIPLOOP = [sys.executable, "-m", "shiploop.cli"]


def summary(samples_s: list[float]) -> dict[str, Any]:
    """summary_ms with p95 (the issue's bound is on p50 and p95)."""
    out = summary_ms(samples_s)
    if samples_s:
        out["p95_ms"] = percentile([x * 1000 for x in samples_s], 0.95)
    return out


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.gateway = ""

    def cli(self, *args: str) -> str:
        out = subprocess.run([*SHIPLOOP, *args], cwd=self.root, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"shiploop {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def spawn(self, *args: str) -> Spawned:
        return Spawned(self.root, *args)


class Spawned:
    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*SHIPLOOP, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in ln for ln in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no '{text}' from {self.proc.args}: {self.lines[-5:]}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Gateway:
    """One keep-alive connection to the gateway (or any HTTP server)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=5)

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, str]:
        try:
            self.conn.request("GET", path, headers=headers)
            resp = self.conn.getresponse()
            resp.read()
            return resp.status, resp.getheader("x-shiploop-version") or ""
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return 0, ""


# -- 1. save -> served ----------------------------------------------------------------------------------


def save_to_served(p: Project, edits: int) -> dict[str, Any]:
    dev = p.spawn("dev", "api", "--as", "bench")
    app = p.root / "api" / "app.py"
    original = app.read_text()
    measured: list[float] = []
    try:
        dev.wait_for("watching for changes")
        gw = Gateway(p.gateway)
        header = {"x-shiploop-dev": "bench"}
        label = gw.get("/api/", header)[1]
        for n in range(edits):
            app.write_text(original + f"\n# devloop edit {n}\n")
            written = time.time()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                _, now_label = gw.get("/api/", header)
                if now_label.startswith("api@dev:") and now_label != label:
                    measured.append(time.time() - written)
                    label = now_label
                    break
                time.sleep(0.001)
            else:
                raise RuntimeError(f"edit {n} was not served within 10 s: {dev.lines[-5:]}")
            time.sleep(0.3)  # the old process stops; the next save is a separate change
    finally:
        app.write_text(original)
        dev.stop()
    reported = [
        int(m.group(1)) / 1000 for ln in dev.lines if (m := re.search(r"served through the gateway in (\d+) ms", ln))
    ]
    return {"bench": summary(measured), "cli_reported": summary(reported[:edits])}


# -- 2. the intercept path's added latency -----------------------------------------------------------------


def intercept_overhead(p: Project, requests: int, work: Path) -> dict[str, Any]:
    app = start_fast_app("local", work / "apps")
    icpt = p.spawn("intercept", "api", "-H", "x-bench=1", "--port", str(app.port))
    try:
        icpt.wait_for("Ctrl-C to stop")
        direct, through = Gateway(f"http://127.0.0.1:{app.port}"), Gateway(p.gateway)
        header = {"x-bench": "1"}
        status, label = through.get("/api/", header)
        assert status == 200 and label.startswith("api@intercept:"), (status, label)
        times: dict[str, list[float]] = {"direct": [], "gateway": []}
        for _ in range(50):  # warm both connections and Envoy
            direct.get("/", {})
            through.get("/api/", header)
        for _ in range(max(1, requests // 100)):
            for name, client, path in (("direct", direct, "/"), ("gateway", through, "/api/")):
                for _ in range(100):
                    t0 = time.perf_counter()
                    client.get(path, header)
                    times[name].append(time.perf_counter() - t0)
    finally:
        icpt.stop()
        app.stop()
    out = {name: summary(t) for name, t in times.items()}
    out["added_ms"] = {
        q: out["gateway"][f"{q}_ms"] - out["direct"][f"{q}_ms"] for q in ("p50", "p90", "p99") if out["direct"]["count"]
    }
    return out


# -- 3. lease removal after kill -9 --------------------------------------------------------------------------


def lease_removal(p: Project, kills: int, work: Path, batch: int = 5) -> dict[str, Any]:
    app = start_fast_app("lease", work / "apps")
    removal: list[float] = []
    try:
        for start in range(0, kills, batch):
            runs = [f"r{i}" for i in range(start, min(kills, start + batch))]
            clis = {r: p.spawn("intercept", "api", "-H", f"x-lease={r}", "--port", str(app.port)) for r in runs}
            for c in clis.values():
                c.wait_for("Ctrl-C to stop")
            clients = {r: Gateway(p.gateway) for r in runs}
            for r in runs:
                assert clients[r].get("/api/", {"x-lease": r})[1].startswith("api@intercept:")
            kill_at = {r: time.monotonic() + random.uniform(1.0, 3.0) for r in runs}
            killed: dict[str, float] = {}
            pending = set(runs)
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for r in sorted(pending):
                    if r not in killed and time.monotonic() >= kill_at[r]:
                        clis[r].proc.kill()
                        killed[r] = time.monotonic()
                    if r in killed:
                        status, label = clients[r].get("/api/", {"x-lease": r})
                        if status and not label.startswith("api@intercept:"):
                            removal.append(time.monotonic() - killed[r])
                            pending.discard(r)
                time.sleep(0.02)
            for c in clis.values():
                c.stop(signal.SIGKILL)
            if pending:
                raise RuntimeError(f"routes of {sorted(pending)} still served 30 s after their CLI was killed")
    finally:
        app.stop()
    return {"removal": summary(removal), "runs": len(removal), "max_s": max(removal) if removal else None}


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    info = machine()
    print_header(
        "devloop: shiploop dev and intercept",
        "save -> served through the gateway; the intercept path's added latency; lease removal after kill -9",
        f"{args.edits} edits of examples/shop api/app.py under `shiploop dev`; {args.requests} GETs direct vs "
        f"through Envoy's intercept route; {args.kills} intercept CLIs killed with SIGKILL (see the module docstring)",
        info,
    )
    work = Path(tempfile.mkdtemp(prefix="devloop-"))
    root = work / "shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns(".shiploop"))
    p = Project(root)
    p.cli("up", "--detach", "--port", "0")
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    nan = float("nan")
    try:
        p.gateway = json.loads(p.cli("status", "--json"))["gateway"]
        results["save_to_served"] = loop = save_to_served(p, args.edits)
        print(
            table(
                ["save -> served", "n", "p50 ms", "p95 ms", "max ms"],
                [
                    [who, s["count"], s.get("p50_ms", nan), s.get("p95_ms", nan), s.get("max_ms", nan)]
                    for who, s in (
                        ("measured by the bench", loop["bench"]),
                        ("reported by the CLI", loop["cli_reported"]),
                    )
                ],
            )
        )
        results["intercept_overhead"] = o = intercept_overhead(p, args.requests, work)
        print()
        rows = [
            [what, o[key]["count"], *(o[key][f"{q}_ms"] for q in ("p50", "p90", "p99"))]
            for what, key in (
                ("straight to the local process", "direct"),
                ("through the gateway's intercept", "gateway"),
            )
        ]
        rows.append(["added by the intercept path", "", *(o["added_ms"][q] for q in ("p50", "p90", "p99"))])
        print(table(["GET /", "n", "p50 ms", "p90 ms", "p99 ms"], rows))
        results["lease"] = lease = lease_removal(p, args.kills, work)
        print()
        r = lease["removal"]
        print(
            table(
                ["route removed after kill -9 of the CLI", "runs", "p50 s", "p95 s", "max s"],
                [
                    [
                        "kill -> header served by stable",
                        r["count"],
                        r["p50_ms"] / 1000,
                        r["p95_ms"] / 1000,
                        r["max_ms"] / 1000,
                    ]
                ],
            )
        )
    finally:
        try:
            p.cli("down")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    write_results(NAME, results)


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()
