"""shiploop.spec: loading service.yaml / shiploop.yaml, defaults, and one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shiploop.errors import ShiploopError
from shiploop.spec import (
    AbMatch,
    Guardrail,
    Limit,
    ProjectDefaults,
    RouteSpec,
    ServiceSpec,
    SpecError,
    format_duration,
    load_project,
    load_service,
    parse_duration,
)

PROJECT = "name: shop\n"
MINIMAL = 'name: hello\nrun:\n  command: ["python", "app.py"]\n'


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Error paths are shown relative to the working directory.
    monkeypatch.chdir(tmp_path)


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def service_error(tmp_path: Path, text: str) -> SpecError:
    path = write(tmp_path, "svc/service.yaml", text)
    with pytest.raises(SpecError) as info:
        load_service(path)
    return info.value


def assert_line(err: ShiploopError, prefix: str, fragments: list[str]) -> None:
    line = err.line()
    assert "\n" not in line
    assert line.startswith(prefix), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"


# (id, service.yaml, line, field path, fragments of the rendered line)
SERVICE_CASES: list[tuple[str, str, int, str, list[str]]] = [
    ("yaml-syntax", "name: hello\nrun:\n  command: [python, app.py\nreplicas: 2\n", 4, "", ["invalid YAML"]),
    ("yaml-tab", "name: hello\nrun:\n\tcommand: [a]\n", 3, "", ["invalid YAML", "hint: indent with spaces"]),
    ("two-documents", MINIMAL + "---\nname: b\n", 4, "", ["invalid YAML", "keep one document per file"]),
    ("duplicate-key", MINIMAL + "name: again\n", 4, "", ["duplicate key 'name' (first at line 1)"]),
    (
        "top-level-list",
        "- name: hello\n",
        1,
        "",
        ["expected a mapping of fields at the top level, got a list"],
    ),
    ("top-level-scalar", "hello\n", 1, "", ["expected a mapping", "got str 'hello'"]),
    ("empty-file", "", 1, "", ["file is empty", "hint: a service needs at least name"]),
    ("comments-only", "# nothing yet\n", 1, "", ["file is empty"]),
    (
        "unknown-top",
        MINIMAL + "replcias: 2\n",
        4,
        "replcias",
        ["unknown field 'replcias' (hint: did you mean 'replicas'?)"],
    ),
    (
        "unknown-nested-route",
        MINIMAL + "routes:\n  - prefx: /a/\n",
        5,
        "routes[0].prefx",
        ["unknown field 'prefx'", "did you mean 'prefix'?"],
    ),
    (
        "unknown-deep",
        MINIMAL + "routes:\n  - prefix: /a/\n    retries: {attempts: 2, per_try_timout: 1s}\n",
        6,
        "routes[0].retries.per_try_timout",
        ["did you mean 'per_try_timeout'?"],
    ),
    (
        "unknown-far-from-everything",
        MINIMAL + "zzz: 1\n",
        4,
        "zzz",
        ["unknown field 'zzz'", "hint: valid fields: name, run,"],
    ),
    ("internal-field", MINIMAL + "directory: /etc\n", 4, "directory", ["unknown field 'directory'"]),
    ("missing-name", 'run:\n  command: ["python"]\n', 1, "name", ["required field is missing", "add name:"]),
    (
        "missing-command",
        "name: hello\nrun:\n  env: {A: b}\n",
        2,
        "run.command",
        ["required field is missing", 'add command: ["python", "app.py"]'],
    ),
    ("missing-run", "name: hello\n", 1, "run", ["required field is missing"]),
    (
        "typo-beats-missing",
        "nme: hello\nrun: {command: [a]}\n",
        1,
        "nme",
        ["unknown field 'nme'", "did you mean 'name'?"],
    ),
    (
        "bad-name",
        "name: Hello_World\nrun: {command: [a]}\n",
        1,
        "name",
        ["invalid service name", "try 'hello-world'"],
    ),
    ("name-number", "name: 123\nrun: {command: [a]}\n", 1, "name", ["expected a string, got 123"]),
    ("replicas-string", MINIMAL + "replicas: two\n", 4, "replicas", ["expected a whole number, got 'two'"]),
    ("replicas-bool", MINIMAL + "replicas: true\n", 4, "replicas", ["expected a whole number, got true"]),
    ("replicas-zero", MINIMAL + "replicas: 0\n", 4, "replicas", ["must be at least 1, got 0"]),
    ("replicas-huge", MINIMAL + "replicas: 51\n", 4, "replicas", ["must be at most 50, got 51"]),
    (
        "command-string",
        "name: hello\nrun:\n  command: python app.py --port 8080\n",
        3,
        "run.command",
        ["command must be a list, not a string", 'command: ["python", "app.py", "--port", "8080"]'],
    ),
    ("command-empty", "name: hello\nrun:\n  command: []\n", 3, "run.command", ["must not be empty"]),
    ("run-string", "name: hello\nrun: python app.py\n", 2, "run", ["expected a mapping"]),
    (
        "env-list",
        "name: hello\nrun:\n  command: [a]\n  env: [A=b]\n",
        4,
        "run.env",
        ["expected a mapping (key: value), got a list"],
    ),
    (
        "prefix-and-path",
        MINIMAL + "routes:\n  - prefix: /a/\n    path: /a\n",
        5,
        "routes[0]",
        ["exactly one of prefix, path or regex (found prefix and path)"],
    ),
    (
        "no-match",
        MINIMAL + "routes:\n  - host: shop.local\n",
        5,
        "routes[0]",
        ["exactly one of prefix, path or regex (found none)"],
    ),
    (
        "rewrite-with-path",
        MINIMAL + "routes:\n  - path: /a\n    rewrite: /\n",
        6,
        "routes[0].rewrite",
        ["rewrite only works with prefix"],
    ),
    (
        "prefix-no-slash",
        MINIMAL + "routes:\n  - prefix: api/\n",
        5,
        "routes[0].prefix",
        ["must start with '/'"],
    ),
    (
        "bad-regex",
        MINIMAL + "routes:\n  - prefix: /ok/\n  - regex: '^/items/([0-9]+$'\n",
        6,
        "routes[1].regex",
        ["invalid regex", "missing )"],
    ),
    (
        "regex-braces",
        MINIMAL + "routes:\n  - regex: '^/a{2'\n    methods: [GTE]\n",
        6,
        "routes[0].methods[0]",
        ["unknown HTTP method 'GTE'", "did you mean 'GET'?"],
    ),
    (
        "bad-host",
        MINIMAL + "routes:\n  - prefix: /a/\n    host: 'shop local'\n",
        6,
        "routes[0].host",
        ["invalid host"],
    ),
    ("empty-routes", MINIMAL + "routes: []\n", 4, "routes", ["list at least one route"]),
    (
        "same-route-twice",
        MINIMAL + "routes:\n  - prefix: /a/\n  - {prefix: /a/, timeout: 3s}\n",
        6,
        "routes[1]",
        ["route prefix /a/ is the same as routes[0]"],
    ),
    (
        "header-twice",
        MINIMAL + "routes:\n  - prefix: /a/\n    headers: {X-Tenant: a, x-tenant: b}\n",
        6,
        "routes[0].headers",
        ["header 'x-tenant' is listed twice"],
    ),
    (
        "bad-duration",
        MINIMAL + "routes:\n  - prefix: /a/\n    timeout: 5 parsecs\n",
        6,
        "routes[0].timeout",
        ["invalid duration '5 parsecs'", "hint: write a number of seconds or use units ms, s, m, h"],
    ),
    (
        "zero-duration",
        MINIMAL + "health: {timeout: 0}\n",
        4,
        "health.timeout",
        ["duration must be more than 0"],
    ),
    (
        "negative-duration",
        MINIMAL + "health: {interval: -1}\n",
        4,
        "health.interval",
        ["must not be negative"],
    ),
    (
        "unordered-duration",
        MINIMAL + "health: {interval: 30s1m}\n",
        4,
        "health.interval",
        ["units must go from largest to smallest"],
    ),
    (
        "retry-on-typo",
        MINIMAL + "routes:\n  - prefix: /a/\n    retries:\n      on: [gateway-eror]\n",
        7,
        "routes[0].retries.on[0]",
        ["unknown retry condition 'gateway-eror'", "did you mean 'gateway-error'?"],
    ),
    (
        "retry-attempts",
        MINIMAL + "routes:\n  - prefix: /a/\n    retries: {attempts: 11}\n",
        6,
        "routes[0].retries.attempts",
        ["must be at most 10, got 11"],
    ),
    (
        "steps-not-increasing",
        MINIMAL + "rollout:\n  steps: [5, 50, 25, 100]\n",
        5,
        "rollout.steps",
        ["steps must increase, but 25 follows 50"],
    ),
    (
        "step-over-100",
        MINIMAL + "rollout:\n  steps: [5, 150]\n",
        5,
        "rollout.steps[1]",
        ["must be at most 100, got 150"],
    ),
    (
        "canary-not-to-100",
        MINIMAL + "rollout:\n  steps: [5, 25, 50]\n",
        5,
        "rollout.steps",
        ["a canary must end at 100, but the last step is 50", "steps: [5, 25, 50, 100]"],
    ),
    (
        "ab-without-match",
        MINIMAL + "rollout:\n  strategy: ab\n  steps: [50]\n",
        4,
        "rollout.match",
        ["an ab rollout needs match", "hint: add match:"],
    ),
    (
        "bad-strategy",
        MINIMAL + "rollout:\n  strategy: canery\n",
        5,
        "rollout.strategy",
        ["unknown value 'canery', expected one of canary, mirror, ab", "did you mean 'canary'?"],
    ),
    ("bad-alpha", MINIMAL + "rollout: {alpha: 0.5}\n", 4, "rollout.alpha", ["must be less than 0.5"]),
    (
        "bad-metric",
        MINIMAL + "rollout:\n  guardrails:\n    - {metric: eror_rate, tolerance: 0.01}\n",
        6,
        "rollout.guardrails[0].metric",
        ["unknown metric 'eror_rate'", "did you mean 'error_rate'?"],
    ),
    (
        "bad-app-metric",
        MINIMAL + "rollout:\n  guardrails:\n    - {metric: 'app:errors', tolerance: 0.01}\n",
        6,
        "rollout.guardrails[0].metric",
        ["invalid app metric 'app:errors'", "app:NUMERATOR/DENOMINATOR"],
    ),
    (
        "latency-no-quantile",
        MINIMAL + "rollout:\n  guardrails:\n    - metric: latency\n      tolerance: 0.05\n",
        6,
        "rollout.guardrails[0].quantile",
        ["a latency metric needs a quantile", "add quantile: 0.95"],
    ),
    (
        "latency-bad-quantile",
        MINIMAL + "rollout:\n  guardrails:\n    - metric: latency\n      tolerance: 0.05\n      quantile: 95\n",
        8,
        "rollout.guardrails[0].quantile",
        ["quantile must be between 0 and 1"],
    ),
    (
        "quantile-on-error-rate",
        MINIMAL + "rollout:\n  guardrails:\n    - {metric: error_rate, tolerance: 0.01, quantile: 0.9}\n",
        6,
        "rollout.guardrails[0].quantile",
        ["quantile only applies to the latency metric"],
    ),
    (
        "guardrail-no-tolerance",
        MINIMAL + "rollout:\n  guardrails:\n    - metric: error_rate\n",
        6,
        "rollout.guardrails[0].tolerance",
        ["required field is missing", "add tolerance:"],
    ),
    (
        "limit-bad-latency-max",
        MINIMAL + "rollout:\n  limits:\n    - {metric: latency, quantile: 0.99, max: soon}\n",
        6,
        "rollout.limits[0].max",
        ["invalid duration 'soon'"],
    ),
    (
        "limit-rate-over-1",
        MINIMAL + "rollout:\n  limits:\n    - {metric: error_rate, max: 20}\n",
        6,
        "rollout.limits[0].max",
        ["max must be a rate between 0 and 1, got 20"],
    ),
    (
        "webhook-when",
        MINIMAL + "rollout:\n  webhooks:\n    - {when: pre, url: 'http://x'}\n",
        6,
        "rollout.webhooks[0].when",
        ["unknown value 'pre'", "pre-rollout"],
    ),
    (
        "webhook-url",
        MINIMAL + "rollout:\n  webhooks:\n    - {when: step, url: 'ftp://x'}\n",
        6,
        "rollout.webhooks[0].url",
        ["invalid url 'ftp://x'"],
    ),
    (
        "alert-on",
        MINIMAL + "rollout:\n  alerts:\n    - url: http://x\n      on: [rollbak]\n",
        7,
        "rollout.alerts[0].on[0]",
        ["unknown alert event 'rollbak'", "did you mean 'rollback'?"],
    ),
    (
        "outlier-percent",
        MINIMAL + "outlier_detection:\n  max_ejection_percent: 101\n",
        5,
        "outlier_detection.max_ejection_percent",
        ["must be at most 100"],
    ),
    (
        "max-step-below-min",
        MINIMAL + "rollout: {min_step: 1m, max_step: 30s}\n",
        4,
        "rollout.max_step",
        ["max_step (30s) is shorter than min_step (60s)"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in SERVICE_CASES],
)
def test_service_errors(tmp_path: Path, text: str, line: int, field: str, fragments: list[str]) -> None:
    err = service_error(tmp_path, text)
    assert isinstance(err, ShiploopError)
    assert (err.file, err.lineno, err.field) == ("svc/service.yaml", line, field), err.line()
    prefix = f"svc/service.yaml:{line}: " + (f"{field}: " if field else "")
    assert_line(err, prefix, fragments)


def test_full_example_loads_with_values_and_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "shiploop.yaml",
        "name: shop\ngateway: {port: 9090}\ndefaults: {replicas: 3, timeout: 20s}\n",
    )
    write(
        tmp_path,
        "services/hello/service.yaml",
        """\
        name: hello
        run:
          command: ["python", "app.py"]
          env: {GREETING: hi, WORKERS: 4, DEBUG: true}
        health: {path: /ready, timeout: 500ms}
        replicas: 2
        routes:
          - prefix: /hello/
            rewrite: /
            host: Shop.Local
            methods: [get, POST]
            headers: {X-Tenant: acme}
            timeout: 5s
            retries: {attempts: 2, on: [gateway-error, connect-failure], per_try_timeout: 2s}
          - path: /hello-exact
          - regex: "^/items/[0-9]+$"
        circuit_breaker: {max_connections: 10}
        outlier_detection: {enabled: false, interval: 1m30s}
        rollout:
          strategy: ab
          steps: [10, 50]
          min_step: 10
          max_step: 1h
          on_inconclusive: hold
          alpha: 0.01
          min_samples: 50
          require_noninferiority: true
          guardrails:
            - {metric: error_rate, tolerance: 0.002}
            - {metric: latency, quantile: 0.95, tolerance: 0.02}
            - {metric: "app:checkout_errors_total/checkout_total", tolerance: 0.01}
          limits:
            - {metric: error_rate, max: 0.2}
            - {metric: latency, quantile: 0.99, max: 2s}
          on_no_data: fail
          match: {header: X-Beta, value: 1}
          webhooks: [{when: pre-rollout, url: "http://hooks.local/pre"}]
          alerts: [{url: "https://alerts.local", on: [rollback]}]
        """,
    )
    write(tmp_path, "api/service.yaml", "name: api\nrun: {command: [./api]}\n")
    write(tmp_path, ".hidden/service.yaml", "not: loaded\n")
    write(tmp_path, "node_modules/x/service.yaml", "not: loaded\n")

    project = load_project(tmp_path)
    assert project.name == "shop"
    assert project.root == tmp_path.resolve()
    assert project.gateway.port == 9090
    assert list(project.services) == ["api", "hello"]

    api = project.services["api"]
    assert api.directory == (tmp_path / "api").resolve()
    assert api.replicas == 3  # project default
    assert [r.match_key() for r in api.routes] == [("prefix", "/api/", "", (), ())]
    assert api.routes[0].rewrite == "/"
    assert api.routes[0].timeout == 20.0  # project default
    assert api.routes[0].retries.attempts == 1
    assert api.routes[0].retries.on == ["connect-failure", "refused-stream", "gateway-error"]
    assert (api.health.path, api.health.timeout, api.health.interval) == ("/healthz", 2.0, 1.0)
    assert api.rollout.strategy == "canary"
    assert api.rollout.steps == [5, 25, 50, 100]
    assert (api.rollout.min_step, api.rollout.max_step) == (60.0, 300.0)
    assert [(g.kind, g.tolerance, g.quantile) for g in api.rollout.guardrails] == [
        ("error_rate", 0.002, None),
        ("latency", 0.05, 0.95),
    ]
    assert api.rollout.limits == [Limit(metric="error_rate", max=0.5)]
    assert api.rollout.on_no_data == "hold"
    assert api.outlier_detection.enabled is True
    assert api.circuit_breaker.max_retries == 3

    hello = project.services["hello"]
    assert hello.directory == (tmp_path / "services/hello").resolve()
    assert hello.run.command == ["python", "app.py"]
    assert hello.run.env == {"GREETING": "hi", "WORKERS": "4", "DEBUG": "true"}
    assert (hello.health.path, hello.health.timeout, hello.health.interval) == ("/ready", 0.5, 1.0)
    assert hello.replicas == 2
    first, exact, regex = hello.routes
    assert first.match_key() == ("prefix", "/hello/", "shop.local", ("GET", "POST"), (("x-tenant", "acme"),))
    assert first.timeout == 5.0
    assert (first.retries.attempts, first.retries.on, first.retries.per_try_timeout) == (
        2,
        ["gateway-error", "connect-failure"],
        2.0,
    )
    assert (exact.kind, exact.value, exact.timeout) == ("path", "/hello-exact", 20.0)
    assert (regex.kind, regex.value) == ("regex", "^/items/[0-9]+$")
    assert hello.circuit_breaker.max_connections == 10
    assert hello.outlier_detection.enabled is False
    assert hello.outlier_detection.interval == 90.0
    policy = hello.rollout
    assert policy.strategy == "ab"
    assert (policy.steps, policy.min_step, policy.max_step) == ([10, 50], 10.0, 3600.0)
    assert (policy.on_inconclusive, policy.alpha, policy.min_samples) == ("hold", 0.01, 50)
    assert policy.require_noninferiority is True
    app = policy.guardrails[2]
    assert (app.kind, app.numerator, app.denominator) == (
        "app_ratio",
        "checkout_errors_total",
        "checkout_total",
    )
    assert policy.guardrails[0].numerator is None
    assert policy.limits[1] == Limit(metric="latency", quantile=0.99, max=2.0)
    assert policy.match == AbMatch(header="x-beta", value="1")
    assert policy.webhooks[0].timeout == 5.0
    assert policy.alerts[0].on == ["rollback"]


def test_retry_and_alert_on_keys_are_not_booleans(tmp_path: Path) -> None:
    # YAML 1.1 reads a bare `on` as True; the loader must keep it a key.
    spec = load_service(
        write(
            tmp_path,
            "svc/service.yaml",
            MINIMAL + "routes:\n  - prefix: /a/\n    retries:\n      on: [reset]\n",
        )
    )
    assert spec.routes[0].retries.on == ["reset"]


def test_anchors_under_x_keys_are_allowed(tmp_path: Path) -> None:
    text = """\
        x-fast: &fast {timeout: 3s, retries: {attempts: 3}}
        name: hello
        run: {command: [x], env: {1: x}}
        routes:
          - {<<: *fast, prefix: /a/}
          - {<<: *fast, path: /b, timeout: 4s}
        """
    spec = load_service(write(tmp_path, "svc/service.yaml", text))
    assert [(r.value, r.timeout, r.retries.attempts) for r in spec.routes] == [
        ("/a/", 3.0, 3),
        ("/b", 4.0, 3),
    ]
    assert spec.run.env == {"1": "x"}


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    spec = load_service(write(tmp_path, "svc/service.yaml", MINIMAL))
    assert ServiceSpec.model_validate_json(spec.model_dump_json()) == spec
    assert ServiceSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_load_service_takes_directory_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, "svc/service.yaml", MINIMAL)
    spec = load_service(tmp_path / "svc", defaults=ProjectDefaults(replicas=4, timeout=7.0))
    assert (spec.replicas, spec.routes[0].timeout, spec.directory) == (4, 7.0, (tmp_path / "svc").resolve())


def test_models_are_frozen(tmp_path: Path) -> None:
    spec = load_service(write(tmp_path, "svc/service.yaml", MINIMAL))
    with pytest.raises(ValueError):
        spec.replicas = 3  # type: ignore[misc]


def test_guardrail_helpers() -> None:
    assert Guardrail(metric="latency", quantile=0.5, tolerance=0.1).kind == "latency"
    assert RouteSpec(prefix="/a/", methods=["POST", "GET"]).match_key() == (
        "prefix",
        "/a/",
        "",
        ("GET", "POST"),
        (),
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        (3, 3.0),
        ("7", 7.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 parsecs", "", "s", "1m1m", True, None, [1], "-1s"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.5, 2, 90, 3600, 0, 1.5)] == [
        "500ms",
        "2s",
        "1m30s",
        "1h",
        "0s",
        "1.5s",
    ]


# ---- project-level errors -------------------------------------------------------------------------


def project_error(tmp_path: Path, files: dict[str, str]) -> SpecError:
    for rel, text in files.items():
        write(tmp_path, rel, text)
    with pytest.raises(SpecError) as info:
        load_project(tmp_path)
    return info.value


def test_missing_project_file(tmp_path: Path) -> None:
    err = project_error(tmp_path, {"hello/service.yaml": MINIMAL})
    assert err.file == "shiploop.yaml"
    assert_line(err, "shiploop.yaml: no shiploop.yaml in ", ["hint: run `shiploop init`"])


def test_project_without_services(tmp_path: Path) -> None:
    err = project_error(tmp_path, {"shiploop.yaml": "# shop\nname: shop\n"})
    assert_line(err, "shiploop.yaml:2: project 'shop' has no services", ["hint: add a subdirectory"])
    assert load_project(tmp_path, require_services=False).services == {}


@pytest.mark.parametrize(
    ("text", "prefix", "fragments"),
    [
        pytest.param("", "shiploop.yaml:1: file is empty", [], id="empty"),
        pytest.param("name: Shop!\n", "shiploop.yaml:1: name: invalid project name", ["try 'shop'"], id="name"),
        pytest.param(
            "name: shop\ngateway: {prot: 1}\n",
            "shiploop.yaml:2: gateway.prot: unknown field 'prot'",
            ["did you mean 'port'?"],
            id="unknown",
        ),
        pytest.param(
            "name: shop\ngateway:\n  port: 70000\n",
            "shiploop.yaml:3: gateway.port: must be at most 65535",
            [],
            id="port",
        ),
        pytest.param(
            "name: shop\ndefaults: {timeout: forever}\n",
            "shiploop.yaml:2: defaults.timeout: invalid duration 'forever'",
            [],
            id="duration",
        ),
        pytest.param("name: shop\nservices: {}\n", "shiploop.yaml:2: services: unknown field", [], id="internal"),
    ],
)
def test_project_file_errors(tmp_path: Path, text: str, prefix: str, fragments: list[str]) -> None:
    err = project_error(tmp_path, {"shiploop.yaml": text, "hello/service.yaml": MINIMAL})
    assert_line(err, prefix, fragments)


def test_two_services_same_name(tmp_path: Path) -> None:
    err = project_error(
        tmp_path,
        {
            "shiploop.yaml": PROJECT,
            "a/service.yaml": MINIMAL,
            "b/service.yaml": "# copy\n" + MINIMAL,
        },
    )
    assert_line(
        err,
        "b/service.yaml:2: name: service name 'hello' is already used by a/service.yaml:1",
        ["hint: service names must be unique"],
    )


def test_two_services_same_route(tmp_path: Path) -> None:
    err = project_error(
        tmp_path,
        {
            "shiploop.yaml": PROJECT,
            "a/service.yaml": "name: a\nrun: {command: [x]}\nroutes:\n  - prefix: /shop/\n",
            "b/service.yaml": "name: b\nrun: {command: [x]}\nroutes:\n  - path: /b\n  - prefix: /shop/\n",
        },
    )
    assert_line(
        err,
        "b/service.yaml:5: routes[1]: route prefix /shop/ is claimed by both service 'a' (a/service.yaml:4) "
        "and service 'b' (b/service.yaml:5)",
        ["hint: give one of them a different prefix"],
    )


def test_explicit_route_clashes_with_default_route(tmp_path: Path) -> None:
    err = project_error(
        tmp_path,
        {
            "shiploop.yaml": PROJECT,
            "a/service.yaml": "name: a\nrun: {command: [x]}\nroutes:\n  - {prefix: /b/, rewrite: /x/}\n",
            "b/service.yaml": "\nname: b\nrun: {command: [x]}\n",
        },
    )
    assert_line(err, "b/service.yaml:2: name: route prefix /b/ is claimed by both service 'a'", ["(a/service.yaml:4)"])


def test_same_path_different_host_is_fine(tmp_path: Path) -> None:
    for rel, text in {
        "shiploop.yaml": PROJECT,
        "a/service.yaml": "name: a\nrun: {command: [x]}\nroutes:\n  - {prefix: /, host: a.local}\n",
        "b/service.yaml": "name: b\nrun: {command: [x]}\nroutes:\n  - {prefix: /, host: b.local}\n",
    }.items():
        write(tmp_path, rel, text)
    assert sorted(load_project(tmp_path).services) == ["a", "b"]


def test_service_error_inside_project_names_its_file(tmp_path: Path) -> None:
    err = project_error(tmp_path, {"shiploop.yaml": PROJECT, "web/api/service.yaml": MINIMAL + "replicas: 0\n"})
    assert_line(err, "web/api/service.yaml:4: replicas: must be at least 1", [])
