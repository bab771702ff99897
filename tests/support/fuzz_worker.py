"""Runs fuzz mutants through the CLI in one process under a memory limit (test helper).

Usage: ``python fuzz_worker.py JOBS.json LIMIT_BYTES``. Each job is ``{"id", "args"}``; the
worker prints one JSON line per job: ``{"id", "exit", "exception", "traceback"}`` (a
``start`` line first, so a hard crash names the job it died in), then ``{"peak_mb"}``.
"""

from __future__ import annotations

import json
import sys
import traceback


def main() -> None:
    jobs_path, limit = sys.argv[1], int(sys.argv[2])
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # Windows, or a lower hard limit
        resource = None  # type: ignore[assignment]
    from click.testing import CliRunner

    from traceaudit.cli import main as cli

    runner = CliRunner()
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    for job in jobs:
        print(json.dumps({"start": job["id"]}), flush=True)
        try:
            result = runner.invoke(cli, job["args"], catch_exceptions=True)
            exc = result.exception
            escaped = exc is not None and not isinstance(exc, SystemExit)
            try:
                stderr = result.stderr
            except ValueError:  # a click without separate stderr capture
                stderr = ""
            text = result.output + stderr
            record = {
                "id": job["id"],
                "exit": result.exit_code,
                "exception": repr(exc)[:300] if escaped else None,
                "traceback": "Traceback" in text
                or (
                    escaped
                    and "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[
                        -600:
                    ]
                ),
                "stderr": stderr[:300],
            }
        except BaseException as exc:  # noqa: BLE001 - report, never die silently
            record = {"id": job["id"], "exit": None, "exception": repr(exc)[:300]}
        print(json.dumps(record), flush=True)
    peak = None
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"peak_mb": peak}), flush=True)


if __name__ == "__main__":
    main()
