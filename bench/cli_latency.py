"""How long CLI commands take to show something, against a running daemon with 3 services.

    .venv/bin/python -m bench.cli_latency [--runs 20] [--baseline DIR]

A temporary project (the `shiploop init` starter's app as three services, one
replica each) is started with `shiploop up --detach`, as a user would. Then
each command runs `--runs` times as a fresh process (two warm-up runs first,
not recorded): `shiploop status` (its fast path), `shiploop versions hello`
(the full command line: typer, an answer parsed with the contract, a rich
table), `shiploop route hello --weight stable=100` (a change) and `shiploop
-h`. For each run we take the time from spawning it to the first byte on its
stdout, and to its exit, and the CPU time (user + system) the process used: on
a machine shared with other work the wall times stretch with the load, the CPU
time much less. The same for `python -c "import shiploop.cli.main"` alone, to
show what imports cost, and `python -c pass`, the interpreter's own floor.
PYTHONDONTWRITEBYTECODE is dropped for these processes: an installed shiploop
has its .pyc files. The daemon is stopped with `shiploop down` at the end,
whatever happens. Target (issue 8, item 6): first output p50 < 250 ms.

--baseline DIR: DIR holds the `shiploop` package of another revision (e.g.
`git archive REV shiploop | tar -x -C DIR`); every command also runs from it
(PYTHONPATH=DIR), each run alternating with this checkout's, so that before and
after are measured on the same machine under the same load.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, percentile, print_header, summary_ms, table, write_results
from shiploop.cli.starter import write_starter
from shiploop.procs import free_port

NAME = "cli_latency"
SERVICES = ("hello", "orders", "search")
TARGET_P50_MS = 250.0
SHIPLOOP = [sys.executable, "-m", "shiploop.cli"]
COMMANDS = (
    ("shiploop status", [*SHIPLOOP, "status"]),
    ("shiploop versions hello", [*SHIPLOOP, "versions", "hello"]),
    ("shiploop route hello --weight stable=100", [*SHIPLOOP, "route", "hello", "--weight", "stable=100"]),
    ("shiploop -h", [*SHIPLOOP, "-h"]),
    ("import shiploop.cli.main", [sys.executable, "-c", "import shiploop.cli.main"]),
    ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
)


def make_project(root: Path) -> None:
    write_starter(root)
    template = (root / "hello" / "service.yaml").read_text().replace("replicas: 2", "replicas: 1")
    (root / "hello" / "service.yaml").write_text(template)
    for name in SERVICES[1:]:
        svc = root / name
        svc.mkdir()
        (svc / "app.py").write_text((root / "hello" / "app.py").read_text())
        (svc / "service.yaml").write_text(template.replace("hello", name))


def summary(samples_s: list[float]) -> dict[str, float]:
    """summary_ms plus the p95 the issue asks for."""
    return {**summary_ms(samples_s), "p95_ms": percentile([s * 1000 for s in samples_s], 0.95)}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env(source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if source is not None:
        env["PYTHONPATH"] = str(source)  # before site-packages: its `shiploop` is imported
    return env


def first_output_and_exit(cmd: list[str], cwd: Path, source: Path | None = None) -> tuple[float, float, float]:
    """Seconds from spawn to the first stdout byte, to exit, and CPU seconds used."""
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(source))
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    first_at = time.perf_counter()
    out, err = proc.communicate()
    done_at = time.perf_counter()
    if proc.returncode != 0 or (not first and "status" in cmd):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode()}")
    return first_at - start, done_at - start, _children_cpu_s() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="the shiploop package of another revision")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "shiploop" / "cli" / "main.py").is_file():
        parser.error(f"{args.baseline} holds no shiploop package (e.g. git archive REV shiploop | tar -x -C DIR)")
    sources: dict[str, Path | None] = {"": None}
    if args.baseline is not None:
        sources[" (baseline)"] = args.baseline.resolve()
    info = machine()
    print_header(
        "CLI latency",
        "time to the first output of CLI commands, daemon running with 3 services",
        f"{args.runs} fresh processes after 2 warm-ups; spawn -> first stdout byte, and -> exit",
        info,
    )
    with tempfile.TemporaryDirectory(prefix="shiploop-cli-latency-") as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        make_project(root)
        subprocess.run([*SHIPLOOP, "up", "--detach", "--port", str(free_port())], cwd=root, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        try:
            results = {}
            for label, cmd in COMMANDS:
                samples: dict[str, tuple[list[float], list[float], list[float]]] = {s: ([], [], []) for s in sources}
                for run in range(2 + args.runs):
                    for suffix, source in sources.items():  # alternating: both see the same load
                        measured = first_output_and_exit(cmd, root, source)
                        if run >= 2:
                            for samples_of, value in zip(samples[suffix], measured, strict=True):
                                samples_of.append(value)
                for suffix, (firsts, totals, cpus) in samples.items():
                    results[label + suffix] = {
                        "first_output": summary(firsts),
                        "exit": summary(totals),
                        "cpu": summary(cpus),
                    }
        finally:
            subprocess.run([*SHIPLOOP, "down"], cwd=root, capture_output=True, timeout=60)
    rows = []
    for label, r in results.items():
        f, e, c = r["first_output"], r["exit"], r["cpu"]
        rows.append([label, f["p50_ms"], f["p95_ms"], e["p50_ms"], c["p50_ms"], c["p95_ms"]])
    print(table(["command", "first output p50 ms", "p95", "exit p50 ms", "CPU p50 ms", "CPU p95"], rows))
    if args.baseline is not None:
        cpu_rows = []
        for label, _ in COMMANDS:
            before, after = results[label + " (baseline)"]["cpu"]["p50_ms"], results[label]["cpu"]["p50_ms"]
            cpu_rows.append([label, before, after, f"{(after - before) / before:+.0%}"])
        print(f"\nCPU p50 ms, baseline {args.baseline} against this checkout:")
        print(table(["command", "baseline", "now", "change"], cpu_rows))
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    p50 = results["shiploop status"]["first_output"]["p50_ms"]
    verdict = "meets" if p50 < TARGET_P50_MS else "MISSES"
    print(f"\nshiploop status: first output p50 {p50:.0f} ms, {verdict} the {TARGET_P50_MS:.0f} ms target")
    extra = {"baseline": str(args.baseline)} if args.baseline is not None else {}
    path = write_results(NAME, {"machine": info, "runs": args.runs, "target_p50_ms": TARGET_P50_MS, **extra, **results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
