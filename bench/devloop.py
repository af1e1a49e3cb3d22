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
4. remote (root and `ip` needed; else skipped with the reason): a second copy
   of the shop on a shared host, `shiploop up --listen` in one network
   namespace, the developer in another joined by a veth pair (tests/netns.py).
   The developer's process is tests/apps/dev_app.py; `shiploop intercept api
   -H x-bench=1 --port P` there tunnels to it. From the developer's side, in
   the same run: `--requests` GETs straight to P and through the shared host's
   gateway (so through the tunnel) in alternating blocks of 100, one keep-alive
   connection each; POST throughput at 1 KB and 1 MB bodies echoed back, direct
   and tunnelled; and a streamed response whose last chunk the app holds until
   the client has its first (time to the first chunk, and whether it came
   before the last was sent).
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


def alternating_blocks(
    direct: Gateway, through: Gateway, name: str, header: dict[str, str], requests: int
) -> dict[str, list[float]]:
    """Sequential GETs straight to the app (`/`) and through the route (`/api/`, named `name`), in
    alternating blocks of 100 on one keep-alive connection each: both see the same machine moments."""
    times: dict[str, list[float]] = {"direct": [], name: []}
    for _ in range(50):  # warm both connections and Envoy
        direct.get("/", header)
        through.get("/api/", header)
    for _ in range(max(1, requests // 100)):
        for key, client, path in (("direct", direct, "/"), (name, through, "/api/")):
            for _ in range(100):
                t0 = time.perf_counter()
                client.get(path, header)
                times[key].append(time.perf_counter() - t0)
    return times


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
        times = alternating_blocks(direct, through, "gateway", header, requests)
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


# -- 4. the tunnelled path (two network namespaces) ----------------------------------------------------------


def remote_tunnel(requests: int, work: Path) -> dict[str, Any]:
    from tests.netns import Hosts, Unsupported

    try:
        hosts = Hosts.create()
    except Unsupported as e:
        return {"skipped": str(e)}
    root = work / "shared-shop"
    shutil.copytree(REPO / "examples" / "shop", root, ignore=shutil.ignore_patterns(".shiploop"))
    laptop = work / "laptop"
    laptop.mkdir()

    def run(ns: str, *args: str, env: dict[str, str] | None = None, cwd: Path = root) -> str:
        out = subprocess.run(
            [*hosts.exec(ns), *SHIPLOOP, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
        )
        if out.returncode != 0:
            raise RuntimeError(f"shiploop {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    app: subprocess.Popen[bytes] | None = None
    icpt: subprocess.Popen[str] | None = None
    try:
        run(hosts.shared, "up", "--detach", "--port", "0", "--listen", f"{hosts.shared_ip}:7443")
        token = run(hosts.shared, "token", "create", "bench").splitlines()[1].strip()
        record = json.loads((root / ".shiploop" / "daemon.json").read_text())
        env = {
            "SHIPLOOP_URL": f"https://{hosts.shared_ip}:7443",
            "SHIPLOOP_TOKEN": token,
            "SHIPLOOP_CA": record["remote"]["cert"],
        }
        gateway = json.loads(run(hosts.dev, "status", "--json", env=env, cwd=laptop))["gateway"]
        port, release = 18090, laptop / "release"
        dev_app = REPO / "tests" / "apps" / "dev_app.py"
        app = subprocess.Popen([*hosts.exec(hosts.dev), sys.executable, str(dev_app), str(port), str(release)])
        icpt = subprocess.Popen(
            [*hosts.exec(hosts.dev), *SHIPLOOP, "intercept", "api", "-H", "x-bench=1", "--port", str(port)],
            cwd=laptop,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )
        assert icpt.stdout is not None
        line = icpt.stdout.readline()
        if "intercepting" not in line:
            raise RuntimeError(f"intercept: {line}")
        out = hosts.call(hosts.dev, lambda: _tunnel_numbers(gateway, port, release, requests))
        # The tunnel alone, without Envoy: from the shared host, straight to the intercept's tunnel port.
        target = json.loads(run(hosts.dev, "intercepts", "--json", env=env, cwd=laptop))[0]["target"]
        out["tunnel_port_direct"] = hosts.call(hosts.shared, lambda: _sequential(f"http://{target}", requests))
        return out
    finally:
        for proc in (icpt, app):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        try:
            run(hosts.shared, "down")
        finally:
            hosts.remove()


def _tunnel_numbers(gateway: str, port: int, release: Path, requests: int) -> dict[str, Any]:
    """On a thread inside the developer's namespace: every connection it opens is the developer's."""
    direct_url = f"http://127.0.0.1:{port}"
    header = {"x-bench": "1"}
    deadline = time.monotonic() + 30
    while Gateway(gateway).get("/api/", header)[0] != 200 or _body(gateway, "/api/", header) != b"dev app":
        if time.monotonic() > deadline:
            raise RuntimeError("the tunnelled route never served")
        time.sleep(0.05)
    direct, through = Gateway(direct_url), Gateway(gateway)
    times = alternating_blocks(direct, through, "tunnel", header, requests)
    out: dict[str, Any] = {name: summary(t) for name, t in times.items()}
    out["added_ms"] = {q: out["tunnel"][f"{q}_ms"] - out["direct"][f"{q}_ms"] for q in ("p50", "p90", "p99")}
    out["throughput"] = {}
    for size, n in ((1024, 500), (1 << 20, 30)):
        body = os.urandom(size)
        for name, url, path in (("direct", direct_url, "/"), ("tunnel", gateway, "/api/upload")):
            host, p = url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(p), timeout=30)
            t0 = time.perf_counter()
            for _ in range(n):
                conn.request("POST", path, body=body, headers=header)
                got = conn.getresponse().read()
                assert got == body, (name, size, len(got))
            took = time.perf_counter() - t0
            conn.close()
            out["throughput"][f"{name} {size // 1024} KB"] = {
                "requests_per_s": n / took,
                "mb_per_s_each_way": n * size / took / 1e6,
            }
    release.unlink(missing_ok=True)
    host, p = gateway.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(p), timeout=30)
    t0 = time.perf_counter()
    conn.request("GET", "/api/stream", headers=header)
    resp = conn.getresponse()
    first = resp.read1(64)
    first_s = time.perf_counter() - t0
    release.write_text("go")  # the app sends its last chunk only now
    rest = resp.read()
    conn.close()
    out["streaming"] = {
        "first_chunk_ms": first_s * 1000,
        "first_before_last_sent": first == b"first\n" and rest == b"last\n",
    }
    return out


def _sequential(url: str, requests: int) -> dict[str, Any]:
    client = Gateway(url)
    for _ in range(50):
        client.get("/", {})
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        client.get("/", {})
        times.append(time.perf_counter() - t0)
    return summary(times)


def _body(url: str, path: str, headers: dict[str, str]) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return b""
    finally:
        conn.close()


def print_remote(r: dict[str, Any]) -> None:
    print()
    if "skipped" in r:
        print(f"remote: skipped ({r['skipped']})")
        return
    rows = [
        [what, r[key]["count"], *(r[key][f"{q}_ms"] for q in ("p50", "p90", "p99"))]
        for what, key in (("straight to the local process", "direct"), ("through the tunnel", "tunnel"))
    ]
    rows.append(["added by the tunnelled path", "", *(r["added_ms"][q] for q in ("p50", "p90", "p99"))])
    t = r["tunnel_port_direct"]
    rows.append(
        ["the tunnel alone (no Envoy; from the host)", t["count"], *(t[f"{q}_ms"] for q in ("p50", "p90", "p99"))]
    )
    print(table(["GET / (two namespaces)", "n", "p50 ms", "p90 ms", "p99 ms"], rows))
    print()
    print(
        table(
            ["POST, body echoed back", "req/s", "MB/s each way"],
            [[k, v["requests_per_s"], v["mb_per_s_each_way"]] for k, v in r["throughput"].items()],
        )
    )
    s = r["streaming"]
    print(
        f"\nstreamed response: first chunk after {s['first_chunk_ms']:.1f} ms, "
        f"before the last was sent: {s['first_before_last_sent']}"
    )


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--remote-only", action="store_true", help="only part 4, the tunnelled path")
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
    if args.remote_only:
        try:
            results = {"machine": info, "args": vars(args), "remote": remote_tunnel(args.requests, work)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print_remote(results["remote"])
        write_results(NAME + "-remote", results)
        return
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
        results["remote"] = remote_tunnel(args.requests, work)
        print_remote(results["remote"])
    finally:
        try:
            p.cli("down")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    write_results(NAME, results)


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()
