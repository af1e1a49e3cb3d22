"""The dashboard the daemon serves: its pages and data, and who may act from it (sign-in, CSRF, Origin)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from shiploop.loadgen import LoadSpec, run_load_sync
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project

PAUSE = "/v1/dashboard/services/echo/rollout/pause"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = Project(tmp_path_factory.mktemp("dashboard") / "proj")
    p.root.mkdir()
    (p.root / "shiploop.yaml").write_text("name: dash\n")
    p.add_service("echo", "/echo/")
    p.cli("up", "--detach", "--port", str(p.port))
    yield p
    procs = p.recorded_processes()
    p.cli("down", check=False)
    assert p.running(procs) == []


def api(project: Project) -> str:
    return f"http://127.0.0.1:{project.daemon_info()['api_port']}"


def login_url(project: Project) -> str:
    url = project.cli("dashboard").stdout.strip()
    assert url.startswith(f"{api(project)}/login?code="), url
    return url


def signed_in(project: Project) -> tuple[httpx.Client, str]:
    """A client holding a session cookie, and the session's CSRF token."""
    c = loopback.client(base_url=api(project))
    r = c.get(login_url(project))
    assert r.status_code == 303 and r.headers["location"] == "/"
    session = c.get("/v1/dashboard/session").json()
    assert session["signed_in"] is True and session["csrf"]
    return c, session["csrf"]


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_login_code_opens_an_httponly_strict_session_once(project: Project):
    url = login_url(project)
    first = loopback.get(url)
    assert first.status_code == 303
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"shiploop_session_{project.daemon_info()['api_port']}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    again = loopback.get(url)
    assert again.status_code == 403 and "set-cookie" not in again.headers
    assert "shiploop dashboard" in again.text
    assert loopback.get(f"{api(project)}/login?code=guessed").status_code == 403
    # Without a cookie the page is read-only.
    assert loopback.get(f"{api(project)}/v1/dashboard/session").json() == {
        "signed_in": False,
        "csrf": None,
        "csrf_header": "X-Shiploop-CSRF",
    }


def test_mutation_needs_the_session_cookie_and_its_csrf_token_or_the_api_token(project: Project):
    base = api(project)
    origin = {"Origin": base}
    c, csrf = signed_in(project)
    with closing(c):
        # No cookie at all: refused, even with a CSRF-looking header and the right Origin.
        r = loopback.post(f"{base}{PAUSE}", headers={**origin, "X-Shiploop-CSRF": csrf})
        assert r.status_code == 401, r.text
        # A cookie but no (or a wrong) CSRF header: refused.
        assert c.post(PAUSE, headers=origin).status_code == 403
        assert c.post(PAUSE, headers={**origin, "X-Shiploop-CSRF": "x" + csrf}).status_code == 403
        # A stale cookie that no session has: refused.
        stale = loopback.post(
            f"{base}{PAUSE}",
            headers={**origin, "X-Shiploop-CSRF": csrf},
            cookies={f"shiploop_session_{project.daemon_info()['api_port']}": "made-up"},
        )
        assert stale.status_code == 401
        # All three: the request reaches the controller (which has no rollout to pause).
        ok = c.post(PAUSE, headers={**origin, "X-Shiploop-CSRF": csrf})
        assert ok.status_code == 409 and "has no rollout in progress" in ok.json()["error"], ok.text
    # The API token works as it does everywhere.
    r = loopback.post(f"{base}{PAUSE}", headers=project.write_auth())
    assert r.status_code == 409 and "has no rollout in progress" in r.json()["error"]
    assert loopback.post(f"{base}/v1/dashboard/login-code").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:{other}"},
        {"Origin": "null"},
        {},  # neither Origin nor Referer
        {"Referer": "http://evil.example/page"},
    ],
)
def test_cross_origin_post_is_refused_even_with_cookie_and_csrf_token(project: Project, headers: dict[str, str]):
    c, csrf = signed_in(project)
    other = project.daemon_info()["api_port"] + 1
    with closing(c):
        r = c.post(PAUSE, headers={**{k: v.format(other=other) for k, v in headers.items()}, "X-Shiploop-CSRF": csrf})
    assert r.status_code == 403 and "own origin" in r.json()["error"], r.text


def test_dashboard_pages_follow_the_host_check(project: Project):
    base = api(project)
    for path in ("/", "/static/app.js", "/v1/dashboard/overview", f"/login?code={'x' * 10}"):
        assert loopback.get(f"{base}{path}", headers={"Host": "evil.example"}).status_code == 421, path
    page = loopback.get(f"{base}/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    # Offline: nothing the page loads comes from elsewhere.
    static = Path(__file__).parents[2] / "shiploop" / "daemon" / "static"
    for f in static.iterdir():
        assert "http://" not in f.read_text() and "https://" not in f.read_text(), f.name


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_traffic_series_shows_the_load_sent(project: Project):
    report = run_load_sync(LoadSpec(f"{project.url}/echo/x", rps=50, duration_s=3))
    base = api(project)

    def counted() -> int:
        overview = loopback.get(f"{base}/v1/dashboard/overview").json()
        series = next(s for s in overview["services"] if s["name"] == "echo")["series"]
        return sum(p["requests"] for pts in series.values() for p in pts)

    # Complete bins only: the last of the load shows once its bin has ended (up to 10 s on).
    wait_until(lambda: counted() >= report.total, 25, interval=0.5, what="the load in the 10 s bins")
    assert counted() == report.total  # Envoy counted every request, in exactly one bin


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_overview_lists_personal_routes_until_released(project: Project):
    base = api(project)
    auth = project.write_auth()

    def intercepts() -> list[dict]:
        # Past the overview's one-second cache: a fresh build, read once it is a second younger.
        overview = loopback.get(f"{base}/v1/dashboard/overview").json()
        return next(s for s in overview["services"] if s["name"] == "echo")["intercepts"]

    claim = {"header": "x-dev", "value": "ana", "port": 9, "owner": "ana@laptop"}
    held = loopback.post(f"{base}/v1/services/echo/intercepts", json=claim, headers=auth)
    assert held.status_code == 200, held.text
    try:
        wait_until(lambda: intercepts() != [], 5, interval=0.3, what="the intercept on the overview")
        [shown] = intercepts()
        assert shown["kind"] == "intercept" and (shown["header"], shown["value"]) == ("x-dev", "ana")
        assert shown["target"] == "127.0.0.1:9" and shown["owner"] == "ana@laptop"
        assert shown["expires_at"] > loopback.get(f"{base}/v1/dashboard/overview").json()["now"]
    finally:
        loopback.delete(f"{base}/v1/intercepts/{held.json()['id']}", headers=auth)
    wait_until(lambda: intercepts() == [], 5, interval=0.3, what="the released intercept gone from the overview")
