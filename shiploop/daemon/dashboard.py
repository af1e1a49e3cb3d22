"""The live web dashboard the daemon serves at `/`: static pages, the data they poll, and sign-in.

Reads follow the API's rules (open on 127.0.0.1, behind the Host check).
Acting on a rollout from the page needs a session: `shiploop dashboard`
asks (with the token) for a one-time login code and prints a URL carrying
it; the daemon trades the code, once, for an HttpOnly SameSite=Strict
cookie. A mutation then needs that cookie *and* the session's CSRF token in
a custom header *and* an Origin that is this daemon's own address, or the
API token itself. A page on another origin can make the browser send the
cookie (Strict stops even that on cross-site requests) but can neither read
the CSRF token nor set a custom header without a CORS preflight, which the
daemon never grants.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shiploop.errors import Invalid, NotFound
from shiploop.experiments.controller import ExperimentController
from shiploop.experiments.report_html import report_body
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.view import rollout_view
from shiploop.server.controlplane import ControlPlane
from shiploop.server.observe import SERIES_S, Observer
from shiploop.server.traffic_series import binned
from shiploop.server.views import degraded
from shiploop.store import DeploymentRow

STATIC = Path(__file__).parent / "static"
CODE_TTL_S = 120.0
SESSION_TTL_S = 12 * 3600.0
CSRF_HEADER = "X-Shiploop-CSRF"
BIN_S = 10.0  # 90 points per version over 15 minutes
TRAIL_POINTS = 3600  # an hour of guardrail readings per rollout, one a second
TRAIL_ROLLOUTS = 20


class Sessions:
    """One-time login codes and the sessions they open, in memory (a daemon restart signs everyone out)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, tuple[str, float]] = {}  # session id -> (csrf token, expiry)

    def issue_code(self) -> str:
        now = self.clock()
        self._codes = {c: exp for c, exp in self._codes.items() if exp > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + CODE_TTL_S
        return code

    def redeem(self, code: str) -> str | None:
        """A new session id for a valid code; the code is gone either way."""
        expiry = self._codes.pop(code, None)
        if expiry is None or expiry <= self.clock():
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = (secrets.token_urlsafe(32), self.clock() + SESSION_TTL_S)
        return session

    def csrf(self, session: str | None) -> str | None:
        entry = self._sessions.get(session or "")
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self._sessions[session or ""]
            return None
        return entry[0]


class GuardrailTrail:
    """Each active rollout's guardrail estimates and intervals, one point per judged reading, for the charts.

    The rollout record keeps only the latest evidence; the events keep it at
    each decision. This fills the time between, while the daemon runs.
    """

    def __init__(self, rollouts: RolloutController) -> None:
        self.rollouts = rollouts
        self._trails: OrderedDict[int, deque[dict[str, Any]]] = OrderedDict()

    async def tick(self) -> None:
        for r in self.rollouts.active():
            if r.last and r.last.get("guardrails"):
                self.add(r.id, r.last)

    def add(self, rollout_id: int, evidence: dict[str, Any]) -> None:
        trail = self._trails.get(rollout_id)
        if trail is None:
            trail = self._trails[rollout_id] = deque(maxlen=TRAIL_POINTS)
            while len(self._trails) > TRAIL_ROLLOUTS:
                self._trails.popitem(last=False)
        point = trail_point(evidence)
        if point is not None and (not trail or trail[-1]["at"] < point["at"]):
            trail.append(point)

    def points(self, rollout_id: int) -> list[dict[str, Any]]:
        return list(self._trails.get(rollout_id, ()))


def trail_point(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """What the guardrail charts need from one piece of evidence, or None if it judged no guardrail."""
    guardrails = evidence.get("guardrails") or []
    if "at" not in evidence or not guardrails:
        return None
    return {
        "at": evidence["at"],
        "step": evidence.get("step", {}).get("index") if isinstance(evidence.get("step"), dict) else None,
        "weight": evidence.get("weight"),
        "guardrails": [
            {
                "name": g["name"],
                "estimate": g.get("estimate"),
                "lower": g.get("lower_bound"),
                "upper": g.get("upper_bound"),
                "tolerance": g.get("tolerance"),
                "verdict": g.get("verdict"),
            }
            for g in guardrails
        ],
    }


def _same_secret(given: str, expected: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a header may carry any byte.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _same_origin(request: Request) -> bool:
    """The request's Origin (or, without one, its Referer) is this daemon's own address.

    The Host header was already checked (hostcheck.py), so Origin must name that same host and port.
    """
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == f"http://{host}"
    referer = request.headers.get("referer")
    return referer is not None and (referer == f"http://{host}" or referer.startswith(f"http://{host}/"))


class Dashboard:
    def __init__(
        self,
        cp: ControlPlane,
        rollouts: RolloutController,
        observer: Observer,
        token: str,
        experiments: ExperimentController | None = None,
    ) -> None:
        self.cp = cp
        self.rollouts = rollouts
        self.experiments = experiments
        self.observer = observer
        self.token = token
        self.sessions = Sessions()
        self.trail = GuardrailTrail(rollouts)
        self._overview: tuple[float, dict[str, Any]] | None = None
        self._series: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._series_end = 0.0
        self._overview_json: tuple[dict[str, Any], bytes] | None = None
        self._ended_events: dict[tuple[int, float], list[dict[str, Any]]] = {}

    @staticmethod
    def cookie_name(request: Request) -> str:
        # Cookies are not kept apart by port: two projects' daemons on 127.0.0.1 need two names.
        return f"shiploop_session_{request.url.port or 80}"

    def _bearer_ok(self, authorization: str) -> bool:
        return _same_secret(authorization, f"Bearer {self.token}")

    def _require_mutation_auth(self, request: Request) -> None:
        if self._bearer_ok(request.headers.get("authorization", "")):
            return
        if not _same_origin(request):
            raise HTTPException(403, "refused: a change from the dashboard must come from the dashboard's own origin")
        csrf = self.sessions.csrf(request.cookies.get(self.cookie_name(request)))
        sent = request.headers.get(CSRF_HEADER, "")
        if csrf is None:
            raise HTTPException(401, "not signed in: run `shiploop dashboard` and open the URL it prints")
        if not _same_secret(sent, csrf):
            raise HTTPException(403, f"refused: missing or wrong {CSRF_HEADER} header")

    def overview(self) -> dict[str, Any]:
        """What the services page shows: every deployed version with its live traffic, its rollout, its charts.

        Built at most once a second whoever asks (the sampler reads once a second
        anyway). Measured in bench/dashboard_cost.py at 100 rps: /v1/status and the
        series every 2 s added about 9% to the daemon's CPU, this every 3 s under 1%.
        """
        now = self.observer.clock()
        if self._overview is not None and now - self._overview[0] < 1.0:
            return self._overview[1]
        by_service: dict[str, list[DeploymentRow]] = {}
        for d in self.cp.store.deployments():
            by_service.setdefault(d.service, []).append(d)
        services = []
        for name, rows in sorted(by_service.items()):
            versions = []
            for d in rows:
                ready, total = self.cp.runtime.counts(name, d.version)
                versions.append(
                    {
                        "id": d.version,
                        "track": d.track,
                        "weight": d.weight,
                        "ready": ready,
                        "replicas": total,
                        "state": d.state,
                        "traffic": self.observer.summary(name, d.version),
                    }
                )
            r = self.rollouts.latest(name)
            # Without the sample URL (it reads the service's spec): the rollout page has the full view.
            view = rollout_view(r, now) if r is not None else None
            rollout = {k: view[k] for k in ("id", "state", "summary")} if view else None
            # Versions no longer deployed (a rolled-back candidate) keep their lines while the sampler has them.
            ids = [d.version for d in rows]
            ids += [v for v in self.observer.sampler.versions(name) if v not in ids]
            series = {v: self.series(name, v, now) for v in ids}
            latest = next(iter(self.cp.store.experiments(name, limit=1)), None)
            experiment = {"id": latest.id, "state": latest.state, "hypothesis": latest.hypothesis} if latest else None
            # Personal routes (intercept, dev): matched before the weights, so a reader sees who takes what.
            intercepts = [
                {k: view[k] for k in ("kind", "header", "value", "target", "owner", "expires_at")}
                for view in map(self.cp.intercepts.view, self.cp.intercepts.rows(name))
            ]
            services.append(
                {
                    "name": name,
                    "versions": versions,
                    "rollout": rollout,
                    "experiment": experiment,
                    "intercepts": intercepts,
                    "series": series,
                }
            )
        data = {
            "project": self.cp.project.name,
            "gateway": self.cp.gateway_url,
            "degraded": degraded(self.cp.ctx),
            "now": now,
            "bin_s": BIN_S,
            "span_s": SERIES_S,
            "services": services,
        }
        self._overview = (now, data)
        return data

    def overview_json(self) -> bytes:
        """The overview encoded once per build: FastAPI's encoder walking ~400 dicts cost more than building them."""
        data = self.overview()
        if self._overview_json is None or self._overview_json[0] is not data:
            self._overview_json = (data, json.dumps(data, separators=(",", ":")).encode())
        return self._overview_json[1]

    def series(self, service: str, version: str, now: float) -> list[dict[str, Any]]:
        """Complete bins only, on multiples of BIN_S: they never change, so each is computed once per BIN_S."""
        end = now // BIN_S * BIN_S
        if end != self._series_end:
            self._series, self._series_end = {}, end
        if (service, version) not in self._series:
            self._series[(service, version)] = binned(
                self.observer.sampler.history(service, version), end, SERIES_S, BIN_S
            )
        return self._series[(service, version)]

    def rollout_page(self, service: str, rollout_id: int | None) -> dict[str, Any]:
        self.cp.service(service)
        r = self.rollouts.get(rollout_id) if rollout_id is not None else self.rollouts.latest(service)
        if r is None or r.service != service:
            raise NotFound(f"{service} has had no rollout yet", hint=f"start one: shiploop rollout {service}")
        events = self._rollout_events(service, r.id, None if r.active else r.updated_at)
        # Decisions from the events (they outlive the daemon), the live trail between them.
        points = {p["at"]: p for e in events if (p := trail_point(e["evidence"])) is not None}
        points.update({p["at"]: p for p in self.trail.points(r.id)})
        if r.last and (p := trail_point(r.last)) is not None:
            points[p["at"]] = p
        return {"rollout": self.rollouts.view(r), "trail": [points[k] for k in sorted(points)], "events": events}

    def _rollout_events(self, service: str, rollout_id: int, ended_at: float | None) -> list[dict[str, Any]]:
        """The rollout's events (of the service's last 1,000); an ended rollout's are read once and kept."""
        if ended_at is not None and (rollout_id, ended_at) in self._ended_events:
            return self._ended_events[(rollout_id, ended_at)]
        events = [
            e for e in self.cp.store.events(service, 1000) if (e.get("evidence") or {}).get("rollout") == rollout_id
        ]
        if ended_at is not None:
            if len(self._ended_events) >= TRAIL_ROLLOUTS:
                self._ended_events.clear()
            self._ended_events[(rollout_id, ended_at)] = events
        return events

    def mount(self, app: FastAPI) -> None:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

        @app.get("/login", include_in_schema=False)
        async def login(request: Request, code: str = "") -> Response:
            session = self.sessions.redeem(code)
            if session is None:
                return HTMLResponse(
                    "<p>This login link was used already or has expired. "
                    "Run <code>shiploop dashboard</code> for a new one.</p>",
                    status_code=403,
                )
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(
                self.cookie_name(request), session, max_age=int(SESSION_TTL_S), httponly=True, samesite="strict"
            )
            return resp

        @app.post("/v1/dashboard/login-code")
        async def login_code(request: Request, authorization: str = Header("")) -> dict[str, Any]:
            if not self._bearer_ok(authorization):
                raise HTTPException(401, "missing or wrong token: the CLI reads it from .shiploop/token")
            code = self.sessions.issue_code()
            return {"code": code, "url": f"http://{request.headers['host']}/login?code={code}", "ttl_s": CODE_TTL_S}

        @app.get("/v1/dashboard/session")
        async def session(request: Request) -> dict[str, Any]:
            csrf = self.sessions.csrf(request.cookies.get(self.cookie_name(request)))
            return {"signed_in": csrf is not None, "csrf": csrf, "csrf_header": CSRF_HEADER}

        @app.get("/v1/dashboard/overview")
        async def overview() -> Response:
            return Response(self.overview_json(), media_type="application/json")

        @app.get("/v1/dashboard/services/{service}/rollout")
        async def rollout(service: str, id: int | None = None) -> Response:
            # Encoded here: FastAPI's encoder walking every event's evidence is the costliest part.
            return Response(
                json.dumps(self.rollout_page(service, id), separators=(",", ":")), media_type="application/json"
            )

        @app.get("/v1/dashboard/services/{service}/experiment")
        async def experiment(service: str) -> dict[str, Any]:
            """The latest experiment as the HTML report shows it (`report_body`: escaped, no script)."""
            if self.experiments is None:
                raise NotFound("this daemon runs no experiments", hint="see: shiploop status")
            r = self.experiments.report(service)
            return {"id": r["id"], "service": service, "state": r["state"], "html": report_body(r)}

        @app.post("/v1/dashboard/services/{service}/rollout/{action}")
        async def rollout_action(request: Request, service: str, action: str) -> dict[str, Any]:
            self._require_mutation_auth(request)
            actions = {
                "pause": self.rollouts.pause,
                "resume": self.rollouts.resume,
                "abort": self.rollouts.abort,
                "promote": self.rollouts.promote_now,
            }
            if action not in actions:
                raise Invalid(f"unknown rollout action '{action}'", hint=f"one of: {', '.join(actions)}")
            return await actions[action](service)
