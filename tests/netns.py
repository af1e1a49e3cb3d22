"""Two hosts on one machine: two network namespaces joined by a veth pair (the remote tests and bench/devloop.py).

Needs root and `ip` (iproute2). `Hosts.create()` raises Unsupported with the
reason when they are missing, so callers can skip with it. A thread can work
inside a namespace (`Hosts.call`): network namespaces are per thread on Linux,
so the test process makes its own connections from either side.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


class Unsupported(Exception):
    pass


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise Unsupported(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@dataclass
class Hosts:
    shared: str  # the namespace of the shared host (daemon, Envoy)
    dev: str  # the developer's (CLI, local process)
    shared_ip: str
    dev_ip: str

    @classmethod
    def create(cls) -> Hosts:
        if os.geteuid() != 0:
            raise Unsupported("needs root to create network namespaces (CI runs as root)")
        if shutil.which("ip") is None:
            raise Unsupported("needs `ip` (iproute2) to create network namespaces")
        tag = os.getpid() % 100000
        net = f"10.{200 + tag % 50}.{tag // 50 % 250}"
        hosts = cls(f"sl-shared-{tag}", f"sl-dev-{tag}", f"{net}.1", f"{net}.2")
        a, b = f"slh{tag}", f"sld{tag}"
        try:
            _ip("netns", "add", hosts.shared)
            _ip("netns", "add", hosts.dev)
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            for ns, link, addr in ((hosts.shared, a, hosts.shared_ip), (hosts.dev, b, hosts.dev_ip)):
                _ip("link", "set", link, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", link)
                _ip("-n", ns, "link", "set", link, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except Unsupported:
            hosts.remove()
            raise
        return hosts

    def remove(self) -> None:
        for ns in (self.shared, self.dev):  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def exec(self, ns: str) -> list[str]:
        """The prefix of a command line run inside `ns` (`ip netns exec` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", ns]

    def call(self, ns: str, fn: Callable[[], T]) -> T:
        """fn() on a thread that entered `ns`: the sockets it opens are that host's."""

        def inside() -> T:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            return fn()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(inside).result()
