"""Keyed pseudonymisation of a trace, in its own format, so that it can be shared.

Why: the capture that decides a bug is often one its owner cannot post (uv#1491: "I
can't share it directly (because it came from a corporate environment)"). It names the
user, the machine, the domain, the projects. :func:`redact` rewrites those names and
keeps what the analysis needs: operations, results, times and durations, PIDs and TIDs,
well-known software and folders, extensions, path depth, the shape of generated names,
and which path is below which. ``traceaudit analyze`` finds the same conflicts, verdicts,
blockers, hold and blocked times in the output as in the input.

::

    >>> from traceaudit.redaction.redactor import redact
    >>> result = redact("Logfile.CSV", "Logfile.redacted.csv", key="redact.key")
    >>> result.counts                       # {'computer': 1, 'path': 412, 'user': 1, …}

Classes of secrets (:data:`CLASSES`, each kept with ``keep=("path",)`` / ``--keep path``):

``user``      names after ``C:\\Users\\``, in ``DOMAIN\\user``, ``USERNAME=``
``computer``  ``COMPUTERNAME=``, the machine half of ``DESKTOP-X\\user``, hosts in
              Network rows (``DESKTOP-FR51PUU:60791 -> …``), volume serial numbers
``domain``    ``USERDOMAIN=``, ``USERDNSDOMAIN=``, the domain half of ``CORP\\user``
``sid``       machine and domain SIDs (``S-1-5-21-…``; the RID is kept)
``email``     e-mail addresses
``ip``        IPv4 and IPv6 addresses, as an address of the same kind (private stays
              private, link-local link-local, public public; loopback, multicast and
              the like kept). What is an address and what a version number:
              :func:`._redact_shapes.find_addresses`
``unc``       UNC server names (``\\\\fileserver\\share``)
``cmdline``   command-line arguments (options, numbers, paths handled on their own)
``env``       values of environment variables that say something about the user
``path``      file and folder names that are not well-known (``notes``, ``myproject``)

Pseudonyms are HMAC-SHA256 under a key (``user_3f2a9c81``, ``host_…``, ``name_…``): the
same key gives the same pseudonym for the same secret in every file, so traces of
several machines line up; another key gives unlinkable output. After writing, the output
is read back and searched for every original replaced, of every class, and every
``secrets=`` word (:mod:`._redact_check`); if one is there, the output is removed and
:class:`RedactionLeakError` raised.

``secrets=`` words are replaced anywhere, even inside other words, so each must have at
least :data:`MIN_SECRET_WORD` characters and a letter or digit: ``--secret e`` would
replace every ``e`` and destroy the trace (:class:`UsageError` says which word and why).
The ``--map`` file is private: it is written atomically and readable by its owner only
(mode 0600 on POSIX; on Windows the file gets the folder's permissions, like the key
file).

Formats: Procmon CSV (any columns, dialect and encoding), rows pasted from Procmon's
clipboard, Procmon XML and Procmon PML, each written back in its own format;
``.gz``/``.zip`` stay compressed. A PML log is redacted in place with same-length
pseudonyms (``WChen`` → ``Qmxaz``, not ``user_3f2a9c81``: every string keeps its bytes,
so no offset in the file moves), and its leak check searches every byte as UTF-16 and
as ANSI text (:mod:`.pml`, :mod:`.pml_check`).

The files of a Process Monitor capture that rolled over (``Log.PML``, ``Log-1.PML``…) are
redacted together by :func:`redact_capture` into a folder, under their own names: one
discovery over every part and one set of pseudonyms, so the same name is the same
pseudonym in every part and ``analyze`` of the redacted parts together finds what it finds
in the originals together. Every part is leak-checked; a leak in any removes them all.

Limits: free text is searched for the secrets found in structured places, not for
arbitrary personal data (a full name in a registry value stays unless named with
``secrets=``); registry key names are kept (software chose them); the leak check does not
look for originals shorter than 3 characters, without a letter (IP addresses excepted),
that are well-known words, or that the trace itself keeps elsewhere (a folder named
``Path`` beside ``PATH NOT FOUND``): those are replaced where they stand as names only
(:meth:`._redact_context.Context.searchable`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import secrets as _secrets
import time
import unicodedata
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from traceaudit.errors import RedactionLeakError, UsageError
from traceaudit.formats.pml.rollover import one_capture, part_name
from traceaudit.redaction.check import find_leaks_in_file, leak_message
from traceaudit.redaction.context import CLASSES, Context
from traceaudit.redaction.handlers import (
    Handler,
    Source,
    handler_for,
    open_source,
    write_binary,
    write_output,
)
from traceaudit.redaction.keys import load_key, new_key
from traceaudit.redaction.pml import PmlHandler, render_together
from traceaudit.redaction.pml_check import find_pml_leaks, pml_leak_message

__all__ = [
    "CLASSES",
    "MIN_SECRET_WORD",
    "CaptureRedactionResult",
    "RedactionLeakError",
    "RedactionResult",
    "read_secret_file",
    "redact",
    "redact_capture",
]

PathLike = str | os.PathLike[str]

MIN_SECRET_WORD = 3
"""The fewest characters a ``secrets=`` word may have (it is replaced inside words)."""


@dataclass(frozen=True)
class RedactionResult:
    """What :func:`redact` did: where it wrote, in which format, and what it replaced.

    ``counts`` is the number of distinct originals replaced per class (``path`` counts
    file and folder names, ``secret`` the ``--secret`` words). ``key`` is ``"file"``,
    ``"given"`` (bytes passed in) or ``"one-off"`` (random, not saved: the output will not
    line up with other files).
    """

    input: Path
    output: Path
    format: str
    encoding: str
    compression: str | None
    rows: int
    counts: dict[str, int]
    kept: tuple[str, ...]
    key: str
    key_file: Path | None = None
    key_created: bool = False
    map_path: Path | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "input": str(self.input),
            "output": str(self.output),
            "format": self.format,
            "encoding": self.encoding,
            "compression": self.compression,
            "rows": self.rows,
            "counts": dict(self.counts),
            "kept": list(self.kept),
            "key": self.key,
            "key_file": None if self.key_file is None else str(self.key_file),
            "key_created": self.key_created,
            "map": None if self.map_path is None else str(self.map_path),
            "leak_check": "passed",
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CaptureRedactionResult(RedactionResult):
    """What :func:`redact_capture` did. ``output`` is the folder, ``outputs`` the files
    written in it (one per part, under the part's name), ``inputs`` the parts in part order
    (``input`` is the first); ``rows``, ``counts`` and the map are the whole capture's,
    ``part_rows`` the events of each part."""

    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()
    part_rows: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: :meth:`RedactionResult.to_dict` and the files."""
        document = super().to_dict()
        document["inputs"] = [str(p) for p in self.inputs]
        document["outputs"] = [str(p) for p in self.outputs]
        document["part_rows"] = list(self.part_rows)
        return document


def read_secret_file(path: PathLike) -> list[str]:
    """Words to redact, one per line (UTF-8; blank lines and ``#`` comments ignored)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{file}: no such secret file. Check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"{file}: cannot read the secret file ({reason}).") from None
    words = [line.strip() for line in text.splitlines()]
    return [w for w in words if w and not w.startswith("#")]


def redact(
    path: PathLike,
    out: PathLike,
    *,
    key: bytes | PathLike | None = None,
    secrets: Iterable[str] = (),
    keep: Iterable[str] = (),
    map_path: PathLike | None = None,
) -> RedactionResult:
    """Write a redacted copy of the trace at ``path`` to ``out``, in the same format.

    ``key`` is the key itself (bytes), or the path of a key file (created with a new
    random key when it does not exist), or None for a one-off random key. ``secrets`` are
    further words to replace anywhere (case-insensitive). ``keep`` names classes of
    :data:`CLASSES` to leave as they are. ``map_path`` receives the private
    pseudonym → original table as JSON.

    Raises :class:`UsageError` for bad options (unknown class, output = input, unreadable
    key file, a secret word too short or without a letter or digit),
    :class:`~traceaudit.errors.TraceFormatError` for input that cannot be redacted, and
    :class:`RedactionLeakError` when the leak check finds a secret in the output (which
    is then removed).
    """
    started = time.perf_counter()
    kept = _check_keep(keep)
    secrets = _check_secrets(secrets)
    source_path, out_path = Path(path), Path(out)
    _check_paths(source_path, out_path, map_path, key)
    key_bytes, key_kind, key_file, created = _key(key)
    source = open_source(source_path)
    ctx = Context(key_bytes, kept, secrets)
    handler = handler_for(source, ctx)
    handler.discover()
    ctx.freeze()
    handler.reset()
    member_name = _member_name(source, ctx)
    if isinstance(handler, PmlHandler):
        rows = _write_pml(source, handler, out_path, ctx, key_bytes, member_name)
    else:
        rows = _write(source, handler, out_path, ctx, key_bytes, member_name)
    if map_path is not None:
        _write_map(Path(map_path), ctx)
    return RedactionResult(
        input=source_path,
        output=out_path,
        format=source.format,
        encoding=source.label,
        compression=source.compression,
        rows=rows,
        counts=ctx.pseudo.counts(),
        kept=tuple(sorted(kept)),
        key=key_kind,
        key_file=key_file,
        key_created=created,
        map_path=None if map_path is None else Path(map_path),
        seconds=time.perf_counter() - started,
        notes=tuple(source.notes),
    )


def redact_capture(
    paths: Sequence[PathLike],
    out_dir: PathLike,
    *,
    key: bytes | PathLike | None = None,
    secrets: Iterable[str] = (),
    keep: Iterable[str] = (),
    map_path: PathLike | None = None,
) -> CaptureRedactionResult:
    """Redact the files of one rolled-over Process Monitor capture together into ``out_dir``.

    ``paths`` are ``Log.PML``, ``Log-1.PML``… in any order (one trace of any format is
    redacted as :func:`redact` does); each is written to ``out_dir`` under its own name
    (``out_dir`` is created when missing; an existing file of that name is replaced, as
    :func:`redact` replaces its output). The parts are pseudonymised as one trace: one
    discovery over every part, one set of same-length pseudonyms, so a name gets the same
    pseudonym in every part; ``map_path`` receives one table for them all. Every part is
    written to a temporary file and leak-checked before any is moved into place; a leak
    in any part removes them all (the moves themselves are one per file: a failure of the
    file system between two of them leaves the parts moved before it). Every part is held
    in memory until all are written. Options as for :func:`redact`.

    Raises :class:`UsageError` when the files are not one capture (the message of
    :func:`~traceaudit.formats.pml.rollover.one_capture`), when ``out_dir`` is a file or
    an output would be an input, and as :func:`redact` does.
    """
    started = time.perf_counter()
    kept = _check_keep(keep)
    secrets = _check_secrets(secrets)
    inputs = one_capture(paths)
    folder = Path(out_dir)
    outs = [folder / source.name for source in inputs]
    _check_capture_paths(inputs, folder, outs, map_path, key)
    made = _make_folder(folder)
    try:
        if len(inputs) == 1:
            single = redact(
                inputs[0], outs[0], key=key, secrets=secrets, keep=kept, map_path=map_path
            )
            values = {f.name: getattr(single, f.name) for f in fields(single)}
            values["output"] = folder
            return CaptureRedactionResult(
                **values, inputs=tuple(inputs), outputs=tuple(outs), part_rows=(single.rows,)
            )
        return _redact_parts(inputs, folder, outs, started, kept, secrets, key, map_path)
    except BaseException:
        if made:
            _remove_empty(folder)
        raise


def _redact_parts(
    inputs: list[Path],
    folder: Path,
    outs: list[Path],
    started: float,
    kept: frozenset[str],
    secrets: list[str],
    key: bytes | PathLike | None,
    map_path: PathLike | None,
) -> CaptureRedactionResult:
    """:func:`redact_capture` of two or more PML parts."""
    key_bytes, key_kind, key_file, created = _key(key)
    sources = [open_source(path) for path in inputs]
    ctx = Context(key_bytes, kept, secrets)
    handlers = [PmlHandler(source.data, source.name, ctx) for source in sources]
    for handler in handlers:
        handler.discover()
    ctx.freeze()
    rows: list[int] = []
    tmps: list[Path] = []
    try:
        rendered = render_together(handlers)
        for source, handler, out, (data, count) in zip(
            sources, handlers, outs, rendered, strict=True
        ):
            source.notes.extend(handler.notes)
            tmp = out.with_name(f".{out.name}.{_secrets.token_hex(4)}.tmp")
            tmps.append(tmp)
            _write_bytes(tmp, source, _member_name(source, ctx), data)
            rows.append(count)
            del data
        words = ctx.secrets()
        ctx.pseudo.table = handlers[0].table  # one same-length table for every part
        words += [s for s in ctx.secrets() if s not in words]
        for source, handler, out, tmp in zip(sources, handlers, outs, tmps, strict=True):
            leaks = find_pml_leaks(
                _read_back(tmp, source), words, key_bytes.hex(), handler.one_byte
            )
            if leaks:
                raise RedactionLeakError(
                    pml_leak_message(out.name, leaks)
                    + f" No part of the capture was written ({len(outs)} files)."
                )
        for tmp, out in zip(tmps, outs, strict=True):
            os.replace(tmp, out)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    if map_path is not None:
        _write_map(Path(map_path), ctx)
    notes = [note for source in sources for note in source.notes]
    numbers = [named[1] for named in map(part_name, inputs) if named is not None]
    gaps = [n for n in range(numbers[0], numbers[-1]) if n not in numbers] if numbers else []
    if gaps:
        notes.append(
            f"{inputs[0].name}: part{'s' if len(gaps) > 1 else ''} "
            f"{', '.join(str(n) for n in gaps)} of the capture "
            f"{'are' if len(gaps) > 1 else 'is'} not among the files: the redacted parts "
            "have the same gap."
        )
    return CaptureRedactionResult(
        input=inputs[0],
        output=folder,
        format=sources[0].format,
        encoding=sources[0].label,
        compression=sources[0].compression,
        rows=sum(rows),
        counts=ctx.pseudo.counts(),
        kept=tuple(sorted(kept)),
        key=key_kind,
        key_file=key_file,
        key_created=created,
        map_path=None if map_path is None else Path(map_path),
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
        inputs=tuple(inputs),
        outputs=tuple(outs),
        part_rows=tuple(rows),
    )


def _write_bytes(tmp: Path, source: Source, member_name: str, data: bytes) -> None:
    """``data`` to the new file ``tmp``, compressed as the source was, flushed to disk."""
    with tmp.open("xb") as raw:
        with write_binary(raw, source, member_name) as stream:
            stream.write(data)
        raw.flush()
        os.fsync(raw.fileno())


def _check_capture_paths(
    inputs: list[Path],
    folder: Path,
    outs: list[Path],
    map_path: PathLike | None,
    key: bytes | PathLike | None,
) -> None:
    """Refuse an output folder that is a file, an output that is an input, and a map or
    key file that is an input or an output."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"{folder}: exists and is not a folder; give a folder for the redacted parts "
            f"of the capture ({', '.join(p.name for p in inputs)})."
        )
    ancestor = next((p for p in Path(os.path.abspath(folder)).parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise UsageError(f"{ancestor}: is a file, so the folder {folder} cannot be created.")
    for out in outs:
        for source in inputs:
            if _same(source, out):
                raise UsageError(
                    f"{folder}: holds the input {source.name}, which the redacted part would "
                    "replace; give another folder with -o (redact never writes over its "
                    "input)."
                )
    if map_path is not None:
        map_file = Path(map_path)
        if not map_file.parent.is_dir():
            raise UsageError(
                f"{map_file.name}: cannot write the --map file: the folder {map_file.parent} "
                "does not exist."
            )
        for other in [*inputs, *outs]:
            if _same(map_file, other):
                raise UsageError(
                    f"{map_file.name}: the --map file would overwrite "
                    f"{'an input trace' if other in inputs else 'a redacted part'}; give "
                    "another path."
                )
    if key is not None and not isinstance(key, (bytes, bytearray)):
        others = [*inputs, *outs] + ([] if map_path is None else [Path(map_path)])
        if any(_same(Path(key), other) for other in others):
            raise UsageError(
                f"{Path(key).name}: the key file cannot also be an input, an output or "
                "the --map file; give another path."
            )


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (and its parents) when missing; whether it was created."""
    if folder.is_dir():
        return False
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        raise UsageError(
            f"{folder}: cannot create the folder for the redacted parts ({exc.strerror or exc})."
        ) from None
    return True


def _remove_empty(folder: Path) -> None:
    """Remove the folder this run created, when nothing is in it."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _read_back(path: Path, source: Source) -> bytes:
    """The written output, decompressed as it was compressed."""
    if source.compression == "gzip":
        with gzip.open(path, "rb") as packed:
            return packed.read()
    if source.compression == "zip":
        with zipfile.ZipFile(path) as archive:
            return archive.read(archive.namelist()[0])
    return path.read_bytes()


def _write_pml(
    source: Source,
    handler: PmlHandler,
    out: Path,
    ctx: Context,
    key: bytes,
    member_name: str,
) -> int:
    """:func:`_write` for a PML log: bytes, and the leak check over every byte."""
    data, rows = handler.render()
    source.notes.extend(handler.notes)
    tmp = out.with_name(f".{out.name}.{_secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as raw:
            with write_binary(raw, source, member_name) as stream:
                stream.write(data)
            raw.flush()
            os.fsync(raw.fileno())
        secrets = ctx.secrets()
        ctx.pseudo.table = handler.table  # the map lists the same-length pseudonyms
        secrets += [s for s in ctx.secrets() if s not in secrets]
        leaks = find_pml_leaks(_read_back(tmp, source), secrets, key.hex(), handler.one_byte)
        if leaks:
            raise RedactionLeakError(pml_leak_message(out.name, leaks))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _check_keep(keep: Iterable[str]) -> frozenset[str]:
    classes = set()
    for name in keep:
        cls = name.strip().lower()
        if cls not in CLASSES:
            raise UsageError(
                f"--keep {name!r}: unknown class. Choose from: {', '.join(sorted(CLASSES))}."
            )
        classes.add(cls)
    return frozenset(classes)


def _check_secrets(words: Iterable[str]) -> list[str]:
    """The ``secrets=`` words, stripped; refuse those that would destroy the trace."""
    checked = []
    for word in words:
        text = word.strip()
        if not any(unicodedata.category(c)[0] in "LN" for c in text):
            raise UsageError(
                f"secret {word!r}: has no letter or digit. Secret words are replaced "
                "everywhere, even inside other words, and spaces and punctuation are in "
                "every line of a trace: replacing them would destroy the trace. Give a word."
            )
        if len(text) < MIN_SECRET_WORD:
            raise UsageError(
                f"secret {text!r}: too short ({len(text)} character"
                f"{'' if len(text) == 1 else 's'}; at least {MIN_SECRET_WORD}). Secret words "
                "are replaced everywhere, even inside other words: replacing so short a "
                "word would destroy the trace. Give the whole word (a name is replaced "
                "where it stands as a user, computer or file name anyway)."
            )
        checked.append(text)
    return checked


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(a.resolve()) == os.path.normcase(b.resolve())


def _check_paths(
    source: Path, out: Path, map_path: PathLike | None, key: bytes | PathLike | None
) -> None:
    if _same(source, out):
        raise UsageError(
            f"{out.name}: is the input trace itself; give another output path with -o "
            "(redact never writes over its input)."
        )
    if not out.parent.is_dir():
        raise UsageError(
            f"{out.name}: cannot write the output: the folder {out.parent} does not exist."
        )
    if map_path is not None:
        folder = Path(map_path).parent
        if not folder.is_dir():
            raise UsageError(
                f"{Path(map_path).name}: cannot write the --map file: the folder {folder} "
                "does not exist."
            )
        for other in (source, out):
            if _same(Path(map_path), other):
                raise UsageError(
                    f"{Path(map_path).name}: the --map file would overwrite "
                    f"{'the input trace' if other is source else 'the output'}; give "
                    "another path."
                )
    if key is not None and not isinstance(key, (bytes, bytearray)):
        others = [source, out] + ([] if map_path is None else [Path(map_path)])
        if any(_same(Path(key), other) for other in others):
            raise UsageError(
                f"{Path(key).name}: the key file cannot also be the input, the output or "
                "the --map file; give another path."
            )


def _key(key: bytes | PathLike | None) -> tuple[bytes, str, Path | None, bool]:
    if key is None:
        return new_key(), "one-off", None, False
    if isinstance(key, (bytes, bytearray)):
        return bytes(key), "given", None, False
    file = Path(key)
    loaded, created = load_key(file)
    return loaded, "file", file, created


def _member_name(source: Source, ctx: Context) -> str:
    """A zip member's name, with any secret in it replaced."""
    if source.member is None:
        return ""
    return ctx.substitute(source.member.filename)


def _write(
    source: Source,
    handler: Handler,
    out: Path,
    ctx: Context,
    key: bytes,
    member_name: str,
) -> int:
    """Write to a temporary file beside ``out``, check it, then move it into place."""
    tmp = out.with_name(f".{out.name}.{_secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as raw:
            with write_output(raw, source, member_name) as stream:
                rows = handler.write(stream)
            raw.flush()
            os.fsync(raw.fileno())
        leaks = find_leaks_in_file(tmp, source, ctx.secrets(), key.hex())
        if leaks:
            raise RedactionLeakError(leak_message(out.name, leaks))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _write_map(path: Path, ctx: Context) -> None:
    """The private table pseudonym → original, per class (JSON, UTF-8)."""
    document = {
        "about": "traceaudit redact: pseudonym -> original. Private: keep it with the key, "
        "never share it with the redacted trace.",
        "classes": {
            cls: dict(sorted(entries.items())) for cls, entries in sorted(ctx.pseudo.table.items())
        },
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    _write_private(path, text.encode("utf-8"))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable and writable by the owner only.

    The bytes go to a new temporary file beside ``path``, created with mode 0600 (as the
    key file is: on Windows the mode only sets the read-only flag and the file takes the
    folder's permissions), then it replaces ``path``. An existing file of wider mode is
    replaced, not rewritten, so the map never is readable by others, not even for a
    moment; on any error the temporary file is removed and ``path`` left as it was.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise UsageError(
            f"{path.name}: cannot write the --map file ({exc.strerror or exc})."
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
