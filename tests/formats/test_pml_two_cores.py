"""The PML reader on two cores: the same frames as on one.

A big read splits the event-header pass in two halves, one on a worker thread, and
decodes the paths' text on a worker thread while the caller makes the other columns
(:mod:`traceaudit._threads`, :mod:`traceaudit.formats.pml.paths`). Only reads of 8,192
events or more do that, so these tests lower the thresholds to one event and pretend to
have two cores, then require the frames, warnings, damage counts and errors of a read on
one core: for every corpus capture, for a damaged synthetic log, for the batch reader,
and with pages given back per chunk by the worker while the caller reads typed details.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal
from test_batches_pml import batched, mixed_events, mixed_log
from test_read_pml_builder import pml_file, write

from same import assert_same_trace
from threads import record_thread_starts
from traceaudit import _threads
from traceaudit.errors import DamagedRowError
from traceaudit.formats.pml import events as pml_events
from traceaudit.formats.pml import kernels, paths
from traceaudit.formats.pml import reader as pml_reader
from traceaudit.formats.pml.reader import read_pml

pytestmark = pytest.mark.skipif(kernels.compiled() is None, reason="no compiled kernels")


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every read from here splits its header pass and decodes paths on a worker; the
    list given names each worker thread that ran."""
    started = record_thread_starts(monkeypatch)
    monkeypatch.setattr(_threads, "cores", lambda: 2)
    monkeypatch.setattr(paths, "cores", lambda: 2)
    monkeypatch.setattr(paths, "_BACKGROUND_EVENTS", 1)
    monkeypatch.setattr(pml_events, "_TWO_CORES", 2)
    yield started


def _one_core(read: object, *args: object, **kwargs: object) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_threads, "cores", lambda: 1)
        patch.setattr(paths, "cores", lambda: 1)
        return read(*args, **kwargs)  # type: ignore[operator]


def test_every_corpus_capture_reads_the_same_on_two_cores(
    corpus: Path, tmp_path: Path, two_cores: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = sorted((corpus / "procmon-pml").glob("*.pml")) + sorted(
        (corpus / "procmon-pairs").glob("*.pml.gz")
    )
    assert logs
    for log in logs:
        path = log
        if log.suffix == ".gz":  # a plain file: memory-mapped, its pages given back
            path = tmp_path / log.name.removesuffix(".gz")
            with gzip.open(log) as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        two_cores.clear()
        two = read_pml(path)
        assert len(two_cores) == 2, log.name  # the header pass's half and the paths
        assert_same_trace(two, _one_core(read_pml, path))
    # The worker gives each chunk's pages back while this thread reads typed details
    # from them (they fault back in): still the same frame.
    monkeypatch.setattr(pml_reader, "_RELEASE_PER_CHUNK", 0)
    monkeypatch.setattr(paths, "_DECODE_CHUNK", 7)
    assert_same_trace(read_pml(path), _one_core(read_pml, path))


def test_damaged_events_in_either_half_are_counted_once(
    tmp_path: Path, two_cores: list[str]
) -> None:
    content = bytearray(pml_file(mixed_events()))
    index_at = struct.unpack_from("<Q", content, 0x248)[0]
    for number in (1, 8):  # one damaged event in each half
        struct.pack_into("<I", content, index_at + 5 * number, len(content) + 100 * number)
    path = write(tmp_path, "damaged.pml", bytes(content))
    two = read_pml(path)
    assert two.skipped == {"damaged event": 2}
    assert "traceaudit-worker" in two_cores
    assert_same_trace(two, _one_core(read_pml, path))
    with pytest.raises(DamagedRowError) as on_two:
        read_pml(path, strict=True)
    with pytest.raises(DamagedRowError) as on_one:
        _one_core(read_pml, path, strict=True)
    assert str(on_two.value) == str(on_one.value)


def test_batches_read_the_same_on_two_cores(tmp_path: Path, two_cores: list[str]) -> None:
    path = mixed_log(tmp_path)
    for batch_rows in (3, 1000):
        events, reading, _ = batched(path, batch_rows=batch_rows)
        assert two_cores
        one, one_reading, _ = _one_core(batched, path, batch_rows=batch_rows)  # type: ignore[misc]
        assert_frame_equal(events, one)
        assert reading.warnings == one_reading.warnings


def test_an_error_on_the_worker_reaches_the_caller_after_it_stops(
    tmp_path: Path, two_cores: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise MemoryError("no room for the paths")

    monkeypatch.setattr(paths, "decode_paths", failing)
    with pytest.raises(MemoryError, match="no room for the paths"):
        read_pml(mixed_log(tmp_path))
