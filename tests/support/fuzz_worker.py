"""Runs fuzz mutants through the CLI in one process under a memory limit (test helper).

Usage: ``python fuzz_worker.py JOBS.json LIMIT_BYTES``. Each job is ``{"id", "args"}``; the
worker prints one JSON line per job: ``{"id", "exit", "exception", "traceback"}`` (a
``start`` line first, so a hard crash names the job it died in), then ``{"peak_mb"}``: the
most memory this worker held resident (:func:`peak_mb`), None where it cannot be known.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from types import ModuleType


def peak_mb(resource: ModuleType | None) -> int | None:
    """The most memory this process has held resident, in MB (None: not measurable here).

    On Linux, ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own
    address space. Not ``ru_maxrss``: at ``exec`` Linux folds the high-water mark of the
    address space being left into it, and ``subprocess`` starts a worker with ``vfork``,
    whose address space is the parent's, so a worker started by a pytest process that once
    held 3 GB (after the rest of the suite) reported 3 GB having done almost nothing.
    Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on the other systems that have it).
    """
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as handle:
            found = re.search(r"^VmHWM:\s*(\d+) kB", handle.read(), re.MULTILINE)
        if found:
            return int(found.group(1)) // 1024
    except OSError:
        pass
    if resource is None:
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak // (1 << 20) if sys.platform == "darwin" else peak // 1024


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
    print(json.dumps({"peak_mb": peak_mb(resource)}), flush=True)


if __name__ == "__main__":
    main()
