"""Decoded ETW file events → the event schema, linked the way Windows links them.

Inputs are the frames of :mod:`._etl_events` (one row per FileIo / Kernel-File record,
plus process, thread and volume-mapping records). Linking rules (docs/formats.md §3):

* **Result.** An operation's status is in the OperationEnd (FileIo 76, Kernel-File 24)
  that carries the same IRP pointer: the first one after it. IRPs are reused, so each
  IRP's events are numbered by how many OperationEnds came before them, and an operation
  takes the OperationEnd of its own number. The status is shown as Procmon shows it
  (``SUCCESS``, ``SHARING VIOLATION``, ``0xC000046F``…), the duration is the time between
  the two, and a create's OperationEnd ExtraInfo (IoStatus.Information) is its
  ``open_result``. Without an OperationEnd (keyword off, or still pending at the end) a
  create that is followed by I/O on its file object was evidently opened: ``SUCCESS``;
  CloseFile/IRP_MJ_CLOSE cannot fail: ``SUCCESS``; anything else: empty (pending).
* **Handle identity.** ``file_object`` is the FILE_OBJECT pointer, so the analysis pairs
  each CreateFile with its CloseFile (IRP_MJ_CLEANUP: the last handle closed, which is
  when share-mode locks are released) exactly.
* **Paths.** A create names its file object; later operations on that file object take
  that name (the latest create before them: file objects are reused). Operations whose
  file object was opened before the trace take the name of their FileKey from the name
  events (FileIo Name/FileCreate/FileDelete/FileRundown, Kernel-File NameCreate/
  NameDelete): the latest before, else the first after (rundown happens at the end).
  ``\\Device\\HarddiskVolumeN\\`` prefixes become drive letters with the trace's
  VolumeMapping events, when it has them.
* **Rename and delete targets.** RenamePath/SetLinkPath (FileIo 80/81, Kernel-File 27/28)
  carry the path renamed or linked *to* and DeletePath (79/26) the path deleted; they
  share the IRP of the Rename/SetDelete/SetInformation event of the same operation and are
  folded into it (kept as rows of their own when that event was not recorded).
* **Process.** The header's process id (when it says -1, as MOF FileIo headers may, the
  issuing thread's process from the Thread events); the thread is the issuing thread
  (TTID / IssuingThreadId). Names come from Process and Kernel-Process events (the image
  name of the process with that id at that time).

ETW records no desired access for a create, so ``access_mask`` stays null: the analysis
treats an unknown access as a possible blocker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from traceaudit.formats.etl.buffers import LogHeader
from traceaudit.formats.etl.layout import FILETIME_UNIX_EPOCH
from traceaudit.formats.pml.names import (
    DISPOSITION_NAMES,
    OPEN_RESULT_NAMES,
    SUB_OPERATION_NAMES,
    result_name,
)
from traceaudit.formats.pml.render import (
    ATTRIBUTE_LETTERS,
    CREATE_OPTION_NAMES,
    IO_FLAG_NAMES,
    SHARE_NAMES,
    bit_names,
)
from traceaudit.schema import conform_events

__all__ = ["OPERATION_KINDS", "NAME_KINDS", "DEFAULT_VOLUMES", "build_events", "map_device_paths"]

NAME_KINDS = ("name", "file_create", "file_delete", "rundown")
"""Kinds that name a FileKey and are not operations."""
PATH_KINDS = ("delete_path", "rename_path", "setlink_path")
OPERATION_KINDS = (
    "create",
    "cleanup",
    "close",
    "read",
    "write",
    "flush",
    "setinfo",
    "delete",
    "rename",
    "queryinfo",
    "fsctl",
    "direnum",
    "dirnotify",
    *PATH_KINDS,
)
"""Kinds that become rows of the event schema."""

DEFAULT_VOLUMES: tuple[tuple[str, str], ...] = (
    ("\\Device\\Mup\\", "\\\\"),
    ("\\Device\\LanmanRedirector\\", "\\\\"),
)
"""UNC prefixes that are the same on every Windows machine."""

_FIXED_NAMES = {
    "create": "CreateFile",
    "cleanup": "CloseFile",
    "close": "IRP_MJ_CLOSE",
    "read": "ReadFile",
    "write": "WriteFile",
    "flush": "FlushBuffersFile",
    "fsctl": "FileSystemControl",
    "direnum": "QueryDirectory",
    "dirnotify": "NotifyChangeDirectory",
    "delete_path": "SetDispositionInformationFile",
    "rename_path": "SetRenameInformationFile",
    "setlink_path": "SetLinkInformationFile",
}
_SET_NAMES = SUB_OPERATION_NAMES[26]
_QUERY_NAMES = SUB_OPERATION_NAMES[25]
_RENAME_CLASSES = {
    10: "SetRenameInformationFile",
    65: "SetRenameInformationEx",
    66: "SetRenameInformationExBypassAccessCheck",
}
_LINK_CLASSES = {
    11: "SetLinkInformationFile",
    71: "SetLinkInformationFile",
    72: "SetLinkInformationEx",
}
_DISPOSITION_CLASSES = {13: "SetDispositionInformationFile", 64: "SetDispositionInformationEx"}
_CLASS_DISPOSITION_EX = 64
_FILE_DIRECTORY_FILE = 0x1
_FILE_NON_DIRECTORY_FILE = 0x40
_FILE_DELETE_ON_CLOSE = 0x1000


def _operation_name(kind: str, info_class: int | None) -> str:
    """Procmon's operation name for one (kind, information class)."""
    if kind in _FIXED_NAMES:
        return _FIXED_NAMES[kind]
    cls = -1 if info_class is None else info_class
    if kind == "rename" or cls in _RENAME_CLASSES:
        return _RENAME_CLASSES.get(cls, "SetRenameInformationFile")
    if kind == "delete" or (kind == "setinfo" and cls in _DISPOSITION_CLASSES):
        return _DISPOSITION_CLASSES.get(cls, "SetDispositionInformationFile")
    if kind == "setinfo":
        return _LINK_CLASSES.get(cls) or _SET_NAMES.get(cls, "SetInformationFile")
    if kind == "queryinfo":
        return _QUERY_NAMES.get(cls, "QueryInformationFile")
    return kind


def map_device_paths(column: pl.Expr, volumes: list[tuple[str, str]]) -> pl.Expr:
    """Replace NT device prefixes (``\\Device\\HarddiskVolume2\\``) by their DOS form
    (``C:\\``), longest prefix first, case-insensitively; other paths are kept."""
    mappings = {}
    for nt, dos in [*DEFAULT_VOLUMES, *volumes]:
        if nt and nt.lower() != dos.lower():
            mappings[nt.lower()] = (nt, dos)
    expr = column
    lowered = column.str.to_lowercase()
    chain: Any = None  # a polars when/then chain, grown one mapping at a time
    for key in sorted(mappings, key=len, reverse=True):
        nt, dos = mappings[key]
        condition = lowered.str.starts_with(key)
        value = pl.lit(dos) + column.str.slice(len(nt))
        chain = (
            pl.when(condition).then(value) if chain is None else chain.when(condition).then(value)
        )
        if key.endswith("\\") and dos.endswith("\\") and len(dos) > 1:  # the volume itself
            chain = chain.when(lowered == key[:-1]).then(pl.lit(dos[:-1]))
    return expr if chain is None else chain.otherwise(column)


def _times(raw: pl.Series, header: LogHeader) -> pl.Series:
    """Raw record timestamps → naive UTC datetimes (100 ns kept)."""
    filetimes = header.filetimes(raw.to_numpy())
    times: pl.Series = pl.Series("time", (filetimes - FILETIME_UNIX_EPOCH) * 100).cast(
        pl.Datetime("ns")
    )
    return times


def _asof(
    left: pl.DataFrame,
    right: pl.DataFrame,
    key: str,
    value: str,
    out: str,
    on: str = "order",
    ahead: bool = True,
) -> pl.DataFrame:
    """Add ``out``: ``right[value]`` of the same ``key`` at the latest ``on`` at or
    before each left row, else (``ahead``) at the first after it."""
    if right.is_empty():
        return left.with_columns(pl.lit(None, dtype=right.schema[value]).alias(out))
    right = right.select(key, pl.col(on).alias("_on"), pl.col(value).alias(out))
    right = right.drop_nulls(key).sort("_on")
    left = left.with_columns(_on=pl.col(on)).sort("_on")
    back = left.join_asof(right, on="_on", by=key, strategy="backward", check_sortedness=False)
    if not ahead:
        return back.drop("_on")
    after = left.join_asof(right, on="_on", by=key, strategy="forward", check_sortedness=False)
    return back.with_columns(pl.col(out).fill_null(after[out])).drop("_on")


def _link_results(ops: pl.DataFrame, ends: pl.DataFrame) -> pl.DataFrame:
    """Attach each operation's OperationEnd (status, extra, order) by IRP and sequence."""
    if ends.is_empty():
        return ops.with_columns(
            end_status=pl.lit(None, dtype=pl.UInt32),
            end_extra=pl.lit(None, dtype=pl.UInt64),
            end_order=pl.lit(None, dtype=pl.Int64),
            end_time=pl.lit(None, dtype=pl.Datetime("ns")),
        )
    both = pl.concat(
        [
            ops.select("uid", "irp", "order", is_end=pl.lit(False)),
            ends.select("uid", "irp", "order", is_end=pl.lit(True)),
        ]
    ).sort("irp", "order")
    both = both.with_columns(
        seq=(
            pl.col("is_end").cast(pl.Int64).cum_sum().over("irp") - pl.col("is_end").cast(pl.Int64)
        )
    )
    end_seq = both.filter(pl.col("is_end")).select("irp", "seq", end_uid="uid")
    op_seq = both.filter(~pl.col("is_end")).select("uid", "irp", "seq")
    linked = op_seq.join(end_seq, on=["irp", "seq"], how="left").join(
        ends.select(
            end_uid="uid",
            end_status="status",
            end_extra="extra",
            end_order="order",
            end_time="time",
        ),
        on="end_uid",
        how="left",
    )
    return ops.join(
        linked.select("uid", "end_status", "end_extra", "end_order", "end_time"),
        on="uid",
        how="left",
    )


def _fold_paths(ops: pl.DataFrame) -> pl.DataFrame:
    """Fold DeletePath/RenamePath/SetLinkPath into the operation of the same IRP and
    OperationEnd sequence; keep the unmatched ones as rows."""
    is_path = pl.col("kind").is_in(list(PATH_KINDS))
    paths = ops.filter(is_path & pl.col("irp").is_not_null())
    if paths.is_empty():
        return ops.with_columns(path_name=pl.lit(None, dtype=pl.String))
    target_kind = {"delete_path": "delete", "rename_path": "rename", "setlink_path": "setinfo"}
    paths = paths.with_columns(
        host_kind=pl.col("kind").replace_strict(target_kind, return_dtype=pl.String),
        link=pl.concat_str(
            pl.col("irp").cast(pl.String),
            pl.col("end_order").cast(pl.String).fill_null("-"),
            separator="|",
        ),
    )
    hosts = ops.filter(
        pl.col("kind").is_in(["delete", "rename", "setinfo"]) & pl.col("irp").is_not_null()
    ).with_columns(
        link=pl.concat_str(
            pl.col("irp").cast(pl.String),
            pl.col("end_order").cast(pl.String).fill_null("-"),
            separator="|",
        )
    )
    pairs = (
        hosts.select("uid", "kind", "link", "order")
        .join(
            paths.select("link", "host_kind", path_uid="uid", path_name="name", path_order="order"),
            left_on=["link", "kind"],
            right_on=["link", "host_kind"],
            how="inner",
        )
        .unique(subset=["uid"], keep="first")
        .unique(subset=["path_uid"], keep="first")
    )
    folded = set(pairs["path_uid"].to_list())
    out = ops.join(pairs.select("uid", "path_name"), on="uid", how="left")
    if folded:
        out = out.filter(~pl.col("uid").is_in(list(folded)))
    return out.with_columns(
        path_name=pl.when(is_path).then(pl.col("name")).otherwise(pl.col("path_name"))
    )


def _infer_opened(ops: pl.DataFrame) -> pl.Series:
    """For creates without an OperationEnd: whether I/O on the same file object followed
    before the next create of that file object (then the open evidently succeeded)."""
    marks = (
        ops.filter(pl.col("file_object").is_not_null())
        .select("uid", "file_object", "order", "kind")
        .sort("file_object", "order")
        .with_columns(
            opened=(
                (pl.col("kind").shift(-1).over("file_object") != "create")
                & pl.col("kind").shift(-1).over("file_object").is_not_null()
            )
        )
        .filter(pl.col("kind") == "create")
        .select("uid", "opened")
    )
    return ops.select("uid").join(marks, on="uid", how="left")["opened"].fill_null(False)


def _detail(frame: pl.DataFrame) -> pl.Series:
    """Procmon-style Detail text for the operations the analysis reads (others null)."""

    def named(column: str, text: Callable[[Any], str]) -> pl.Expr:
        values = frame[column].drop_nulls().unique().to_list()
        table = {v: text(v) for v in values}
        return pl.col(column).replace_strict(table, default=None, return_dtype=pl.String)

    create = (
        pl.lit("Disposition: ")
        + pl.col("disposition").fill_null("<unknown>")
        + pl.lit(", Options: ")
        + named("create_options", lambda v: bit_names(v, CREATE_OPTION_NAMES)).fill_null("")
        + pl.lit(", Attributes: ")
        + named(
            "attributes", lambda v: bit_names(v, ATTRIBUTE_LETTERS, "") if v else "n/a"
        ).fill_null("n/a")
        + pl.lit(", ShareMode: ")
        + named("share_mode", lambda v: bit_names(v, SHARE_NAMES) if v else "None").fill_null(
            "None"
        )
        + pl.when(pl.col("open_result").is_not_null())
        .then(pl.lit(", OpenResult: ") + pl.col("open_result"))
        .otherwise(pl.lit(""))
    )
    io_flags = named("io_flags", lambda v: bit_names(v, IO_FLAG_NAMES))
    read_write = (
        pl.lit("Offset: ")
        + named("offset", lambda v: f"{v:,}")
        + pl.lit(", Length: ")
        + named("length", lambda v: f"{v:,}")
        + pl.when(io_flags.is_not_null() & (io_flags != ""))
        .then(pl.lit(", I/O Flags: ") + io_flags)
        .otherwise(pl.lit(""))
    )
    namespace = pl.col("operation").str.starts_with("SetRename") | pl.col(
        "operation"
    ).str.starts_with("SetLink")
    expr = (
        pl.when(pl.col("operation") == "CreateFile")
        .then(create)
        .when(pl.col("operation").is_in(["ReadFile", "WriteFile"]) & pl.col("offset").is_not_null())
        .then(read_write)
        .when(namespace & pl.col("rename_target").is_not_null())
        .then(pl.lit("FileName: ") + pl.col("rename_target"))
        .when(pl.col("delete_flag").is_not_null())
        .then(
            pl.lit("Delete: ")
            + pl.when(pl.col("delete_flag")).then(pl.lit("True")).otherwise(pl.lit("False"))
        )
        .when(pl.col("operation").is_in(["CloseFile", "IRP_MJ_CLOSE", "FlushBuffersFile"]))
        .then(pl.lit(""))
    )
    return frame.select(expr.alias("detail"))["detail"]


def build_events(
    files: pl.DataFrame,
    processes: pl.DataFrame,
    threads: pl.DataFrame,
    volumes: list[tuple[str, str]],
    header: LogHeader,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The event-schema frame of a trace's file operations, and counts for warnings
    (``no_op_end``: operations without an OperationEnd; ``unnamed``: without a path;
    ``dropped``: operations of the second source when both FileIo and Kernel-File were
    recorded)."""
    files = _ordered(files, volumes, header)
    files, per_source, dropped = _one_source(files)
    ops = files.filter(pl.col("kind").is_in(list(OPERATION_KINDS)))
    ends = files.filter(pl.col("kind") == "opend")

    ops = _link_results(ops, ends)
    ops = _fold_paths(ops)
    ops = _paths(ops, files)
    ops = _processes(ops, processes, threads)
    ops = _operation_names(ops)
    ops = _results(ops)
    ops = _typed_columns(ops)
    ops = ops.with_columns(detail=_detail(ops))
    counts = _counts(ops, ends, per_source.get(dropped, 0))
    events = conform_events(ops.sort("order").with_columns(pl.col("path").fill_null("")))
    return events, counts


def _ordered(
    files: pl.DataFrame, volumes: list[tuple[str, str]], header: LogHeader
) -> pl.DataFrame:
    """The records sorted, with ``uid``, ``order``, ``time`` and drive-letter names.

    ``order`` ranks events by (time, row): the clock of the trace, ties in file order; the
    linking steps that follow all go by it.
    """
    files = files.sort("raw_time", "row")
    files = files.with_columns(
        uid=pl.int_range(pl.len(), dtype=pl.Int64),
        order=pl.int_range(pl.len(), dtype=pl.Int64),
        time=_times(files["raw_time"], header),
    )
    return files.with_columns(name=map_device_paths(pl.col("name"), volumes))


def _one_source(files: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int], str]:
    """Keep one source of file events: (records, operations per source, source dropped
    or "").

    A trace recording both the kernel FileIo events and Kernel-File holds every operation
    twice: keep the source with more operations.
    """
    is_op = pl.col("kind").is_in(list(OPERATION_KINDS))
    per_source = dict(files.filter(is_op).group_by("source").len().iter_rows())
    dropped = ""
    if len(per_source) > 1:
        keep = max(sorted(per_source), key=lambda source: per_source[source])
        dropped = next(source for source in per_source if source != keep)
        files = files.filter(pl.col("source") == keep)
    return files, per_source, dropped


def _paths(ops: pl.DataFrame, files: pl.DataFrame) -> pl.DataFrame:
    """Add ``path``: a create's own name; else its file object's latest create; else its
    FileKey's name (the latest before, else the first after); else a DeletePath's name."""
    names = files.filter(
        pl.col("kind").is_in(list(NAME_KINDS))
        & pl.col("name").is_not_null()
        & (pl.col("name") != "")
    )
    # A file object is named by its create until its Close frees it (the address is then
    # reused): creates mark at 2×order, closes just after theirs (2×order + 1, no name).
    object_names = files.filter(
        pl.col("kind").is_in(["create", "close"]) & pl.col("file_object").is_not_null()
    ).select(
        "file_object",
        slot=2 * pl.col("order") + (pl.col("kind") == "close").cast(pl.Int64),
        name=pl.when(pl.col("kind") == "create").then(pl.col("name")),
    )
    ops = _asof(
        ops.with_columns(slot=2 * pl.col("order")),
        object_names,
        "file_object",
        "name",
        "fo_name",
        on="slot",
        ahead=False,
    )
    ops = _asof(ops, names.select("file_key", "order", "name"), "file_key", "name", "key_name")
    delete_path = pl.when(pl.col("kind") == "delete_path").then(pl.col("path_name"))
    return ops.with_columns(
        path=pl.when(pl.col("kind") == "create")
        .then(pl.col("name"))
        .otherwise(pl.coalesce(pl.col("fo_name"), pl.col("key_name"), delete_path))
    )


def _processes(ops: pl.DataFrame, processes: pl.DataFrame, threads: pl.DataFrame) -> pl.DataFrame:
    """Add ``tid`` (the issuing thread), ``pid`` (the header's, else the thread's process)
    and ``process`` (the image of that pid at that time)."""
    ops = ops.with_columns(
        tid=pl.when(pl.col("ttid") > 0).then(pl.col("ttid")).otherwise(pl.col("tid"))
    )
    if not threads.is_empty():
        thread_map = threads.select("tid", "raw_time", "pid")
        ops = _asof(ops, thread_map, "tid", "pid", "thread_pid", on="raw_time")
        ops = ops.with_columns(pid=pl.coalesce(pl.col("pid"), pl.col("thread_pid")))
    process_map = processes.select("pid", "raw_time", "image")
    return _asof(ops, process_map, "pid", "image", "process", on="raw_time")


def _operation_names(ops: pl.DataFrame) -> pl.DataFrame:
    """Add ``operation``, Procmon's name, decided once per distinct (kind, class)."""
    pairs = ops.select("kind", "info_class").unique()
    name_table = {(k, c): _operation_name(k, c) for k, c in pairs.iter_rows()}
    keys = pl.concat_str(
        pl.col("kind"), pl.col("info_class").cast(pl.String).fill_null("-"), separator="|"
    )
    key_table = {f"{k}|{'-' if c is None else c}": v for (k, c), v in name_table.items()}
    return ops.with_columns(operation=keys.replace_strict(key_table, return_dtype=pl.String))


def _results(ops: pl.DataFrame) -> pl.DataFrame:
    """Add ``result`` (the OperationEnd's status as Procmon names it; without one, SUCCESS
    for closes and for creates evidently opened, else empty) and ``opened_inferred``."""
    opened = _infer_opened(ops)
    status = pl.col("end_status")
    is_create = pl.col("kind") == "create"
    closes = pl.col("kind").is_in(["cleanup", "close"])
    statuses = ops["end_status"].drop_nulls().unique().to_list()
    result_table = {s: result_name(int(s)) for s in statuses}
    return ops.with_columns(
        opened_inferred=opened,
        result=pl.when(status.is_not_null())
        .then(
            status.replace_strict(result_table, return_dtype=pl.String)
            if result_table
            else pl.lit(None, dtype=pl.String)
        )
        .when(closes | (is_create & opened))
        .then(pl.lit("SUCCESS"))
        .otherwise(pl.lit("")),
    )


def _typed_columns(ops: pl.DataFrame) -> pl.DataFrame:
    """Add the typed columns of the schema: duration, the create's share mode, options,
    disposition, open result and attributes, then what the Detail and the analysis read
    (directory, delete on close, rename target, delete flag, offset, length)."""
    status = pl.col("end_status")
    is_create = pl.col("kind") == "create"
    ops = ops.with_columns(
        duration=(pl.col("end_time") - pl.col("time")).cast(pl.Duration("ns")),
        share_mode=pl.when(is_create).then(pl.col("share") & 7),
        create_options=pl.when(is_create).then(pl.col("create_options") & 0xFFFFFF),
        disposition=pl.when(is_create).then(
            (pl.col("create_options") // 0x1000000).replace_strict(
                dict(enumerate(DISPOSITION_NAMES)), default=None, return_dtype=pl.String
            )
        ),
        open_result=pl.when(
            is_create & (status == 0) & (pl.col("end_extra") < len(OPEN_RESULT_NAMES))
        ).then(
            pl.col("end_extra").replace_strict(
                dict(enumerate(OPEN_RESULT_NAMES)), default=None, return_dtype=pl.String
            )
        ),
        attributes=pl.when(is_create).then(pl.col("attributes")),
    )
    options = pl.col("create_options")
    return ops.with_columns(
        is_directory=pl.when((options & _FILE_DIRECTORY_FILE) != 0)
        .then(True)
        .when((options & _FILE_NON_DIRECTORY_FILE) != 0)
        .then(False),
        delete_on_close=pl.when(is_create).then((options & _FILE_DELETE_ON_CLOSE) != 0),
        rename_target=pl.when(
            pl.col("operation").str.starts_with("SetRename")
            | pl.col("operation").str.starts_with("SetLink")
        ).then(pl.col("path_name")),
        delete_flag=pl.when(
            pl.col("operation").str.starts_with("SetDisposition") & pl.col("extra").is_not_null()
        ).then(
            pl.when(pl.col("info_class") == _CLASS_DISPOSITION_EX)
            .then((pl.col("extra") & 1) != 0)
            .otherwise(pl.col("extra") != 0)
        ),
        offset=pl.when(pl.col("kind").is_in(["read", "write"])).then(
            pl.col("offset").cast(pl.Int64)
        ),
        length=pl.when(pl.col("kind").is_in(["read", "write"])).then(
            pl.col("io_size").cast(pl.Int64)
        ),
        event_class=pl.lit("File System"),
    )


def _counts(ops: pl.DataFrame, ends: pl.DataFrame, dropped: int) -> dict[str, int]:
    """What the reader's warnings need: operations, those without an OperationEnd (closes
    aside), without a path, OperationEnds, creates inferred opened, operations dropped."""
    is_create = pl.col("kind") == "create"
    closes = pl.col("kind").is_in(["cleanup", "close"])
    return {
        "operations": ops.height,
        "no_op_end": int(ops.filter(pl.col("end_status").is_null() & ~closes).height),
        "unnamed": int(ops["path"].is_null().sum()),
        "op_ends": ends.height,
        "inferred": int(
            ops.filter(
                is_create & pl.col("end_status").is_null() & pl.col("opened_inferred")
            ).height
        ),
        "dropped": dropped,
    }
