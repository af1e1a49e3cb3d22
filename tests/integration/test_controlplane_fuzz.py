"""Random header routes, weights, route regexes and durations thrown at the real daemon API.

Each answer must be a clean 4xx or a success, and afterwards Envoy must serve
exactly what the store holds, and a later valid change must still work: a bad
value is never kept, and never wedges the service.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import string
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import APPS, Project

# 50 examples in `make test` (about 18 s); SHIPLOOP_FUZZ_EXAMPLES=1000 for a longer hunt.
EXAMPLES = int(os.environ.get("SHIPLOOP_FUZZ_EXAMPLES", "50"))
TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
header_names = st.one_of(
    st.text(alphabet=TCHAR, min_size=1, max_size=12),
    st.text(alphabet=TCHAR + ":()\r\n\0 é", max_size=12),
    st.text(max_size=6),
)
header_values = st.one_of(
    st.text(alphabet=string.ascii_letters + " \t", max_size=10),
    st.text(alphabet="ab \t\r\n\0\x7f", max_size=6),
    st.text(max_size=8),
)
weights = st.dictionaries(
    st.sampled_from(["stable", "canary"]), st.one_of(st.integers(0, 100), st.integers(-(10**6), 10**6)), min_size=1
)
regexes = st.one_of(
    st.text(alphabet="^$()[]{}?*+.|\\/az09-=!<>:", max_size=24),
    st.builds(
        "^/{}{}$".format,
        st.text(alphabet="abz09-", max_size=8),
        st.sampled_from(["", ".*", "[0-9]+", "(a|b)?", "x{2,3}"]),
    ),
    st.sampled_from(
        ["^/look(?=ahead).*", r"^/(a)\1$", "^/(" + "|".join(f"i{i}[0-9]+" for i in range(40)) + ")$", "^/i/[0-9]+$"]
    ),
)
durations = st.one_of(
    st.floats(min_value=0, max_value=1e13, allow_nan=False),
    st.floats(min_value=0.001, max_value=3600),
    st.sampled_from(["0.0001s", "500ms", "1e12", "9223372036s", "1h", "-1s", "forever", "2562047h"]),
)
actions = st.one_of(
    st.tuples(st.just("header"), header_names, header_values, st.sampled_from(["stable", "canary"])),
    st.tuples(st.just("weights"), weights),
    st.tuples(st.just("route"), regexes, durations),
)


class Api:
    def __init__(self, project: Project) -> None:
        info = project.daemon_info()
        self.http = loopback.client(
            base_url=f"http://127.0.0.1:{info['api_port']}", headers=project.write_auth(), timeout=60
        )

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(f"/v1/services/echo{path}", json=body or {})

    def tracks(self) -> dict[str, str]:
        """Track -> version id (the CLI would take a second a call to start)."""
        status = self.http.get("/v1/status").json()
        return {v["track"]: v["id"] for s in status["services"] for v in s["versions"]}


def service_yaml(greeting: str, regex: str | None = None, timeout: object = None) -> str:
    route = ""
    if regex is not None:
        route = f"  - regex: {json.dumps(regex)}\n    timeout: {json.dumps(timeout)}\n"
    return (
        f"name: echo\nrun:\n  command: [python, app.py]\n  env: {{GREETING: {greeting}}}\nreplicas: 1\n"
        f"routes:\n  - prefix: /echo/\n{route}"
    )


def stored(project: Project) -> dict[str, Any]:
    db = sqlite3.connect(project.root / ".shiploop" / "state.db")
    try:
        weights = {f"echo_{v}": w for v, t, w in db.execute("SELECT version, track, weight FROM deployments") if w > 0}
        headers = set(db.execute("SELECT header, value, version FROM header_routes"))
        spec = json.loads(db.execute("SELECT spec FROM deployments WHERE track='stable'").fetchone()[0])
    finally:
        db.close()
    return {"weights": weights, "headers": headers, "regexes": sorted(r["regex"] for r in spec["routes"] if r["regex"])}


def published(project: Project) -> dict[str, Any]:
    """What the generation Envoy serves routes (and checks Envoy serves that generation)."""
    current = (project.root / ".shiploop" / "xds" / "current").resolve()
    if not (current / "rds.json").exists():
        return {"serving": False}  # a publish swapped generations meanwhile
    envoy = project.envoy_info()
    assert envoy is not None
    admin = httpx.Client(transport=httpx.HTTPTransport(uds=envoy["admin_socket"]), base_url="http://envoy-admin")
    with admin:
        stats = admin.get(
            "/stats", params={"format": "json", "filter": r"^http\.gateway\.rds\.gateway\.version_text$"}
        ).json()["stats"]
    serving = stats[0]["value"] if stats else None
    try:
        rds = json.loads((current / "rds.json").read_text())["resources"][0]
    except FileNotFoundError:
        return {"serving": False}
    weights: dict[str, int] = {}
    headers: set[tuple[str, str, str]] = set()
    regexes = set()
    for vhost in rds["virtual_hosts"]:
        for route in vhost["routes"]:
            action = route["route"]
            targets = (
                {c["name"]: c["weight"] for c in action["weighted_clusters"]["clusters"]}
                if "weighted_clusters" in action
                else {action["cluster"]: 100}
            )
            if "-h" in route["name"]:
                for h in route["match"]["headers"]:
                    headers.add((h["name"], h["string_match"]["exact"], next(iter(targets)).split("_", 1)[1]))
            else:
                weights = targets
                if "safe_regex" in route["match"]:
                    regexes.add(route["match"]["safe_regex"]["regex"])
    return {
        "weights": weights,
        "headers": headers,
        "regexes": sorted(regexes),
        "serving": serving == str(int(current.name[4:])),
    }


@pytest.fixture
def project(project: Project) -> Project:
    svc = project.root / "echo"
    svc.mkdir()
    shutil.copy(APPS / "echo_app.py", svc / "app.py")
    (svc / "service.yaml").write_text(service_yaml("v1"))
    return project


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_random_config_is_refused_cleanly_or_served_exactly_never_wedged(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    api = Api(project)
    spec = project.root / "echo" / "service.yaml"
    counter = iter(range(10**6))

    def ensure_canary() -> None:
        if "canary" not in api.tracks():
            spec.write_text(service_yaml(f"c{next(counter)}"))
            assert api.post("/deploy", {"weight": 0}).status_code == 200

    def expect_clean(r: httpx.Response) -> None:
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
        if r.status_code != 200:
            error = r.json().get("error") or json.dumps(r.json().get("detail"))
            reached = ("envoy rejected", "envoy did not apply", "admin api")
            assert not any(s in error for s in reached), f"a value reached Envoy before it was checked: {error}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        database=None,
        # Each example drives real processes: shrinking would take minutes, the failing
        # example as drawn is readable enough.
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
    )
    @given(action=actions)
    def check(action: tuple[Any, ...]) -> None:
        ensure_canary()
        if action[0] == "header":
            _, name, value, target = action
            expect_clean(api.post("/header-routes", {"header": name, "value": value, "version": target}))
        elif action[0] == "weights":
            expect_clean(api.post("/weights", {"weights": action[1]}))
        else:
            _, regex, timeout = action
            spec.write_text(service_yaml(f"r{next(counter)}", regex, timeout))
            r = api.post("/deploy", {"weight": 0})
            expect_clean(r)
            if r.status_code == 200:
                # Routes follow the stable version: promote so Envoy sees the new route.
                expect_clean(api.post("/promote"))

        def consistent() -> bool:
            have, want = published(project), stored(project)
            return bool(have.pop("serving")) and have == want

        wait_until(consistent, 15, interval=0.1, what="Envoy to serve exactly what the store holds")
        # Never wedged: a valid change still goes through and is served.
        assert api.post("/weights", {"weights": {"stable": 100}}).status_code == 200
        stable = api.tracks()["stable"]
        r = loopback.get(f"{project.url}/echo/x")
        assert r.status_code == 200 and r.json()["version"] == stable

    check()
