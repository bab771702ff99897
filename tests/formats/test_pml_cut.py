"""Corpus PML logs cut short anywhere: every event wholly before the cut is read, equal to
the whole log's, with a warning naming what was lost; or the cut is refused with a
:class:`TraceauditError`. Never a traceback.

What "wholly before the cut" means is worked out here from the whole log's event index
and each event's header (header, stack, details and extra details block), independently
of the reader's walk over a cut file. Skipped when the corpus is absent.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_pml_kernels import both_paths  # noqa: F401  (every read: with and without kernels)

from traceaudit.errors import TraceauditError, TraceFormatError
from traceaudit.formats.pml.reader import read_pml

pytestmark = pytest.mark.usefixtures("both_paths")

HEADER_SIZE = 0x3A8
LOGS = (
    "procmon-pairs/Tests32bit.pml.gz",
    "procmon-pairs/Tests64bit.pml.gz",
    "procmon-pairs/UTC32Filesystem.pml.gz",
    "procmon-pairs/UTC64Filesystem.pml.gz",
    "procmon-pairs/UTC64Process.pml.gz",
    "procmon-pml/crysis-nanny.pml",
    "procmon-pml/file-dump-renames.pml",
    "procmon-pml/noriben-2013-v7.pml",
    "procmon-pml/prsp0007.pml",
    "procmon-pml/ron-crash (b).pml",
    "procmon-pml/ron-crash-a.pml",
)
UNLISTED = {"noriben-2013-v7.pml": (0x1EAE4, 0x1EC2C)}
"""Events stored in a log that its index does not list (start, end): Procmon 2.x wrote
this Process Create after the last listed event. A walk over a log whose index is cut
off finds it, so it may be read when the whole event area is there."""

FRACTIONS = tuple(Fraction(k, 11) for k in range(1, 11))
BOUNDARIES = ("in the header", "after the header", "in the first event", "index", "tables")


@dataclass
class Whole:
    """A corpus log decompressed, read whole, and where each listed event ends."""

    name: str
    content: bytes
    events: pl.DataFrame
    offsets: np.ndarray  # by row - 1
    ends: np.ndarray  # where each event's last byte (extra details included) ends + 1
    index_at: int
    index_end: int
    strings_at: int
    icons_at: int
    hosts_at: int


_WHOLE: dict[str, Whole] = {}


def whole_log(corpus: Path, tmp_path_factory, log: str) -> Whole:
    """The log, read once per test session."""
    if log in _WHOLE:
        return _WHOLE[log]
    source = corpus / log
    name = source.name.removesuffix(".gz")
    if source.suffix == ".gz":
        path = tmp_path_factory.mktemp("whole") / name
        with gzip.open(source) as packed, path.open("wb") as target:
            shutil.copyfileobj(packed, target)
    else:
        path = source
    content = path.read_bytes()
    trace = read_pml(path)
    assert trace.warnings == () and not trace.truncated
    pointer = 8 if struct.unpack_from("<I", content, 8)[0] else 4
    count = struct.unpack_from("<I", content, 0x234)[0]
    index_at, _, strings_at, icons_at = struct.unpack_from("<4Q", content, 0x248)
    offsets = np.array(
        [struct.unpack_from("<I", content, index_at + 5 * i)[0] for i in range(count)]
    )
    ends = []
    for at in offsets.tolist():
        depth, _, size, extra = struct.unpack_from("<HHII", content, at + 40)
        end = at + 52 + depth * pointer + size
        if extra:  # the extra details block, wherever it is
            end = max(end, at + extra + 2 + struct.unpack_from("<H", content, at + extra)[0])
        ends.append(end)
    _WHOLE[log] = Whole(
        name,
        content,
        trace.events.sort("row"),
        offsets,
        np.array(ends),
        index_at,
        index_at + 5 * count,
        strings_at,
        icons_at,
        struct.unpack_from("<Q", content, 0x3A0)[0],
    )
    return _WHOLE[log]


def cut_point(whole: Whole, where: Fraction | str) -> int:
    if isinstance(where, Fraction):
        return int(len(whole.content) * where)
    return {
        "in the header": 0x100,
        "after the header": HEADER_SIZE,
        "in the first event": int(whole.offsets[0] + whole.ends[0]) // 2,
        "index": whole.index_at,
        "tables": whole.strings_at + 10,
    }[where]


def cases() -> list:
    return [
        pytest.param(log, where, id=f"{Path(log).name}-{where}")
        for log in LOGS
        for where in (*FRACTIONS, *BOUNDARIES)
    ]


def read_cut(whole: Whole, cut: int, tmp_path: Path, *, strict: bool = False):
    path = tmp_path / whole.name
    path.write_bytes(whole.content[:cut])
    return read_pml(path, strict=strict)


def compared(events: pl.DataFrame, keep_rows: bool) -> pl.DataFrame:
    """The columns that must be equal; network paths and details may lose their host
    and service names (the tables that name them close the file)."""
    network = pl.col("event_class") == "Network"
    frame = events.with_columns(
        *(pl.when(network).then(None).otherwise(pl.col(c)).alias(c) for c in ("path", "detail"))
    )
    frame = frame.drop("process", "pid", *(() if keep_rows else ("row",)))
    return frame.sort(frame.columns)


@pytest.mark.parametrize(("log", "where"), cases())
def test_cut_log_reads_what_lies_before_the_cut(corpus, tmp_path_factory, tmp_path, log, where):
    whole = whole_log(corpus, tmp_path_factory, log)
    cut = cut_point(whole, where)
    try:
        trace = read_cut(whole, cut, tmp_path)
    except TraceauditError as exc:  # only a cut inside the header may be refused
        assert cut < HEADER_SIZE, str(exc)
        assert str(exc).startswith(f"{whole.name}: header at 0x0: the file is only {cut} bytes")
        return
    intact = np.flatnonzero(whole.ends <= cut)
    expected = whole.events[intact.tolist()]
    count = len(whole.offsets)
    assert trace.truncated
    assert any("the file was cut short" in w for w in trace.warnings), trace.warnings
    unlisted = UNLISTED.get(whole.name)
    extra = int(unlisted is not None and unlisted[1] <= cut < whole.index_end)
    assert trace.events.height == len(intact) + extra
    warnings = list(trace.warnings)
    if cut < whole.index_end:  # the index is cut off: the events are walked
        lost = count - len(intact)
        said = (
            f"{lost} of the {count} events the header counts were lost"
            if not extra
            else f"the header counts {count} events, 1 fewer than were read"
        )
        assert said in warnings.pop(0)
    if cut < whole.icons_at:  # the process and strings tables are cut off
        assert warnings.pop(0).endswith(
            f"past the end of the file (0x{cut:X}): the file was cut short; process names and "
            "PIDs are unknown (null) for every event."
        )
        assert trace.events["pid"].null_count() == trace.events.height
    else:  # only names at the very end of the file are missing
        assert warnings.pop(0) == (
            f"{whole.name}: the hosts and ports tables at 0x{whole.hosts_at:X} "
            f"{'lie' if cut <= whole.hosts_at else 'run'} past the end of the file "
            f"(0x{cut:X}): the file was cut short; network paths show IP addresses and port "
            "numbers instead of the host and service names lost."
        )
        assert trace.events.select("process", "pid").equals(whole.events.select("process", "pid"))
    assert warnings == []
    ours = trace.events
    if extra:  # the unlisted event, stored last, is also the latest
        ours = ours.filter(pl.col("time") != ours["time"].max())
    # Rows match where the log stores its events in display order (all but version 7).
    in_order = bool(np.all(np.diff(whole.offsets) > 0))
    assert compared(ours, in_order).equals(compared(expected, in_order))


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("procmon-pairs/UTC32Filesystem.pml.gz", 4720),  # read only 28 before the fix
        ("procmon-pairs/Tests32bit.pml.gz", 16820),
        ("procmon-pairs/UTC64Filesystem.pml.gz", 17043),
        ("procmon-pairs/Tests64bit.pml.gz", 27831),
    ],
    ids=lambda v: str(v).split("/")[-1],
)
def test_log_cut_in_half_keeps_every_event_of_its_first_half(
    corpus, tmp_path_factory, tmp_path, log, expected
):
    """UTC32Filesystem stores 78 of its 64 KiB directory listings one byte longer than
    their size word says: the walk must find the next event past that byte."""
    whole = whole_log(corpus, tmp_path_factory, log)
    cut = len(whole.content) // 2
    assert int(np.sum(whole.ends <= cut)) == expected
    trace = read_cut(whole, cut, tmp_path)
    assert trace.events.height == expected
    assert (
        trace.events.sort("row")
        .drop("process", "pid")
        .equals(whole.events.head(expected).drop("process", "pid"))
    )
    count = len(whole.offsets)
    assert trace.warnings[0].endswith(
        f"{count - expected} of the {count} events the header counts were lost."
    )


@pytest.mark.parametrize("log", ["procmon-pairs/UTC32Filesystem.pml.gz", *LOGS[5::2]])
def test_cut_log_in_strict_mode_is_an_error(corpus, tmp_path_factory, tmp_path, log):
    whole = whole_log(corpus, tmp_path_factory, log)
    for where in (FRACTIONS[4], FRACTIONS[9]):
        with pytest.raises(TraceFormatError) as caught:
            read_cut(whole, cut_point(whole, where), tmp_path, strict=True)
        message = str(caught.value)
        assert message.startswith(f"{whole.name}: the ")
        assert "the file was cut short" in message
        assert "Read without strict mode to keep the" in message
