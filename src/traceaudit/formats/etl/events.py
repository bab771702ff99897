"""Classify the records of a chunk and decode the ones this reader needs, in bulk.

Per chunk of records (:class:`~._etl_buffers.Chunk`) the trace headers are read as numpy
columns; the records kept are:

* file events: FileIo (kernel group 4) and Microsoft-Windows-Kernel-File, in
  :func:`file_events` (one row per record, the fields of its payload layout, unset
  fields null);
* process and thread events: kernel Process (group 3) and Thread (group 5) MOF events
  and Microsoft-Windows-Kernel-Process ProcessStart/ThreadStart, to name processes and
  map issuing thread ids to process ids;
* KernelTraceControl's VolumeMapping (``\\Device\\HarddiskVolume2\\`` → ``C:\\``).

Payload fields are gathered with one structured-dtype copy per (provider, kind, layout,
pointer size) group and strings are decoded in bulk (:func:`~._pml_text.decode_strings`),
so no Python object is made per event except for EVENT_HEADER records that carry
extended data items, whose item chain is followed with a few vectorised steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from traceaudit.formats.etl.buffers import Chunk
from traceaudit.formats.etl.layout import (
    EVENT_HEADER_DTYPE,
    EVENT_HEADER_FLAG_EXTENDED_INFO,
    EVENT_HEADERS,
    FILEIO_KINDS,
    GROUP_FILE,
    GROUP_PROCESS,
    GROUP_THREAD,
    HEADER_SIZES,
    KERNEL_FILE_GUID,
    KERNEL_FILE_KINDS,
    KERNEL_PROCESS_GUID,
    PAYLOADS,
    PERFINFO_HEADER_DTYPE,
    POINTER_SIZE,
    SYSCONFIG_EX_GUID,
    SYSTEM_FAMILY,
    SYSTEM_HEADER_DTYPE,
    TRACE_HEADER_DTYPE,
    TRACE_HEADERS,
    VOLUME_MAPPING_TYPE,
    layout_generation,
    payload_dtype,
)
from traceaudit.formats.pml.tables import gather_records
from traceaudit.formats.pml.text import decode_strings

__all__ = ["Decoded", "FILE_EVENT_SCHEMA", "PROCESS_SCHEMA", "THREAD_SCHEMA", "decode_chunk"]

FILE_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "raw_time": pl.Int64(),
    "pid": pl.Int64(),
    "tid": pl.Int64(),
    "source": pl.String(),  # "FileIo" (NT Kernel Logger) or "Kernel-File"
    "code": pl.Int64(),  # FileIo opcode or Kernel-File event id
    "version": pl.Int64(),
    "kind": pl.String(),  # see _etl_layout.FILEIO_KINDS
    "irp": pl.UInt64(),
    "file_object": pl.UInt64(),
    "file_key": pl.UInt64(),
    "ttid": pl.Int64(),  # issuing thread (TTID / IssuingThreadId)
    "create_options": pl.UInt32(),
    "attributes": pl.UInt32(),
    "share": pl.UInt32(),
    "extra": pl.UInt64(),
    "info_class": pl.UInt32(),
    "status": pl.UInt32(),
    "offset": pl.UInt64(),
    "io_size": pl.UInt32(),
    "io_flags": pl.UInt32(),
    "name": pl.String(),
}
"""One row per FileIo / Kernel-File record: its header and payload fields (null when the
kind has no such field). ``pid``/``tid`` are the header's (null when it has none or says
-1)."""

PROCESS_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "raw_time": pl.Int64(),
    "pid": pl.Int64(),
    "parent_pid": pl.Int64(),
    "image": pl.String(),
    "kind": pl.String(),  # start, end, dcstart, dcend, defunct
}
THREAD_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "raw_time": pl.Int64(),
    "tid": pl.Int64(),
    "pid": pl.Int64(),
    "kind": pl.String(),
}
_PROCESS_KINDS = {1: "start", 2: "end", 3: "dcstart", 4: "dcend", 39: "defunct"}
_THREAD_KINDS = {1: "start", 2: "end", 3: "dcstart", 4: "dcend"}
_NO_ID = 0xFFFFFFFF
_POINTERS = np.array([POINTER_SIZE.get(t, 8) for t in range(256)], dtype=np.int64)


@dataclass
class Decoded:
    """What one chunk contributed: frames in the schemas above, plus counts."""

    files: list[pl.DataFrame] = field(default_factory=list)
    processes: list[pl.DataFrame] = field(default_factory=list)
    threads: list[pl.DataFrame] = field(default_factory=list)
    volumes: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0
    too_short: int = 0
    too_short_rows: list[int] = field(default_factory=list)


def _u8(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.asarray(data[pos])


def _u16(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.asarray(data[pos].astype(np.uint16) | (data[pos + 1].astype(np.uint16) << 8))


def _guids(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 16 bytes at each position, as ``V16`` values (comparable with ``==``)."""
    return gather_records(data, pos, np.dtype("V16"))


def _system_payload_start(version: np.ndarray, header_types: np.ndarray) -> np.ndarray:
    """Offset of the payload in system-family records: header size plus the PEBS index
    and PMC counter items its version word announces."""
    fixed = np.array([HEADER_SIZES.get(t, 0x20) for t in range(256)], dtype=np.int64)
    extra = np.where(version & 0x8000, 8, 0) + 8 * ((version.astype(np.int64) >> 8) & 7)
    return np.asarray(fixed[header_types] + extra)


def _event_payload_start(
    data: np.ndarray, pos: np.ndarray, end: np.ndarray, flags: np.ndarray
) -> np.ndarray:
    """Offset of the payload in EVENT_HEADER records: after the extended data items."""
    at = pos + 0x50
    active = (flags & EVENT_HEADER_FLAG_EXTENDED_INFO) != 0
    for _ in range(64):  # item chains are short (stack, SID, session…)
        if not active.any():
            break
        where = np.flatnonzero(active)
        inside = at[where] + 8 <= end[where]
        active[where[~inside]] = False
        where = where[inside]
        size = _u16(data, at[where]).astype(np.int64)
        linkage = _u16(data, at[where] + 4) & 1
        size[size < 8] = 8
        at[where] += size
        active[where] = linkage == 1
    return np.asarray(np.minimum(at, end))


def _frame(
    columns: dict[str, np.ndarray | pl.Series], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """A frame with ``schema``'s columns (missing ones null), values cast to its types."""
    height = len(next(iter(columns.values())))
    series = []
    for name, dtype in schema.items():
        if name in columns:
            series.append(pl.Series(name, columns[name]).cast(dtype))
        else:
            series.append(pl.Series(name, [None] * height, dtype=dtype))
    return pl.DataFrame(series)


def _strings(
    buf: pa.Buffer, starts: np.ndarray, ends: np.ndarray, one_byte: bool = False
) -> pl.Series:
    """NUL-terminated strings from ``starts`` (the payload ends bound them)."""
    width = 1 if one_byte else 2
    chars = np.maximum(ends - starts, 0) // width
    marks = np.ones(len(starts), dtype=bool) if one_byte else None
    return decode_strings(buf, starts, chars, marks)


class _Decoder:
    """Decodes the selected records of one chunk (see :func:`decode_chunk`)."""

    def __init__(self, chunk: Chunk, decoded: Decoded) -> None:
        self.chunk = chunk
        self.data = np.frombuffer(chunk.data, dtype=np.uint8)
        self.buf = pa.py_buffer(chunk.data)
        self.out = decoded

    def fixed(
        self, idx: np.ndarray, start: np.ndarray, dtype: np.dtype, fixed_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which records ``idx`` hold the fixed fields after ``start`` (the others are
        counted as too short), and those fields for them as a structured array."""
        end = self.chunk.positions[idx] + self.chunk.sizes[idx]
        fits = start + fixed_size <= end
        if not fits.all():
            self.out.too_short += int((~fits).sum())
            room = max(0, 5 - len(self.out.too_short_rows))
            self.out.too_short_rows.extend(self.chunk.rows[idx[~fits]][:room].tolist())
        if not fits.any():
            return fits, np.zeros(0, dtype=dtype)
        return fits, gather_records(self.data, start[fits], dtype)

    def file_group(
        self,
        idx: np.ndarray,
        start: np.ndarray,
        header: dict[str, np.ndarray],
        source: str,
        code: int,
        version: int,
        kind: str,
        pointer: int,
    ) -> None:
        """Decode records ``idx`` of one file-event layout into a FILE_EVENT_SCHEMA frame."""
        provider = "fileio" if source == "FileIo" else "kernel-file"
        fields = PAYLOADS[(provider, layout_generation(provider, version))][kind]
        dtype, fixed_size = payload_dtype(fields, pointer)
        select, records = self.fixed(idx, start, dtype, fixed_size)
        kept, start = idx[select], start[select]
        if len(kept) == 0:
            return
        columns: dict[str, np.ndarray | pl.Series] = {
            "row": self.chunk.rows[kept],
            "raw_time": header["time"][select].astype(np.int64),
            "source": np.full(len(kept), source, dtype=object),
            "code": np.full(len(kept), code, dtype=np.int64),
            "version": np.full(len(kept), version, dtype=np.int64),
            "kind": np.full(len(kept), kind, dtype=object),
        }
        for key in ("pid", "tid"):
            if key in header:
                ids = header[key][select]
                columns[key] = pl.Series(key, ids).cast(pl.Int64).replace(_NO_ID, None)
        for name in dtype.names or ():
            columns[name] = records[name]
        if any(kind_ == "wstr" for _, kind_ in fields):
            ends = self.chunk.positions[kept] + self.chunk.sizes[kept]
            columns["name"] = _strings(self.buf, start + fixed_size, ends)
        self.out.files.append(_frame(columns, FILE_EVENT_SCHEMA))


def _split_groups(keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The indices of each distinct key, in first-seen order within a key."""
    if len(keys) == 0:
        return []
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return [(int(keys[part[0]]), part) for part in np.split(order, bounds)]


def _system_records(dec: _Decoder, sys_idx: np.ndarray) -> None:
    """Kernel MOF records (system/compact/perfinfo headers) of groups 3, 4 and 5."""
    chunk, data = dec.chunk, dec.data
    pos = chunk.positions[sys_idx]
    group = _u8(data, pos + 7)
    keep = np.isin(group, (GROUP_FILE, GROUP_PROCESS, GROUP_THREAD))
    sys_idx, pos, group = sys_idx[keep], pos[keep], group[keep]
    if len(sys_idx) == 0:
        return
    types = chunk.header_types[sys_idx]
    perf = (types == 0x10) | (types == 0x11)
    header = {
        "version": _u16(data, pos).astype(np.int64),
        "opcode": _u8(data, pos + 6).astype(np.int64),
        "time": np.zeros(len(pos), dtype=np.int64),
        "pid": np.full(len(pos), _NO_ID, dtype=np.int64),
        "tid": np.full(len(pos), _NO_ID, dtype=np.int64),
    }
    full = np.flatnonzero(~perf)
    if len(full):
        fields = gather_records(data, pos[full], SYSTEM_HEADER_DTYPE)
        header["time"][full] = fields["time"].astype(np.int64)
        header["pid"][full] = fields["pid"]
        header["tid"][full] = fields["tid"]
    short = np.flatnonzero(perf)
    if len(short):
        header["time"][short] = gather_records(data, pos[short], PERFINFO_HEADER_DTYPE)[
            "time"
        ].astype(np.int64)
    start = pos + _system_payload_start(header["version"], types)
    version = header["version"] & 0xFF
    pointer = _POINTERS[types]
    keys = (group.astype(np.int64) << 24) | (header["opcode"] << 16) | (version << 8) | pointer
    for key, part in _split_groups(keys):
        grp, opcode, ver, ptr = key >> 24, (key >> 16) & 0xFF, (key >> 8) & 0xFF, key & 0xFF
        sub = {k: v[part] for k, v in header.items()}
        if grp == GROUP_FILE and opcode in FILEIO_KINDS:
            dec.file_group(
                sys_idx[part], start[part], sub, "FileIo", opcode, ver, FILEIO_KINDS[opcode], ptr
            )
        elif grp == GROUP_PROCESS and opcode in _PROCESS_KINDS:
            _process_mof(dec, sys_idx[part], start[part], sub, _PROCESS_KINDS[opcode], ver, ptr)
        elif grp == GROUP_THREAD and opcode in _THREAD_KINDS and ver >= 2:
            _thread_ids(dec, sys_idx[part], start[part], sub, _THREAD_KINDS[opcode])


def _process_mof(
    dec: _Decoder,
    idx: np.ndarray,
    start: np.ndarray,
    header: dict[str, np.ndarray],
    kind: str,
    version: int,
    pointer: int,
) -> None:
    """Process_TypeGroup1: UniqueProcessKey, ProcessId, ParentId, SessionId, ExitStatus,
    [v3+ DirectoryTableBase], [v4+ Flags], UserSID, ImageFileName (ANSI), CommandLine…"""
    chunk, data = dec.chunk, dec.data
    fixed = pointer + 16 + (pointer if version >= 3 else 0) + (4 if version >= 4 else 0)
    end = chunk.positions[idx] + chunk.sizes[idx]
    fits = start + fixed + 4 <= end
    idx, start, end = idx[fits], start[fits], end[fits]
    header = {k: v[fits] for k, v in header.items()}
    if len(idx) == 0:
        return
    pid = gather_records(data, start + pointer, np.dtype("<u4")).astype(np.int64)
    parent = gather_records(data, start + pointer + 4, np.dtype("<u4")).astype(np.int64)
    sid = start + fixed
    # A SID is either a 4-byte 0, or TOKEN_USER (two pointers) followed by the SID itself
    # (8 bytes + 4 per sub-authority).
    first = gather_records(data, sid, np.dtype("<u4"))
    count_at = np.minimum(sid + 2 * pointer + 1, len(data) - 1)
    authorities = data[count_at].astype(np.int64)
    image_at = np.where(first == 0, sid + 4, sid + 2 * pointer + 8 + 4 * authorities)
    good = image_at < end
    dec.out.processes.append(
        _frame(
            {
                "row": chunk.rows[idx][good],
                "raw_time": header["time"][good],
                "pid": pid[good],
                "parent_pid": parent[good],
                "image": _strings(dec.buf, image_at[good], end[good], one_byte=True),
                "kind": np.full(int(good.sum()), kind, dtype=object),
            },
            PROCESS_SCHEMA,
        )
    )


def _thread_ids(
    dec: _Decoder, idx: np.ndarray, start: np.ndarray, header: dict[str, np.ndarray], kind: str
) -> None:
    """Thread_TypeGroup1 (v2+) and Kernel-Process ThreadStart: ProcessId, ThreadId first."""
    chunk, data = dec.chunk, dec.data
    end = chunk.positions[idx] + chunk.sizes[idx]
    fits = start + 8 <= end
    idx, start = idx[fits], start[fits]
    if len(idx) == 0:
        return
    ids = gather_records(data, start, np.dtype([("pid", "<u4"), ("tid", "<u4")]))
    dec.out.threads.append(
        _frame(
            {
                "row": chunk.rows[idx],
                "raw_time": header["time"][fits],
                "tid": ids["tid"].astype(np.int64),
                "pid": ids["pid"].astype(np.int64),
                "kind": np.full(len(idx), kind, dtype=object),
            },
            THREAD_SCHEMA,
        )
    )


def _event_records(dec: _Decoder, ev_idx: np.ndarray) -> None:
    """Manifest-provider records: Kernel-File and Kernel-Process."""
    chunk, data = dec.chunk, dec.data
    pos = chunk.positions[ev_idx]
    guid = _guids(data, pos + 0x18)
    is_file = guid == np.void(KERNEL_FILE_GUID)
    is_process = guid == np.void(KERNEL_PROCESS_GUID)
    keep = is_file | is_process
    ev_idx, pos, is_file = ev_idx[keep], pos[keep], is_file[keep]
    if len(ev_idx) == 0:
        return
    fields = gather_records(data, pos, EVENT_HEADER_DTYPE)
    end = pos + chunk.sizes[ev_idx]
    start = _event_payload_start(data, pos, end, fields["flags"])
    header = {
        "time": fields["time"].astype(np.int64),
        "pid": fields["pid"].astype(np.int64),
        "tid": fields["tid"].astype(np.int64),
    }
    ids = fields["id"].astype(np.int64)
    versions = fields["version"].astype(np.int64)
    pointer = np.where(chunk.header_types[ev_idx] == 0x12, 4, 8)
    keys = (is_file.astype(np.int64) << 40) | (ids << 16) | (versions << 8) | pointer
    for key, part in _split_groups(keys):
        file_provider, event_id, ver, ptr = (
            key >> 40,
            (key >> 16) & 0xFFFF,
            (key >> 8) & 0xFF,
            key & 0xFF,
        )
        sub = {k: v[part] for k, v in header.items()}
        if file_provider and event_id in KERNEL_FILE_KINDS:
            dec.file_group(
                ev_idx[part],
                start[part],
                sub,
                "Kernel-File",
                event_id,
                ver,
                KERNEL_FILE_KINDS[event_id],
                ptr,
            )
        elif not file_provider and event_id == 1:
            _kernel_process_start(dec, ev_idx[part], start[part], sub, ver)
        elif not file_provider and event_id == 3:
            _thread_ids(dec, ev_idx[part], start[part], sub, "start")


def _kernel_process_start(
    dec: _Decoder, idx: np.ndarray, start: np.ndarray, header: dict[str, np.ndarray], version: int
) -> None:
    """Kernel-Process ProcessStart: ProcessID, CreateTime, ParentProcessID, SessionID,
    [v1+ Flags], ImageName (a full device path; the file name names the process)."""
    chunk, data = dec.chunk, dec.data
    image_offset = 24 if version >= 1 else 20
    end = chunk.positions[idx] + chunk.sizes[idx]
    fits = start + image_offset <= end
    idx, start, end = idx[fits], start[fits], end[fits]
    if len(idx) == 0:
        return
    pid = gather_records(data, start, np.dtype("<u4")).astype(np.int64)
    parent = gather_records(data, start + 12, np.dtype("<u4")).astype(np.int64)
    image = _strings(dec.buf, start + image_offset, end).str.replace(r"^.*\\", "")
    dec.out.processes.append(
        _frame(
            {
                "row": chunk.rows[idx],
                "raw_time": header["time"][fits],
                "pid": pid,
                "parent_pid": parent,
                "image": image,
                "kind": np.full(len(idx), "start", dtype=object),
            },
            PROCESS_SCHEMA,
        )
    )


def _trace_records(dec: _Decoder, tr_idx: np.ndarray) -> None:
    """Classic GUID records: only KernelTraceControl's VolumeMapping is read."""
    chunk, data = dec.chunk, dec.data
    pos = chunk.positions[tr_idx]
    guid = _guids(data, pos + 0x18)
    keep = (guid == np.void(SYSCONFIG_EX_GUID)) & (data[pos + 4] == VOLUME_MAPPING_TYPE)
    for at, size in zip(pos[keep].tolist(), chunk.sizes[tr_idx][keep].tolist(), strict=True):
        payload = chunk.data[at + TRACE_HEADER_DTYPE.itemsize : at + size].tobytes()
        texts = payload.decode("utf-16-le", "replace").split("\0")
        if len(texts) >= 2 and texts[0]:
            dec.out.volumes.append((texts[0], texts[1]))


def decode_chunk(chunk: Chunk, decoded: Decoded) -> None:
    """Decode the file, process, thread and volume records of ``chunk`` into ``decoded``."""
    decoded.records += chunk.count
    if chunk.count == 0:
        return
    dec = _Decoder(chunk, decoded)
    types = chunk.header_types
    _system_records(dec, np.flatnonzero(np.isin(types, list(SYSTEM_FAMILY))))
    _event_records(dec, np.flatnonzero(np.isin(types, list(EVENT_HEADERS)) & (chunk.sizes >= 0x50)))
    _trace_records(dec, np.flatnonzero(np.isin(types, list(TRACE_HEADERS)) & (chunk.sizes >= 0x30)))
