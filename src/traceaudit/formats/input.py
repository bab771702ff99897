"""Open a trace file: undo gzip/zip wrapping and give readers its bytes.

Compression is recognised by content (magic bytes), never by extension, so a ``.csv``
that is really gzip still reads. A zip is opened at its single member, or at its single
member that looks like a trace (see :func:`open_input`). Plain files are not read into
memory here: readers that can hand a path to a fast native parser (polars) do so, and
only the first :data:`HEAD_SIZE` bytes are read for sniffing.

Standard input (``-``) and other streams that cannot seek (a pipe, ``/dev/stdin``, a
shell's ``<(…)``) are read whole into memory first, then treated like a file's content.

Decompression is bounded (see :func:`uncompressed_limit`): an archive that expands to more
than the limit is refused with a clear error before memory runs out, instead of a
``MemoryError`` after gigabytes. The limit is ``max(1 GiB, 100 × the compressed size)``;
the environment variable ``TRACEAUDIT_MAX_UNCOMPRESSED`` overrides it (a size such as
``8GB``, or ``0`` for no limit).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from traceaudit.errors import TraceFormatError, UnknownFormatError, UsageError


class NotThisFormat(UnknownFormatError):
    """A reader found the content is not its format after all (raised by readers; the loader
    replaces it with the full "not a trace traceaudit can read" message)."""


__all__ = [
    "NotThisFormat",
    "HEAD_SIZE",
    "LIMIT_VARIABLE",
    "TraceInput",
    "open_input",
    "input_from_bytes",
    "quote_name",
    "uncompressed_limit",
]

LIMIT_VARIABLE = "TRACEAUDIT_MAX_UNCOMPRESSED"
"""Environment variable overriding the decompression limit (``8GB``; ``0``: none)."""

MIN_LIMIT = 1 << 30
EXPANSION = 100
_CHUNK = 16 << 20
_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_MAX_NAME = 120

HEAD_SIZE = 64 * 1024
"""Bytes read from the start of the content to sniff its format."""

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass
class TraceInput:
    """The content of one trace, as readers see it.

    ``name`` is what messages start with (``trace.csv``, or ``logs.zip/Logfile.txt`` for
    a zip member). ``path`` is set only when the content is the plain, uncompressed file
    on disk, so a reader may pass it to a native parser instead of the bytes.
    """

    name: str
    source: Path | None
    head: bytes
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    _data: bytes | None = None
    _loader: Callable[[], bytes] | None = None

    def read_bytes(self) -> bytes:
        """The whole (decompressed) content; read once and kept."""
        if self._data is None:
            assert self._loader is not None
            self._data = self._loader()
        return self._data


def input_from_bytes(data: bytes, name: str, source: Path | None = None) -> TraceInput:
    """Wrap content already in memory (pasted text, a decompressed member)."""
    return TraceInput(name=name, source=source, head=data[:HEAD_SIZE], _data=data)


def quote_name(text: str, limit: int = _MAX_NAME) -> str:
    """A name from the input (a zip member, a file name) made safe to quote in a message:
    control characters escaped, and at most ``limit`` characters."""
    safe = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*", text.lower())
    if not match:
        raise UsageError(
            f"{LIMIT_VARIABLE}={quote_name(text, 40)!r}: expected a size such as 8GB or 500MB, "
            "or 0 for no limit."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def uncompressed_limit(compressed_size: int) -> int | None:
    """How many bytes a compressed input may expand to (None: no limit)."""
    override = os.environ.get(LIMIT_VARIABLE)
    if override is not None and override.strip():
        value = _parse_size(override)
        return value or None
    return max(MIN_LIMIT, EXPANSION * compressed_size)


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"  # pragma: no cover


def _read_capped(stream: IO[bytes] | gzip.GzipFile, name: str, compressed_size: int) -> bytes:
    """Read a decompressing stream to its end, refusing to go past the limit."""
    limit = uncompressed_limit(compressed_size)
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if limit is not None and total > limit:
            raise TraceFormatError(
                f"{name}: expands to more than {_human(limit)} (from {_human(compressed_size)} "
                "compressed), more than a trace of that size would: refused before memory runs "
                f"out. If it really is one trace, set {LIMIT_VARIABLE}=16GB (or 0 for no "
                "limit) and run again, or decompress it yourself and give the file."
            )
        parts.append(chunk)
    return b"".join(parts)


def _is_stream(source: Path) -> bool:
    """Standard input (``-``) or something that is neither a regular file nor a folder."""
    if str(source) == "-":
        return True
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _read_stream(source: Path) -> bytes:
    if str(source) == "-":
        return sys.stdin.buffer.read()
    with source.open("rb") as handle:
        return handle.read()


def open_input(
    path: str | os.PathLike[str], sniff: Callable[[bytes], bool] | None = None
) -> TraceInput:
    """Open ``path`` and undo gzip or zip wrapping.

    ``sniff`` tells trace content from other content; it picks the member of a zip that
    holds several files. Raises :class:`UnknownFormatError` for an archive without a
    usable member and :class:`TraceFormatError` for a file that cannot be opened.
    """
    source = Path(path)
    name = quote_name(source.name or str(source))
    if _is_stream(source):
        return _open_stream(source, sniff)
    if source.is_dir():
        raise TraceFormatError(f"{name}: is a folder, not a trace file. Give a file.")
    try:
        with source.open("rb") as handle:
            head = handle.read(HEAD_SIZE)
    except FileNotFoundError:
        raise TraceFormatError(f"{name}: no such file ({source}). Check the path.") from None
    except OSError as exc:
        raise TraceFormatError(
            f"{name}: cannot open the file ({exc.strerror or exc}). Check the path and permissions."
        ) from None
    if head.startswith(_GZIP_MAGIC):
        return _open_gzip(source, name, source, source.stat().st_size)
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return _open_zip(source, name, source, sniff)
    return TraceInput(name=name, source=source, head=head, path=source, _loader=source.read_bytes)


def _open_stream(source: Path, sniff: Callable[[bytes], bool] | None) -> TraceInput:
    """A pipe or standard input: read it whole, then open its content like a file's."""
    name = "<stdin>" if str(source) == "-" else quote_name(source.name or str(source))
    try:
        data = _read_stream(source)
    except OSError as exc:
        raise TraceFormatError(
            f"{name}: cannot read the stream ({exc.strerror or exc}). Save the trace to a file "
            "and give that."
        ) from None
    # Standard input has no path; the name it goes by in reports is "<stdin>".
    origin = Path("<stdin>") if str(source) == "-" else source
    if data.startswith(_GZIP_MAGIC):
        return _open_gzip(io.BytesIO(data), name, origin, len(data))
    if data.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return _open_zip(io.BytesIO(data), name, origin, sniff)
    return input_from_bytes(data, name, origin)


def _open_gzip(content: Path | IO[bytes], name: str, source: Path | None, size: int) -> TraceInput:
    try:
        with gzip.open(content, "rb") as stream:
            data = _read_capped(stream, name, size)
    except (OSError, EOFError, zlib.error) as exc:
        raise TraceFormatError(
            f"{name}: damaged gzip file ({exc}). Compress the trace again or give "
            "the uncompressed file."
        ) from None
    return input_from_bytes(data, name, source)


def _open_zip(
    content: Path | IO[bytes],
    name: str,
    source: Path | None,
    sniff: Callable[[bytes], bool] | None,
) -> TraceInput:
    try:
        with zipfile.ZipFile(content) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir() and not info.filename.startswith("__MACOSX/")
            ]
            if not members:
                raise UnknownFormatError(
                    f"{name}: not a trace traceaudit can read (looks like an empty "
                    "zip archive). Put the exported trace in the archive, or give it "
                    "directly."
                )
            readable = [m for m in members if not m.flag_bits & _ENCRYPTED]
            if not readable:
                raise TraceFormatError(
                    f"{name}/{quote_name(members[0].filename)}: the zip member is encrypted "
                    "(password-protected). Extract it with its password and give the trace "
                    "file, or zip it again without a password."
                )
            chosen = readable[0]
            warnings: list[str] = []
            if len(readable) > 1 and sniff is not None:
                traces = [m for m in readable if sniff(_member_head(archive, m))]
                if traces:
                    chosen = traces[0]
                    if len(traces) > 1:
                        others = ", ".join(quote_name(m.filename, 60) for m in traces[1:4])
                        more = f" and {len(traces) - 4:,} more" if len(traces) > 4 else ""
                        warnings.append(
                            f"{name}: holds {len(traces):,} traces; read "
                            f"{quote_name(chosen.filename)} only (not {others}{more}). "
                            "Extract the others to read them."
                        )
            member_name = f"{name}/{quote_name(chosen.filename)}"
            with archive.open(chosen) as stream:
                data = _read_capped(stream, member_name, chosen.compress_size)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
    ) as exc:
        if isinstance(exc, TraceFormatError):
            raise
        raise TraceFormatError(
            f"{name}: damaged or unsupported zip archive ({quote_name(str(exc))}). Extract the "
            "trace and give it directly."
        ) from None
    trace_input = input_from_bytes(data, member_name, source)
    trace_input.warnings.extend(warnings)
    return trace_input


_ENCRYPTED = 0x1  # general purpose bit 0: the member is encrypted


def _member_head(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with archive.open(info) as member:
        return member.read(HEAD_SIZE)
