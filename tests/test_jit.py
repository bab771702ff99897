"""When the readers' compiled loops are used: always in a long-lived process, and on the
command line only where they win back their loading (:mod:`traceaudit._jit`).

Loading numba and a reader's kernels costs 0.3-0.5 s per process; the PML and CSV kernels
save about 0.2 ms per MB. ``traceaudit analyze small.csv`` must not pay for them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from locations import SAMPLES
from traceaudit import _jit
from traceaudit.cli import main

SAMPLE = SAMPLES / "uv-extract-rename.csv"


def test_small_inputs_do_not_pay_off_and_big_ones_do(monkeypatch):
    monkeypatch.delenv("TRACEAUDIT_JIT", raising=False)
    assert not _jit.pays_off(30 * 2**20)
    assert _jit.pays_off(_jit.PAYS_OFF_BYTES)
    monkeypatch.setenv("TRACEAUDIT_JIT", "1")
    assert _jit.pays_off(0)


def test_plain_paths_nest_and_end():
    assert not _jit.plain()
    with _jit.plain_paths():
        with _jit.plain_paths(on=False):
            assert _jit.plain()
        assert _jit.plain()
    assert not _jit.plain()


def _plain_while_reading(monkeypatch, *args: str) -> list[bool]:
    """What ``plain()`` said while the command's reader ran."""
    seen: list[bool] = []
    from traceaudit.formats import load

    real = load.open_batches

    def spy(*a, **k):
        seen.append(_jit.plain())
        return real(*a, **k)

    monkeypatch.setattr(load, "open_batches", spy)
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen


def test_the_command_line_reads_a_small_trace_on_the_plain_paths(monkeypatch):
    monkeypatch.delenv("TRACEAUDIT_JIT", raising=False)
    assert _plain_while_reading(monkeypatch, "analyze", str(SAMPLE)) == [True]
    assert not _jit.plain()  # and only while the command runs


def test_a_big_trace_or_traceaudit_jit_uses_the_kernels(monkeypatch):
    monkeypatch.setattr(_jit, "PAYS_OFF_BYTES", 1)
    monkeypatch.delenv("TRACEAUDIT_JIT", raising=False)
    assert _plain_while_reading(monkeypatch, "analyze", str(SAMPLE)) == [False]
    monkeypatch.setattr(_jit, "PAYS_OFF_BYTES", 2**62)
    monkeypatch.setenv("TRACEAUDIT_JIT", "1")
    assert _plain_while_reading(monkeypatch, "analyze", str(SAMPLE)) == [False]


@pytest.mark.parametrize(("jit", "loaded"), [(None, False), ("1", True)])
def test_numba_is_not_even_imported_for_a_small_trace(tmp_path, jit, loaded):
    env = {k: v for k, v in os.environ.items() if k not in ("TRACEAUDIT_JIT", "TRACEAUDIT_NO_JIT")}
    if jit is not None:
        env["TRACEAUDIT_JIT"] = jit
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "traceaudit", "analyze", str(SAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert ("numba" in imported) is loaded


def test_compressed_inputs_count_for_what_they_hold_and_etl_always_compiles(tmp_path, monkeypatch):
    from traceaudit.cli import _compiled_loops_for

    monkeypatch.delenv("TRACEAUDIT_JIT", raising=False)
    monkeypatch.setattr(_jit, "PAYS_OFF_BYTES", 8_000)
    plain_csv = tmp_path / "Logfile.CSV"
    plain_csv.write_bytes(b"x" * 1_000)
    packed = tmp_path / "Logfile.CSV.gz"
    packed.write_bytes(b"x" * 1_000)  # counted as 8,000 bytes of trace
    trace = tmp_path / "boot.etl"
    trace.write_bytes(b"x")

    def plain_inside(paths) -> bool:
        with _compiled_loops_for(paths):
            return _jit.plain()

    assert plain_inside((plain_csv,)) is True
    assert plain_inside((packed,)) is False
    assert plain_inside((plain_csv, trace)) is False  # ETL's decoder always pays off
    assert plain_inside((tmp_path / "missing.pml",)) is True  # the command says it is missing
    assert plain_inside(()) is False
