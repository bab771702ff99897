"""ETW traces (``.etl``): file I/O with exact handle lifetimes, read natively and in bulk.

::

    >>> from traceaudit.formats.etl.reader import read_etl, read_etl_file_events
    >>> trace = read_etl("trace.etl")          # schema.EVENT_SCHEMA, UTC clock, file_object set
    >>> read_etl_file_events("trace.etl")      # every FileIo / Kernel-File record, decoded

What is read: the file-system events of the NT Kernel Logger (FileIo: Create, Cleanup,
Close, Read, Write, SetInfo, Delete, Rename, QueryInfo, FSControl, DirEnum, Flush,
OperationEnd, Name/FileCreate/FileDelete/FileRundown, DeletePath/RenamePath/SetLinkPath)
and of the manifest provider Microsoft-Windows-Kernel-File (the same operations, ids 10-30),
plus the process and thread events that name processes and map thread ids to processes,
and the volume mapping xperf/WPR add to a merged trace. Operations become rows named as
Process Monitor names them (CreateFile, CloseFile = IRP_MJ_CLEANUP, IRP_MJ_CLOSE,
SetRenameInformationFile…) with the result of their OperationEnd; the linking rules are in
:mod:`._etl_columns`. Times are UTC with 100 ns precision (``Trace.clock == "utc"``).

Every record is walked, but only the ones above are decoded, with numpy structured dtypes
over whole chunks of buffers. Buffers are expanded and their records walked by numba
kernels, one call per chunk (pure Python where numba is missing): on the 179,474-record
PerfView corpus trace (compressed buffers, 64-bit) this reader is over 100 times faster
than iterating dissect.etl (``benchmarks/bench_etl_read.py``), about half of its time
going to decompression.

The modules, in reading order:

* :mod:`._etl_layout`: buffer, record-header and payload layouts, as data;
* :mod:`._etl_xpress`: the LZ77 Xpress decompressor for compressed buffers (compiled, or
  pure Python);
* :mod:`._etl_buffers`: the logfile header (clock, pointer size), the buffer and record
  walk, damaged-buffer accounting;
* :mod:`._etl_events`: classification of records and bulk decoding of the ones needed;
* :mod:`._etl_columns`: linking (results, paths, processes) into the event schema.

A trace without file I/O (most ETW traces: they record other providers) is refused with a
:class:`~traceaudit.errors.TraceFormatError` saying how to record one. Damaged buffers are
skipped with a warning that counts them (an error in strict mode).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit.display import plural
from traceaudit.errors import DamagedRowError, TraceFormatError
from traceaudit.formats.binary import mapped_content
from traceaudit.formats.etl.buffers import (
    Damage,
    LogHeader,
    iter_chunks,
    read_log_header,
    sniff_etl,
)
from traceaudit.formats.etl.columns import (
    NAME_KINDS,
    OPERATION_KINDS,
    build_events,
    map_device_paths,
)
from traceaudit.formats.etl.events import (
    FILE_EVENT_SCHEMA,
    PROCESS_SCHEMA,
    THREAD_SCHEMA,
    Decoded,
    decode_chunk,
)
from traceaudit.formats.etl.layout import FILETIME_UNIX_EPOCH
from traceaudit.formats.input import TraceInput, open_input
from traceaudit.schema import Trace

__all__ = [
    "FORMAT_NAME",
    "CAPTURE_HINT",
    "sniff",
    "read_etl",
    "read_etl_file_events",
    "read_etl_processes",
    "read_etl_header",
    "read",
]

FORMAT_NAME = "etw-etl"
CLOCK = "utc"

CAPTURE_HINT = (
    "Record file activity with its operation starts and completions, as administrator: "
    "'xperf -on PROC_THREAD+LOADER+FILE_IO+FILE_IO_INIT+DISK_IO' … 'xperf -d trace.etl'; or "
    "'traceaudit capture-profile --wpr > traceaudit.wprp', 'wpr -start traceaudit.wprp' … 'wpr "
    "-stop trace.etl'; or, without the kernel logger, Microsoft-Windows-Kernel-File with keywords "
    "0xCF0 (FILENAME, FILEIO, OP_END, CREATE, DELETE_PATH, RENAME_SETLINK_PATH) through "
    "logman. 'traceaudit capture-profile --xperf/--logman' prints each setup in full."
)


def sniff(head: bytes) -> bool:
    """True when ``head`` (the first bytes of the content) starts an ETW .etl file."""
    return sniff_etl(head)


@dataclass
class _Read:
    """Everything decoded from one file."""

    name: str
    header: LogHeader
    decoded: Decoded
    damage: Damage
    files: pl.DataFrame
    processes: pl.DataFrame
    threads: pl.DataFrame


@contextmanager
def _content(trace_input: TraceInput) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes: memory-mapped when it is a plain file, else decompressed bytes."""
    with mapped_content(trace_input) as (content, _release):
        yield content


def _frame(parts: list[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=schema)


def _decode(trace_input: TraceInput, *, strict: bool) -> _Read:
    name = trace_input.name
    damage = Damage()
    decoded = Decoded()
    with _content(trace_input) as data:
        header = read_log_header(name, data)
        for chunk in iter_chunks(name, data, damage):
            decode_chunk(chunk, decoded)
            if strict and (damage.buffers or damage.cut_short):
                break
            del chunk
    if strict and (damage.buffers or damage.cut_short):
        where = damage.cut_short or damage.where[0]
        raise DamagedRowError(
            f"{name}: damaged trace: {where}. Read without strict mode to skip the damaged "
            "buffers and keep the rest."
        )
    if strict and decoded.too_short:
        raise DamagedRowError(
            f"{name}: record {decoded.too_short_rows[0]}: its payload is shorter than its "
            "event layout. Read without strict mode to skip such records."
        )
    return _Read(
        name=name,
        header=header,
        decoded=decoded,
        damage=damage,
        files=_frame(decoded.files, FILE_EVENT_SCHEMA),
        processes=_frame(decoded.processes, PROCESS_SCHEMA),
        threads=_frame(decoded.threads, THREAD_SCHEMA),
    )


def _no_file_io(read: _Read) -> TraceFormatError:
    names_only = read.files.filter(pl.col("kind").is_in(list(NAME_KINDS))).height
    what = (
        f"it names {names_only:,} files (FileIo name/rundown events) but records no "
        "operation on them"
        if names_only
        else "none of them is a FileIo (NT Kernel Logger) or Microsoft-Windows-Kernel-File event"
    )
    return TraceFormatError(
        f"{read.name}: an ETW trace without file I/O: it holds {read.decoded.records:,} "
        f"events from logger '{read.header.logger_name or '?'}' and {what}, so there is no "
        f"open, close, rename or delete to analyse. {CAPTURE_HINT}"
    )


def _warnings(read: _Read, counts: dict[str, int], volumes: bool) -> list[str]:
    name, damage, header = read.name, read.damage, read.header
    out: list[str] = []
    if damage.buffers:
        out.append(
            f"{name}: {plural(damage.buffers, 'damaged buffer')} skipped (first: "
            f"{damage.where[0]}); the events in {'it' if damage.buffers == 1 else 'them'} "
            "are lost."
        )
    if damage.cut_short:
        out.append(f"{name}: {damage.cut_short}; the events after it are lost.")
    if read.decoded.too_short:
        rows = ", ".join(str(r) for r in read.decoded.too_short_rows)
        out.append(
            f"{name}: {plural(read.decoded.too_short, 'file event')} shorter than their layout "
            f"skipped (records {rows})."
        )
    if header.events_lost or header.buffers_lost:
        out.append(
            f"{name}: the session lost {header.events_lost:,} events and "
            f"{header.buffers_lost:,} buffers while recording, so some file operations are "
            "missing. Record with larger or more buffers."
        )
    if counts["op_ends"] == 0:
        out.append(
            f"{name}: the trace has no OperationEnd events (FileIo 76 / Kernel-File 24), so "
            "no result is known: opens followed by I/O on their file object are taken as "
            f"successful ({counts['inferred']:,}), other results are left empty. Record with "
            "FILE_IO (kernel) or the OP_END keyword (0x40) to see SHARING VIOLATION and the "
            "like."
        )
    if counts["dropped"]:
        out.append(
            f"{name}: the trace records file I/O twice, as kernel FileIo events and as "
            f"Microsoft-Windows-Kernel-File events; {counts['dropped']:,} operations of the "
            "smaller set were left out. Record one of the two."
        )
    if not volumes:
        out.append(
            f"{name}: the trace has no volume mapping, so paths are shown as NT device paths "
            "(\\Device\\HarddiskVolume2\\…). Merge the trace with 'xperf -merge' (WPR and "
            "'xperf -d' do this) to get drive letters."
        )
    return out


def _trace(read: _Read, source: Path | None, input_warnings: list[str]) -> Trace:
    if read.files.filter(pl.col("kind").is_in(list(OPERATION_KINDS))).is_empty():
        raise _no_file_io(read)
    volumes = read.decoded.volumes
    events, counts = build_events(read.files, read.processes, read.threads, volumes, read.header)
    skipped: dict[str, int] = {}
    if read.damage.buffers:
        skipped["damaged buffer"] = read.damage.buffers
    if read.decoded.too_short:
        skipped["event shorter than its layout"] = read.decoded.too_short
    rows = tuple(read.damage.where[:5]) + tuple(f"record {r}" for r in read.decoded.too_short_rows)
    return Trace(
        events=events,
        format=FORMAT_NAME,
        source=source,
        clock=CLOCK,
        warnings=tuple([*input_warnings, *_warnings(read, counts, bool(volumes))]),
        skipped=skipped,
        skipped_rows=rows[:5],
        truncated=read.damage.cut_short is not None,
    )


def read_etl(path: str | os.PathLike[str], *, strict: bool = False) -> Trace:
    """Read the file operations of an ETW trace into a Trace (see the module docstring).

    ``.gz``/``.zip``-wrapped traces are opened transparently. Raises
    :class:`~traceaudit.errors.TraceFormatError` for a file that is not an ETW trace or
    holds no file I/O; damaged buffers are skipped with a warning (``strict=True``: raise).
    """
    trace_input = open_input(path, sniff=sniff)
    return _trace(_decode(trace_input, strict=strict), Path(path), trace_input.warnings)


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """The reader for the format table: one opened ETL input (``date`` is ignored: ETW
    times carry their date)."""
    return _trace(_decode(trace_input, strict=strict), trace_input.source, trace_input.warnings)


def read_etl_file_events(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Every FileIo and Kernel-File record of a trace, decoded but not linked.

    One row per record, in file order: ``row`` (record number), ``time`` (UTC),
    ``source`` (``FileIo``/``Kernel-File``), ``code`` (opcode or event id), ``version``,
    ``kind`` and the payload fields (``irp``, ``file_object``, ``file_key``, ``ttid``,
    ``create_options``, ``attributes``, ``share``, ``extra``, ``info_class``, ``status``,
    ``offset``, ``io_size``, ``io_flags``, ``name`` with device paths mapped to drive
    letters when the trace maps them), plus the header's ``pid``/``tid``. For checking a
    trace against another tool's dump, or for questions the event schema does not answer.
    """
    read = _decode(open_input(path, sniff=sniff), strict=False)
    frame = read.files.sort("row")
    filetimes = read.header.filetimes(frame["raw_time"].to_numpy())
    return frame.with_columns(
        time=pl.Series((filetimes - FILETIME_UNIX_EPOCH) * 100).cast(pl.Datetime("ns")),
        name=map_device_paths(pl.col("name"), read.decoded.volumes),
    ).select("row", "time", *[c for c in frame.columns if c not in ("row", "raw_time")])


def read_etl_processes(path: str | os.PathLike[str]) -> pl.DataFrame:
    """The process events of a trace (kernel Process Start/End/DCStart/DCEnd/Defunct and
    Kernel-Process ProcessStart), in file order: ``row``, ``time`` (UTC), ``pid``,
    ``parent_pid``, ``image`` (the image file name that names the process), ``kind``."""
    read = _decode(open_input(path, sniff=sniff), strict=False)
    frame = read.processes.sort("row")
    filetimes = read.header.filetimes(frame["raw_time"].to_numpy())
    return frame.with_columns(
        time=pl.Series((filetimes - FILETIME_UNIX_EPOCH) * 100).cast(pl.Datetime("ns"))
    ).select("row", "time", "pid", "parent_pid", "image", "kind")


def read_etl_header(path: str | os.PathLike[str]) -> LogHeader:
    """The logfile header of a trace: clock, start/end time, pointer size, logger name."""
    trace_input = open_input(path, sniff=sniff)
    with _content(trace_input) as data:
        return read_log_header(trace_input.name, data)
