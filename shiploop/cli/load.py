"""`shiploop load`: a run with live progress on a terminal, the partial summary on Ctrl-C, an honest exit code."""

from __future__ import annotations

import json
import sys
import time

import typer

from shiploop.errors import Invalid

PROGRESS_EVERY_S = 0.5


def run_load_command(
    url: str, rps: float, duration: str, headers: dict[str, str], max_unanswered: float, as_json: bool
) -> None:
    from shiploop.loadgen import LoadError, LoadGenerator, LoadReport, LoadSpec
    from shiploop.spec.durations import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as e:
        raise Invalid(f"--duration '{duration}': {e}", hint="e.g. 30s, 2m, 500ms") from None
    try:
        spec = LoadSpec(url, rps, seconds, headers=headers, capture_headers=("x-shiploop-version",))
        generator = LoadGenerator.of(spec)
        generator.start()
    except LoadError as e:
        raise Invalid(e.message, hint=e.hint) from None

    live = sys.stderr.isatty() and not as_json
    interrupted = False
    try:
        while generator.running:
            time.sleep(PROGRESS_EVERY_S if live else 0.05)
            if live:
                _progress(generator.report(), seconds)
        report: LoadReport = generator.wait()
    except KeyboardInterrupt:
        interrupted = True
        report = generator.stop()
    if live:
        sys.stderr.write("\r\033[K")
    if interrupted:
        print(f"interrupted after {report.duration_s:.1f} s; the summary so far:", file=sys.stderr)
    print(json.dumps(report.as_dict(), indent=2)) if as_json else print(report.render())
    if report.total and report.unanswered_share > max_unanswered:
        print(
            f"error: {report.errors} of {report.total} requests ({report.unanswered_share:.0%}) got no response, "
            f"over --max-unanswered {max_unanswered:g}",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    if interrupted:
        raise typer.Exit(130)


def _progress(report: object, planned_s: float) -> None:
    from shiploop.loadgen import LoadReport

    assert isinstance(report, LoadReport)
    p50 = f"{report.latency.p50_s * 1000:.1f}ms" if report.latency.count else "-"
    line = (
        f"{report.duration_s:5.1f}/{planned_s:g} s  sent {report.total}  ok {report.ok}  "
        f"failed {report.failed} (no answer {report.errors})  p50 {p50}"
    )
    sys.stderr.write("\r\033[K" + line)
    sys.stderr.flush()
