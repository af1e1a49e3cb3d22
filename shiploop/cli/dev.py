"""`shiploop dev SERVICE [--as NAME]`: the service from the working tree, behind the real gateway, for one developer.

It runs the service's command from its directory (no snapshot) with the
environment a deployed version gets, and routes to it only the requests that
carry `x-shiploop-dev: NAME` (a lease, as `shiploop intercept` holds one). On
every saved change (watchfiles; .gitignore and .shiploopignore honoured) it
starts the new code beside the old one, and once it is healthy points the
route at it and stops the old one: a version that fails to start leaves the
previous one serving and shows why. Each change reports the time from the save
to the first answer of the new code through the gateway.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from shiploop.cli.client import DaemonClient
from shiploop.cli.consoles import LazyConsole
from shiploop.cli.intercept_cmd import claim_or_explain, die_with_parent, stop_on_signals
from shiploop.cli.lease import LeaseKeeper, curl_line, line_buffered, user_name, without_hint
from shiploop.errors import Conflict, NotFound, ShiploopError
from shiploop.paths import find_root
from shiploop.procs import free_port, terminate_group

if TYPE_CHECKING:
    from shiploop.contract import Intercept

DEV_HEADER = "x-shiploop-dev"
READY_TIMEOUT_S = 15.0  # a new version not healthy by then has failed; the previous one keeps serving
SERVED_TIMEOUT_S = 5.0
console = LazyConsole(highlight=False)
err = LazyConsole(stderr=True, highlight=False)


def say(text: str, style: str | None = None) -> None:
    console.print(text, style=style, markup=False, soft_wrap=True)


# -- one run of the working tree -------------------------------------------------------------------


@dataclass
class RunSpec:
    """How to run the working tree: read again from its service.yaml before every start."""

    directory: Path
    command: list[str]
    env: dict[str, str]
    health_path: str


def load_run_spec(root: Path, service: str) -> RunSpec:
    from shiploop.spec import load_project, load_service

    project = load_project(root)
    if service not in project.services:
        known = ", ".join(project.services) or "none"
        raise NotFound(f"unknown service '{service}'", hint=f"services in this project: {known}")
    directory = project.services[service].directory
    spec = load_service(directory / "service.yaml", project.defaults)
    return RunSpec(directory, list(spec.run.command), dict(spec.run.env), spec.health.path)


def _resolve_command(command: list[str]) -> list[str]:
    # As the runtime does: "python" is the interpreter shiploop runs on, with its packages.
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return command


@dataclass
class DevProcess:
    port: int
    proc: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _reader: threading.Thread | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            terminate_group(self.proc.pid, 3.0)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._reader is not None:
            self._reader.join(timeout=1)


def start_process(run: RunSpec, env: dict[str, str], show: Callable[[str], None]) -> DevProcess:
    on_parent_death = die_with_parent()
    """Start the working tree on a free port; its output goes to `show`, line by line, and to its tail."""
    port = free_port()
    full_env = dict(os.environ, **run.env, **env, PORT=str(port), PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(
            _resolve_command(run.command),
            cwd=run.directory,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped whole, children too
            preexec_fn=on_parent_death,  # and never outlives this CLI, even after kill -9
        )
    except OSError as e:
        raise ShiploopError(
            f"cannot start {run.command[0]!r}: {e.strerror}",
            where=f"{run.directory.name}/service.yaml run.command",
            hint="the command must be an executable on PATH or a path inside the service directory",
        ) from None
    dev = DevProcess(port, proc)
    assert proc.stdout is not None
    dev._reader = threading.Thread(target=_pump, args=(proc.stdout, dev.tail, show), daemon=True)
    dev._reader.start()
    return dev


def _pump(stream: IO[bytes], tail: deque[str], show: Callable[[str], None]) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        show(line)


def healthy(port: int, path: str) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", path)
        return 200 <= conn.getresponse().status < 300
    except OSError:
        return False
    finally:
        conn.close()


def wait_healthy(dev: DevProcess, path: str, timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """None once the process answers its health check; else why it failed, with its last output."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not dev.alive():
            time.sleep(0.05)  # let the reader take its last lines
            return f"exited with code {dev.proc.returncode}"
        if healthy(dev.port, path):
            return None
        if time.monotonic() > deadline:
            return f"not healthy on {path} after {timeout_s:g}s"
        time.sleep(0.01)


def tunnel_reached(keeper: LeaseKeeper, port: int) -> Callable[[], bool] | None:
    """Through a tunnel: whether a connection through it has reached `port` yet."""
    tunnel = keeper.tunnel
    if tunnel is None:
        return None
    return lambda: port in tunnel.opened


def wait_served(
    i: Intercept, timeout_s: float = SERVED_TIMEOUT_S, from_port: Callable[[], bool] | None = None
) -> float | None:
    """When the gateway first answered a request carrying the header from the intercept's
    current target (Envoy names it in x-shiploop-version); None if not within the timeout.

    Through a tunnel the name stays the shared host's tunnel port: `from_port` then says
    whether the new process has had a connection through it yet (cli/tunnel_client.py)."""
    import http.client
    from urllib.parse import urlsplit

    gateway = urlsplit(i.gateway)
    path = i.paths[0] if i.paths else "/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(gateway.hostname or "127.0.0.1", gateway.port or 80, timeout=2.0)
        try:
            conn.request("GET", path, headers={i.header: i.value})
            resp = conn.getresponse()
            resp.read()
            if resp.getheader("x-shiploop-version") == i.label and (from_port is None or from_port()):
                return time.time()
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.005)
    return None


# -- what counts as a change -------------------------------------------------------------------------


class ChangeFilter:
    """watchfiles' default filter (editor swap files, caches) plus the directory's .gitignore and .shiploopignore."""

    def __init__(self, directory: Path) -> None:
        import watchfiles

        from shiploop.versions.snapshot import IgnoreRules

        self.directory = directory.resolve()
        self._default = watchfiles.DefaultFilter()
        self._rules_for = IgnoreRules.for_directory
        self.rules = self._rules_for(self.directory)

    def reload(self) -> None:
        self.rules = self._rules_for(self.directory)

    def __call__(self, change: Any, path: str) -> bool:
        if not self._default(change, path):
            return False
        try:
            rel = Path(path).resolve().relative_to(self.directory).as_posix()
        except ValueError:
            return False
        parts = rel.split("/")
        for n in range(1, len(parts)):
            if self.rules.ignored("/".join(parts[:n]), True):
                return False
        return not self.rules.ignored(rel, Path(path).is_dir())


def saved_at(paths: list[str]) -> float:
    """When the change was saved: the newest modification time among the changed files that still exist
    (an editor's temporary file, renamed over the real one, is gone by now); now if none does."""
    times = []
    for p in paths:
        try:
            times.append(os.stat(p).st_mtime)
        except OSError:
            continue
    return max(times) if times else time.time()


def shown_paths(paths: list[str], directory: Path) -> str:
    """The changed files to name: those that still exist (not an editor's temporary file), at most three."""
    existing = [p for p in paths if os.path.exists(p)] or paths
    names = [os.path.relpath(p, directory) for p in existing]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


# -- the command --------------------------------------------------------------------------------------


def dev(
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="the service to run from the working tree")],
    name: Annotated[
        str | None,
        typer.Option(
            "--as", metavar="NAME", help=f"route the requests carrying {DEV_HEADER}: NAME (default: your user name)"
        ),
    ] = None,
) -> None:
    """Run SERVICE from the working tree behind the gateway for your requests only; restart it on every save."""
    import watchfiles

    from shiploop.contract import Status

    root = find_root(Path.cwd())
    line_buffered()
    name = name or user_name()
    run = load_run_spec(root, service)
    status = DaemonClient(root).get(Status, "/v1/status")
    env = {"SHIPLOOP_SERVICE": service, "SHIPLOOP_VERSION": f"dev-{name}", "SHIPLOOP_GATEWAY": status.gateway}

    def show(line: str) -> None:
        console.print(f"  | {line}", markup=False, highlight=False, soft_wrap=True)

    stop_on_signals()
    started = time.monotonic()
    current = start_process(run, env, show)
    why = wait_healthy(current, run.health_path)
    if why is not None:
        current.stop()
        raise ShiploopError(
            f"{service} from the working tree {why}: {current.tail[-1] if current.tail else 'no output'}",
            hint=f"fix it, then: shiploop dev {service}",
        )
    request = {"header": DEV_HEADER, "value": name, "port": current.port, "kind": "dev"}
    keeper = LeaseKeeper(root, service, request, lambda text: err.print(text, markup=False, soft_wrap=True))
    times: list[float] = []
    claimed = False
    try:
        try:
            i = claim_or_explain(keeper, takeover=False)
        except Conflict as e:
            raise Conflict(
                f"{without_hint(e.line())}",
                hint=f"use another name: shiploop dev {service} --as {shlex.quote(name + '-2')}",
            ) from None
        claimed = True
        keeper.start()
        first = wait_served(i)
        took = f" in {time.monotonic() - started:.1f}s" if first is not None else ""
        say(f"{service} runs from {run.directory} (pid {current.proc.pid}, port {current.port}){took}", "green")
        say(f"your requests: header {DEV_HEADER}: {name}; everyone else's go to stable")
        say(f"try: {curl_line(i)}")
        say("watching for changes; Ctrl-C to stop")
        rules = ChangeFilter(run.directory)
        reported_exit = False
        for changes in watchfiles.watch(
            run.directory, watch_filter=rules, rust_timeout=500, yield_on_timeout=True, step=30
        ):
            if keeper.failed.is_set():
                raise ShiploopError(keeper.lost or "the route was lost")
            if not current.alive() and not reported_exit:
                say(f"{service} exited with code {current.proc.returncode}; save a file to start it again", "red")
                reported_exit = True
            if not changes:
                continue
            paths = sorted({p for _, p in changes})
            saved = saved_at(paths)
            if any(Path(p).name in (".gitignore", ".shiploopignore") for p in paths):
                rules.reload()
            shown = shown_paths(paths, run.directory)
            try:
                if any(Path(p).name == "service.yaml" for p in paths):  # ~50 ms: only when it changed
                    run = load_run_spec(root, service)
                new = start_process(run, env, show)
            except ShiploopError as e:
                say(f"{shown}: cannot start: {e.line()}; the previous version keeps serving", "red")
                continue
            why = wait_healthy(new, run.health_path)
            if why is not None:
                new.stop()
                last = new.tail[-1] if new.tail else "no output"
                say(f"{shown}: the new version {why}: {last}", "red")
                say("the previous version keeps serving; fix it and save again", "red")
                continue
            i = keeper.retarget(new.port)
            served = wait_served(i, from_port=tunnel_reached(keeper, new.port))
            current.stop()
            current, reported_exit = new, False
            if served is None:
                say(f"{shown}: restarted (port {new.port}), but the gateway did not answer from it yet", "yellow")
                continue
            times.append(served - saved)
            say(f"{shown}: saved -> served through the gateway in {(served - saved) * 1000:.0f} ms")
    except KeyboardInterrupt:
        pass
    finally:
        keeper.release()
        current.stop()
        if not claimed:
            pass
        elif times:
            p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
            say(f"{len(times)} change(s): save -> served p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
        else:
            say("no change served this session")
