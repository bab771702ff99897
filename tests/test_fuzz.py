"""Seeded mutation fuzzing of every reader through every command.

Sound traces of every format (CSV, pasted rows, gzip, zip, Parquet, and from the corpus PML,
XML and ETL) are damaged the way disks, downloads and people damage files: cut short,
bytes flipped, a run zeroed, a chunk duplicated or deleted, a huge field inserted. Each
mutant goes through ``analyze``, ``analyze --json``, ``convert``, ``redact`` or
``timeline`` in a worker process under a memory limit. Every run must end with exit 0 (read,
perhaps with rows skipped) or 3 (one ``error:`` line): never a traceback, never a crash,
never unbounded memory. Every other worker process forces the compiled loops
(``TRACEAUDIT_JIT=1``; the command line leaves them out for small files), and the tests
run them bounds-checked, so a kernel reading past its buffer fails here too.

The default suite runs a few hundred mutants; ``pytest -m long`` runs thousands.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from locations import CORPUS, ROOT, SUPPORT

ROOT = ROOT
SAMPLES = ROOT / "samples"
WORKER = SUPPORT / "fuzz_worker.py"
MEMORY_LIMIT = 6 << 30  # address space per worker (polars reserves much it never touches)
PEAK_LIMIT_MB = 2_000  # resident memory a worker of BATCH small mutants may reach (the worst
# single mutant, a 2 MB field inserted into an 11 KB CSV then redacted, needs about 700 MB)
WORKERS = 2
BATCH = 25  # mutants per worker process: a fresh address space every BATCH


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    suffix: str


def _seeds(tmp: Path) -> list[Seed]:
    csv = (SAMPLES / "replace-under-indexer.csv").read_bytes()
    seeds = [
        Seed("csv", csv, ".csv"),
        Seed("pasted", (SAMPLES / "uv-issue-pasted.tsv").read_bytes(), ".tsv"),
        Seed("gzip", gzip.compress(csv), ".csv.gz"),
        Seed("zip", _zipped(csv), ".zip"),
        Seed("parquet", _parquet(tmp), ".parquet"),
        Seed("etl", _etl(tmp), ".etl"),
    ]
    corpus = {
        "pml": ("procmon-pml/noriben-2013-v7.pml", ".pml", None),
        "pml9": ("procmon-pml/file-dump-renames.pml", ".pml", None),
        "xml": ("procmon-xml/defender-scan-russian.xml", ".xml", 60),
        "csv-monitor": ("procmon-csv/monitorapis.csv", ".csv", None),
    }
    for name, (relative, suffix, events) in corpus.items():
        path = CORPUS / relative
        if path.is_file():
            data = path.read_bytes()
            seeds.append(Seed(name, _first_events(data, events) if events else data, suffix))
    return seeds


def _first_events(xml: bytes, count: int) -> bytes:
    """A Procmon XML export cut down to its first ``count`` events (and no process list)."""
    head = xml[: xml.index(b"<processlist>")] + b"<processlist></processlist>"
    start = xml.index(b"<eventlist>")
    end = start
    for _ in range(count):
        end = xml.index(b"</event>", end) + len(b"</event>")
    return head + xml[start:end] + b"</eventlist></procmon>"


def _etl(tmp: Path) -> bytes:
    """The replace-under-indexer sample as Kernel-File ETW events (the tests' ETL writer)."""
    from etl_writer import write_etl
    from traceaudit import read_trace

    out = tmp / "seed.etl"
    write_etl(read_trace(SAMPLES / "replace-under-indexer.csv"), out)
    return out.read_bytes()


def _zipped(data: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Logfile.CSV", data)
    return buffer.getvalue()


def _parquet(tmp: Path) -> bytes:
    from traceaudit.formats.convert import convert

    _, written = convert(SAMPLES / "replace-under-indexer.csv", tmp / "seed.parquet")
    return written.read_bytes()


# ---------------------------------------------------------------------------- mutations


def _mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    n = len(data)
    at = rng.randrange(max(n, 1))
    kind = rng.choice(["truncate", "flip", "zero", "duplicate", "delete", "huge", "flip"])
    if kind == "truncate":
        return kind, data[:at]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(max(n, 1))
            if n:
                out[i] = rng.randrange(256)
        return kind, bytes(out)
    span = rng.randint(1, max(1, min(4096, n // 4 or 1)))
    if kind == "zero":
        return kind, data[:at] + b"\x00" * span + data[at + span :]
    if kind == "duplicate":
        return kind, data[: at + span] + data[at : at + span] + data[at + span :]
    if kind == "delete":
        return kind, data[:at] + data[at + span :]
    field = rng.choice([b"A", b'"', b"\t", b",", b"\xff", b"<x>"]) * rng.randint(10_000, 2_000_000)
    return kind, data[:at] + field + data[at:]


def _commands(path: Path, seed: Seed, out_dir: Path, index: int, rng: random.Random) -> list[str]:
    which = rng.choice(["analyze", "json", "convert", "convert-csv", "redact", "timeline"])
    p = str(path)
    if which == "analyze":
        return ["analyze", p, "--limit", "3"]
    if which == "json":
        return ["analyze", p, "--json"]
    if which == "convert":
        return ["convert", p, "-o", str(out_dir / f"o{index}.parquet")]
    if which == "convert-csv":
        return ["convert", p, "-o", str(out_dir / f"o{index}.csv")]
    if which == "redact":
        return ["redact", p, "-o", str(out_dir / f"r{index}{seed.suffix}"), "--secret", "Contoso"]
    return ["timeline", p, "C:\\Users"]


def _jobs(tmp: Path, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    seeds = _seeds(tmp)
    jobs = []
    for index in range(count):
        base = seeds[index % len(seeds)]
        kind, data = _mutate(base.data, rng)
        path = tmp / f"m{index}-{base.name}-{kind}{base.suffix}"
        path.write_bytes(data)
        jobs.append(
            {
                "id": index,
                "what": f"{base.name} {kind}",
                "args": _commands(path, base, tmp, index, rng),
            }
        )
    return jobs


def _collect(proc: subprocess.Popen, jobs: list[dict], results: dict, peaks: list) -> None:
    out, err = proc.communicate(timeout=1_800)
    started = None
    for line in out.splitlines():
        record = json.loads(line)
        if "start" in record:
            started = record["start"]
        elif "peak_mb" in record:
            peaks.append(record["peak_mb"])
            started = None
        else:
            results[record["id"]] = record
            started = None
    assert proc.returncode == 0 and started is None, (
        f"worker died (status {proc.returncode}) on job {started}: "
        f"{next((j for j in jobs if j['id'] == started), None)}\n{err[-2000:]}"
    )


def _run(tmp: Path, jobs: list[dict]) -> tuple[dict[int, dict], list[int | None]]:
    """Jobs in fresh worker processes of :data:`BATCH` each, :data:`WORKERS` at a time."""
    batches = [jobs[i : i + BATCH] for i in range(0, len(jobs), BATCH)]
    results: dict[int, dict] = {}
    peaks: list[int | None] = []
    running: list[subprocess.Popen] = []
    for k, batch in enumerate(batches):
        if len(running) == WORKERS:
            _collect(running.pop(0), jobs, results, peaks)
        spec = tmp / f"jobs{k}.json"
        spec.write_text(json.dumps(batch), encoding="utf-8")
        # Every other worker forces the compiled loops, which the command line skips for
        # files this small: hostile bytes must reach them too.
        env = {**os.environ, "TRACEAUDIT_JIT": "1"} if k % 2 else None
        running.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(spec), str(MEMORY_LIMIT)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp,
                env=env,
            )
        )
    for proc in running:
        _collect(proc, jobs, results, peaks)
    return results, peaks


def _check(tmp: Path, count: int, seed: int) -> None:
    jobs = _jobs(tmp, count, seed)
    results, peaks = _run(tmp, jobs)
    problems = []
    for job in jobs:
        record = results.get(job["id"])
        if record is None:
            problems.append(f"{job['what']}: no result")
            continue
        if record["exit"] not in (0, 3) or record.get("exception") or record.get("traceback"):
            problems.append(
                f"{job['what']} {job['args'][0]}: exit {record['exit']}, "
                f"{record.get('exception')}, {record.get('stderr', '')[:200]!r}"
            )
    assert not problems, f"{len(problems)} of {len(jobs)} mutants misbehaved:\n" + "\n".join(
        problems[:20]
    )
    for peak in peaks:
        assert peak is None or peak < PEAK_LIMIT_MB, f"a worker peaked at {peak} MB"


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the worker reads VmHWM on Linux only"
)
def test_a_worker_reports_its_own_peak_not_its_parents(tmp_path: Path) -> None:
    # Linux hands a vfork-started child the parent's peak in ru_maxrss: after the rest of
    # the suite, idle workers "peaked" at the pytest process's 3 GB.
    spec = tmp_path / "none.json"
    spec.write_text("[]", encoding="utf-8")
    parent = (
        "import subprocess, sys\n"
        "held = bytearray(1 << 30)\n"
        "held[::4096] = b'\\x01' * len(range(0, 1 << 30, 4096))  # resident, not just reserved\n"
        "del held\n"
        "sys.stdout.write(subprocess.run(sys.argv[1:], capture_output=True, text=True).stdout)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", parent, sys.executable, str(WORKER), str(spec), str(MEMORY_LIMIT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    peak = json.loads(out.splitlines()[-1])["peak_mb"]
    assert peak is not None and peak < 512, f"an idle worker reported {peak} MB"


def test_a_few_hundred_mutants_of_every_format_end_in_exit_0_or_3(tmp_path):
    _check(tmp_path, count=400, seed=20261204)


@pytest.mark.long
@pytest.mark.parametrize("seed", range(10))
def test_thousands_of_mutants(tmp_path, seed):
    _check(tmp_path, count=400, seed=seed)
