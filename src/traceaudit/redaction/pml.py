"""Redacting a Process Monitor PML log in place: same file, other names.

Design: **same-length pseudonyms written in place.** Every string field keeps its byte
length and its encoding (UTF-16LE, or one byte per character where the size word's top
bit says so); only the bytes of names change. No offset, size, count or index in the file
moves, so the output has the input's structure by construction: the event index, the
process, strings, hosts and ports tables, every event's header, stack and details are
the input's bytes. Procmon, procmon-parser and our reader read it as they read the
input, and the analysis finds the same events, handles, conflicts and windows. The
alternative, re-encoding the file with pseudonyms of other lengths, means rewriting every
offset table (event index, process and strings tables, extra-detail offsets, rename
buffer lengths), including structures this project does not decode: one missed offset
breaks the file. In place, a structure we do not decode cannot break; at worst it keeps
a name, which the leak check then finds (below).

The pseudonyms (:mod:`.samelength`) keep length and character classes, are derived from
the lower-cased original (``WChen`` and ``wchen`` stay one file to Windows and to the
analysis), are injective and the same for every occurrence and every file redacted with
the same key. They look unlike the text formats' ``user_3f2a9c81``: they cannot grow.

**Where the strings are** (enumerated structurally, with the reader's layout):

* header: computer name (0x00C, 32 bytes) and system root (0x02C; ``C:\\Windows`` stays);
* strings table: every entry. Each is classed by what refers to it: process records
  (user, process name, image path, command line, company, version, description,
  integrity) and module records (path, version, company, description); entries nothing
  refers to count as paths when they hold a ``\\``, else as text;
* events: the path (file system, IPC, registry, Load Image, Process Create); Process
  Create's command line; Process Start's command line, current directory and
  environment block; rename and link records (the caller's FileName and Procmon's DOS
  target); QueryDirectory's filter; RegLoadKey's hive and RegRenameKey's new name;
  network events' ``key: value`` strings;
* hosts table names (ports table names are service names: kept);
* then, inside every event's details and extra details, UTF-16LE runs of Latin text
  (three characters or more) and one-byte runs (six or more) that none of the above
  covers (registry names and data, directory listings, query results): there, only the
  secrets found elsewhere are replaced, where they stand as a word, and user, computer,
  domain and other identity names of :data:`.pml_check.GLUED` characters or more also
  inside words (``USERDOMAINDESKTOP-6PCIALL``: a registry value's name and data stored
  end to end). A second tier for structures not decoded one by one.

**What each string becomes** is decided by the same rewriters as the CSV's (discovery
over the trace's text values, :meth:`Context.freeze`, then pseudonyms): a path is
rewritten by :func:`.paths.rewrite_location` and compared component by component with
the original: each component it changes gets a same-length pseudonym (the extension
kept), each it keeps is kept, so paths stay prefix- and case-consistent; the user field
likewise (``DOMAIN\\user``). Command lines, environment values, details and other text
get every searchable secret (:meth:`Context.searchable`) replaced where it stands as a
word, ``--secret`` words anywhere.

**Damaged logs.** A log whose event index or tables are missing or cut is read as the
reader reads it (events walked up to the last intact one); the bytes past what the reader
can interpret (a cut-off event, a partial table) are dropped from the output, which ends
where the interpreted data ends. Bytes between events that the walk steps over stay, and
the leak check covers them.

**Leak check** (:mod:`.pml_check`): every byte of the output, not only the fields above.

**Rolled-over captures** (``Log.PML``, ``Log-1.PML``…, :mod:`traceaudit.formats.pml.rollover`)
are redacted together (:func:`render_together`): one handler per part, one context
(discovery over every part, then one freeze), one set of same-length pseudonyms, so a name
is the same pseudonym in every part and the parts analyse together as the originals did.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from traceaudit.errors import TraceFormatError
from traceaudit.formats.input import input_from_bytes
from traceaudit.formats.pml import reader as pml_reader
from traceaudit.formats.pml.events import Damage, EventArrays, locate_events, walk_events
from traceaudit.formats.pml.layout import (
    FILE_SYSTEM,
    IPC,
    NETWORK,
    NETWORK_DTYPE,
    PROCESS,
    PROCESS_CREATE_PATH,
    REGISTRY,
    path_offsets,
)
from traceaudit.formats.pml.tables import PmlHeader
from traceaudit.redaction.context import IDENTITY_CLASSES, Context, word_pattern
from traceaudit.redaction.fields import (
    rewrite_account,
    rewrite_cmdline,
    rewrite_company,
    rewrite_detail,
    rewrite_env,
    rewrite_text,
)
from traceaudit.redaction.paths import (
    rewrite_component,
    rewrite_host,
    rewrite_location,
    rewrite_path,
    rewrite_process,
)
from traceaudit.redaction.pml_check import ANSI_EVERYWHERE, GLUED
from traceaudit.redaction.samelength import WORD, SameLength
from traceaudit.redaction.vocab import AUTHORITIES, split_ext

__all__ = ["FORMAT", "Field", "PmlHandler", "render_together"]

FORMAT = "procmon-pml"
_STRING_REFS = (  # process record: offset of the u32 string index -> kind
    (56, "keep"),  # integrity
    (60, "user"),
    (64, "process"),
    (68, "path"),  # image path
    (72, "cmdline"),
    (76, "company"),
    (80, "text"),  # version
    (84, "company"),  # description
)
_KIND_RANK = ("path", "user", "process", "cmdline", "company", "text", "keep")
_RUN = re.compile(rb"(?:[\x20-\x7e\xa0-\xff]\x00|[\x00-\xff][\x01-\x06]){3,}")
"""UTF-16LE text of Latin, Greek, Cyrillic, Armenian, Hebrew or Arabic letters."""
_ANSI_RUN = re.compile(rb"[\x20-\x7e\xa0-\xff]{%d,}" % ANSI_EVERYWHERE)
_RENAME_SUBS = (0x0A, 0x0B, 0x41, 0x42)
_SET_INFORMATION, _DIRECTORY_CONTROL = 26, 32
_PROCESS_DEFINED, _PROCESS_CREATE, _PROCESS_START, _LOAD_IMAGE = 0, 1, 7, 5
_REG_LOAD_KEY, _REG_RENAME_KEY = 12, 14
_SET_FILE_LENGTH = 16
_SYSTEM_ROOT = "c:\\windows"


@dataclass(frozen=True)
class Field:
    """A string stored at ``start`` (``size`` bytes, one byte per character or UTF-16LE)."""

    start: int
    size: int
    one_byte: bool
    kind: str


def _u16(data: bytes | bytearray, at: int) -> int:
    return int(data[at]) | int(data[at + 1]) << 8


def _u32(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _counted(
    data: bytes | bytearray, size_at: int, text_at: int, end: int, kind: str
) -> Field | None:
    """The counted string whose u16 size word is at ``size_at`` and text at ``text_at``."""
    if size_at + 2 > end:
        return None
    word = _u16(data, size_at)
    one_byte = bool(word >> 15)
    size = (word & 0x7FFF) * (1 if one_byte else 2)
    if not size or text_at + size > end:
        return None
    return Field(text_at, size, one_byte, kind)


class PmlHandler:
    """Discovery over a PML log's strings, then the same bytes with names replaced."""

    def __init__(self, data: bytes, name: str, ctx: Context) -> None:
        self.name = name
        self.ctx = ctx
        self.data = data
        array = np.frombuffer(data, dtype=np.uint8)
        self.header = header = PmlHeader.parse(name, array)
        self.fields: list[Field] = []
        self.regions: list[tuple[int, int]] = []
        self.end = len(data)
        self.rows = 0
        self.notes: list[str] = []
        self._header_fields()
        self._events(array)
        if header.tables_problem() is None:
            self._tables(array)
        self._hosts()
        self.table: dict[str, dict[str, str]] = {}
        self._same: SameLength | None = None
        self._words: re.Pattern[str] | None = None
        self._long: re.Pattern[str] | None = None
        self._glued: re.Pattern[str] | None = None
        self._anywhere: re.Pattern[str] | None = None
        self._kinds: dict[str, str] = {}
        self._cache: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ where strings are
    def _header_fields(self) -> None:
        self.fields.append(Field(0x0C, 32, False, "computer"))
        root = self.data[0x2C : 0x2C + 520].decode("utf-16-le", "replace").split("\x00", 1)[0]
        if root.lower().rstrip("\\") != _SYSTEM_ROOT:
            self.fields.append(Field(0x2C, 520, False, "path"))

    def _events(self, array: np.ndarray) -> None:
        header, data = self.header, self.data
        located = locate_events(header, array, strict=False)
        offsets = located.offsets
        if located.truncated:
            self.notes.extend(located.warnings)
        walked, last = walk_events(header, array)
        if header.index_problem() is not None:
            if header.tables_problem() is not None:
                self.end = last
        elif header.tables_problem() is not None:
            self.end = header.event_offsets_offset + 5 * header.number_of_events
        # events stored but not listed in the index are rewritten too
        every = np.union1d(offsets, walked)
        self.rows = located.count
        events = EventArrays.build(
            header, array, pa.py_buffer(data), every, np.arange(len(every)), Damage(), strict=False
        )
        keep = events.details_end <= self.end
        events = events.take(np.flatnonzero(keep))
        pointer = header.pointer
        classes, operations = events.event_class, events.operation
        details, ends = events.details, events.details_end
        extra_at = events.extra_at
        for i in range(events.count):
            start, end = int(details[i]), int(ends[i])
            if end > start:
                self.regions.append((start, end))
            if extra_at[i] >= 0 and extra_at[i] + 2 <= self.end:
                at = int(extra_at[i])
                size = _u16(data, at)
                stop = min(at + 2 + size, self.end)
                if stop > at + 2:
                    self.regions.append((at + 2, stop))
            self._event_fields(
                int(classes[i]),
                int(operations[i]),
                start,
                end,
                int(events.sub_operation[i]),
                pointer,
            )

    def _event_fields(
        self, event_class: int, operation: int, details: int, end: int, sub: int, pointer: int
    ) -> None:
        data, add = self.data, self.fields.append
        path_end = details
        if event_class == PROCESS and operation in (_PROCESS_DEFINED, _PROCESS_CREATE):
            if end >= details + PROCESS_CREATE_PATH + 6:
                skip = data[details + 0x2C] + data[details + 0x2D]
                text_at = details + PROCESS_CREATE_PATH + 6 + skip
                path = _counted(data, details + PROCESS_CREATE_PATH, text_at, end, "path")
                if path is not None:
                    add(path)
                    path_end = path.start + path.size
                else:
                    path_end = text_at
                command = _counted(data, details + 0x30, path_end, end, "cmdline")
                if command is not None:
                    add(command)
            return
        if event_class == PROCESS and operation == _PROCESS_START:
            if end < details + 12:
                return
            cursor = details + 12
            for size_at, kind in ((details + 4, "cmdline"), (details + 6, "path")):
                got = _counted(data, size_at, cursor, end, kind)
                if got is not None:
                    add(got)
                    cursor = got.start + got.size
            env = 2 * _u32(data, details + 8)
            if env and cursor + env <= end:
                add(Field(cursor, env, False, "env"))
            return
        if event_class == NETWORK:
            tail = details + NETWORK_DTYPE.itemsize
            if end > tail:
                add(Field(tail, (end - tail) // 2 * 2, False, "text"))
            return
        layout = path_offsets(event_class, operation, pointer)
        if layout is None:
            return
        size_at, text_at = details + layout[0], details + layout[1]
        path = _counted(data, size_at, text_at, end, "path")
        if path is not None:
            add(path)
            path_end = path.start + path.size
        else:
            path_end = text_at
        if event_class == REGISTRY and operation in (_REG_LOAD_KEY, _REG_RENAME_KEY):
            kind = "path" if operation == _REG_LOAD_KEY else "component"
            second = _counted(data, details + 2, path_end, end, kind)
            if second is not None:
                add(second)
            return
        if event_class not in (FILE_SYSTEM, IPC):
            return
        if operation == _SET_INFORMATION and sub in _RENAME_SUBS:
            name_at = path_end + 2 * pointer + 4
            if name_at <= end:
                size = min(_u32(data, path_end + 2 * pointer), end - name_at) // 2 * 2
                if size > 0:
                    add(Field(name_at, size, False, "path"))
                buffer_end = path_end + _u32(data, details + _SET_FILE_LENGTH)
                if buffer_end >= name_at:
                    target = _counted(data, buffer_end, buffer_end + 2, end, "path")
                    if target is not None:
                        add(target)
        elif operation == _DIRECTORY_CONTROL and sub == 1:
            pattern = _counted(data, path_end, path_end + 2, end, "component")
            if pattern is not None:
                add(pattern)

    def _tables(self, array: np.ndarray) -> None:
        header, data = self.header, self.data
        start, stop = header.strings_table_offset, header.icon_table_offset
        count = _u32(data, start)
        if start + 4 + 4 * count > stop:
            raise TraceFormatError(
                f"{self.name}: strings table at 0x{start:X}: {count} strings do not fit "
                f"before 0x{stop:X}: the table is damaged. Save the log from Process Monitor "
                "again, or export it as CSV and redact that."
            )
        strings: list[tuple[int, int] | None] = []
        for i in range(count):
            at = start + _u32(data, start + 4 + 4 * i)
            size = _u32(data, at) if at + 4 <= stop else 0
            strings.append((at + 4, size // 2 * 2) if size and at + 4 + size <= stop else None)
        kinds: dict[int, str] = {}

        def refer(index: int, kind: str) -> None:
            if index < count:
                old = kinds.get(index)
                if old is None or _KIND_RANK.index(kind) < _KIND_RANK.index(old):
                    kinds[index] = kind

        table, end = header.process_table_offset, header.strings_table_offset
        processes = _u32(data, table)
        pointer = header.pointer
        module_size = 2 * pointer + 48
        for i in range(processes if table + 4 + 8 * processes <= end else 0):
            record = table + _u32(data, table + 4 + 4 * (processes + i))
            if record + 100 + pointer > end:
                continue
            for offset, kind in _STRING_REFS:
                refer(_u32(data, record + offset), kind)
            modules = _u32(data, record + 96 + pointer)
            at = record + 100 + pointer
            for _ in range(modules):
                if at + module_size > end:
                    break
                base = at + 2 * pointer + 4
                refer(_u32(data, base), "path")
                refer(_u32(data, base + 4), "text")
                refer(_u32(data, base + 8), "company")
                refer(_u32(data, base + 12), "company")
                at += module_size
        for index, place in enumerate(strings):
            if place is None:
                continue
            found = kinds.get(index)
            kind = found if found is not None else ""
            if not kind:
                text = self.data[place[0] : place[0] + place[1]].decode("utf-16-le", "replace")
                kind = "path" if "\\" in text else "text"
            self.fields.append(Field(place[0], place[1], False, kind))

    def _hosts(self) -> None:
        data, pos = self.data, self.header.hosts_and_ports_offset
        if not pos or pos + 4 > self.end:
            return
        try:
            (count,) = struct.unpack_from("<I", data, pos)
            cursor = pos + 4
            for _ in range(count):
                (size,) = struct.unpack_from("<I", data, cursor + 16)
                if cursor + 20 + size > self.end:
                    raise struct.error
                self.fields.append(Field(cursor + 20, size // 2 * 2, False, "host"))
                cursor += 20 + size
        except struct.error:  # a cut table: the output ends before it
            self.end = min(self.end, pos)

    @property
    def one_byte(self) -> list[tuple[int, int]]:
        """Where the one-byte (ANSI) string fields are, for the leak check."""
        return [(f.start, f.start + f.size) for f in self.fields if f.one_byte]

    # ------------------------------------------------------------------ passes
    def texts(self) -> Iterator[tuple[Field, str]]:
        """Every string field and its text (ended at its first NUL, as Procmon reads it)."""
        data = self.data
        for f in self.fields:
            if f.start + f.size > self.end:
                continue
            raw = data[f.start : f.start + f.size]
            text = raw.decode("latin-1") if f.one_byte else raw.decode("utf-16-le", "surrogatepass")
            yield f, text

    def discover(self) -> None:
        """Run the rewriters over the reader's view and every string field once."""
        ctx = self.ctx
        trace = pml_reader.read(input_from_bytes(self.data[: self.end], self.name))
        events = trace.events
        for column in ("operation", "result", "event_class"):
            for value in events[column].unique().drop_nulls().to_list():
                ctx.learn(str(value))
        for value in events["process"].unique().drop_nulls().to_list():
            rewrite_process(ctx, value)
        for value in events["path"].unique().drop_nulls().to_list():
            rewrite_location(ctx, value)
        for operation, detail, path in (
            events.select("operation", "detail", "path").unique().drop_nulls("detail").iter_rows()
        ):
            rewrite_detail(ctx, detail, operation or "", path or "")
        seen: set[tuple[str, str]] = set()
        for f, text in self.texts():
            for piece in text.split("\x00"):
                if piece and (f.kind, piece) not in seen:
                    seen.add((f.kind, piece))
                    self._discover(f.kind, piece)

    def _discover(self, kind: str, text: str) -> None:
        ctx = self.ctx
        if kind == "path":
            rewrite_location(ctx, text)
        elif kind == "component":
            rewrite_component(ctx, text)
        elif kind == "user":
            rewrite_account(ctx, text)
            if text.partition("\\")[0].strip().lower() in AUTHORITIES:
                ctx.public(text)  # NT AUTHORITY\SYSTEM: its words are no secrets
        elif kind == "process":
            rewrite_process(ctx, text)
        elif kind == "cmdline":
            rewrite_cmdline(ctx, text)
        elif kind == "company":
            rewrite_company(ctx, text, False)
        elif kind == "computer":
            ctx.structural("computer", text)
        elif kind == "host":
            rewrite_host(ctx, text, "computer")
        elif kind == "env":
            rewrite_env(ctx, text)
        elif kind == "keep":
            ctx.learn(text)
        else:
            rewrite_text(ctx, text)

    def reset(self) -> None:
        """Nothing to forget: the writing pass starts from the same bytes."""

    def render(self) -> tuple[bytes, int]:
        """The redacted log (up to what the reader interprets) and its number of events."""
        return next(render_together([self]))

    def _decide_all(self) -> list[tuple[Field, str]]:
        """The CSV rewriters' decision on every string field (they note late secrets)."""
        texts = list(self.texts())
        for f, text in texts:
            for piece in text.split("\x00"):
                if piece:
                    self._decide(f.kind, piece)
        return texts

    def _adopt(self, first: PmlHandler) -> None:
        """Share ``first``'s matchers, same-length pseudonyms and table (one capture)."""
        self._same, self._kinds, self.table = first._same, first._kinds, first.table
        self._words, self._long = first._words, first._long
        self._glued, self._anywhere = first._glued, first._anywhere

    def _render(self, texts: list[tuple[Field, str]]) -> tuple[bytes, int]:
        out = bytearray(self.data[: self.end])
        for f, text in texts:
            new = "\x00".join(self._rewrite(f.kind, piece) for piece in text.split("\x00"))
            if new != text:
                _put(out, f, new)
        for start, end in self.regions:
            self._runs(out, start, min(end, len(out)))
        return bytes(out), self.rows

    def _runs(self, out: bytearray, start: int, end: int) -> None:
        """Second tier: text runs inside an event's details: UTF-16 (secrets of any
        length) and one byte per character (secrets the leak check looks for there)."""
        for m in _RUN.finditer(out, start, end):
            text = m.group(0).decode("utf-16-le", "surrogatepass")
            new = self._substitute(text)
            if new != text:
                out[m.start() : m.end()] = new.encode("utf-16-le", "surrogatepass")
        if self._long is None and self._anywhere is None and self._glued is None:
            return
        for m in _ANSI_RUN.finditer(out, start, end):
            text = m.group(0).decode("latin-1")
            new = self._substitute(text, self._long)
            if new != text:
                out[m.start() : m.end()] = new.encode("latin-1")

    # ------------------------------------------------------------------ rewriting
    _DECIDERS: dict[str, Callable[[Context, str], str]] = {
        "path": rewrite_location,
        "component": rewrite_component,
        "user": rewrite_account,
        "process": rewrite_process,
        "cmdline": rewrite_cmdline,
        "company": lambda ctx, text: rewrite_company(ctx, text, False),
        "computer": lambda ctx, text: ctx.structural("computer", text),
        "host": lambda ctx, text: rewrite_host(ctx, text, "computer"),
        "env": rewrite_env,
        "text": rewrite_text,
    }

    def _decide(self, kind: str, text: str) -> str:
        """What the CSV rewriters make of ``text`` (cached)."""
        key = (kind, text)
        got = self._cache.get(key)
        if got is None:
            decider = self._DECIDERS.get(kind)
            got = text if decider is None else decider(self.ctx, text)
            self._cache[key] = got
        return got

    def _prepare(self) -> None:
        """The matchers and the same-length pseudonyms, once every secret is known."""
        ctx = self.ctx
        secrets = ctx.secrets()
        self._kinds = {s.original.lower(): s.kind for s in secrets}
        words = [t for t, k in self._kinds.items() if k != "secret"]
        custom = [t for t, k in self._kinds.items() if k == "secret"]
        self._words = word_pattern(words, whole_word=True, ignore_case=True)
        self._long = word_pattern(
            [w for w in words if len(w) >= ANSI_EVERYWHERE], whole_word=True, ignore_case=True
        )
        self._glued = word_pattern(
            [t for t, k in self._kinds.items() if k in IDENTITY_CLASSES and len(t) >= GLUED],
            whole_word=False,
            ignore_case=True,
        )
        self._anywhere = word_pattern(custom, whole_word=False, ignore_case=True)
        forbidden = {w.lower() for s in secrets for w in WORD.findall(s.original)}
        forbidden |= ctx.grammar

        def guard(candidate: str) -> str | None:
            if self._anywhere is not None and (m := self._anywhere.search(candidate)):
                return m.group(0)
            return None

        self._same = SameLength(ctx.pseudo, forbidden, guard, ctx.system_images)

    def _pseudo(self, cls: str, original: str) -> str:
        assert self._same is not None
        fresh = self._same.text(original)
        if fresh != original:
            self.table.setdefault(cls, {})[fresh] = original
        return fresh

    def _class(self, text: str, default: str = "path") -> str:
        return self._kinds.get(text.lower()) or self.ctx.kind_of(text) or default

    def _substitute(self, text: str, words: re.Pattern[str] | None | bool = True) -> str:
        """Searchable secrets replaced where they stand as a word (``--secret`` words
        anywhere), by same-length pseudonyms; ``words``: another matcher of secrets."""
        pattern = self._words if words is True else words or None
        for matcher in (pattern, self._glued):
            if matcher is not None and matcher.search(text):
                text = matcher.sub(
                    lambda m: self._pseudo(self._class(m.group(0)), m.group(0)), text
                )
        return self._custom(text)

    def _custom(self, text: str) -> str:
        if self._anywhere is not None and self._anywhere.search(text):
            text = self._anywhere.sub(lambda m: self._pseudo("secret", m.group(0)), text)
        return text

    def _rewrite(self, kind: str, text: str) -> str:
        if not text or kind == "keep":
            return self._custom(text)
        decided = self._decide(kind, text)
        if kind in ("path", "component", "user"):
            out = self._aligned(text, decided, "\\")
        elif kind == "host":
            out = self._aligned(text, decided, ".")
        elif kind in ("process", "company", "computer"):
            out = text if decided == text else self._name(text, decided)
        elif kind == "env":
            out = self._env(text) if decided != text else text
        else:
            out = self._substitute(text)
        return self._custom(out)

    def _aligned(self, text: str, decided: str, sep: str) -> str:
        """Components that the rewriter changed get same-length pseudonyms."""
        if decided == text:
            return text
        parts, done = text.split(sep), decided.split(sep)
        if len(parts) != len(done):
            return self._substitute(text)
        return sep.join(
            part if part == new else self._name(part, new)
            for part, new in zip(parts, done, strict=True)
        )

    def _name(self, name: str, decided: str) -> str:
        """A same-length pseudonym of a name the rewriter changed into ``decided``: only
        its secrets when that is all the rewriter replaced, else the whole name (the
        extension kept when the rewriter kept it)."""
        if decided == self.ctx.substitute(name):
            return self._substitute(name)
        stem, ext = split_ext(name)
        if ext and stem and decided.lower().endswith(ext.lower()):
            return self._pseudo(self._class(stem), stem) + ext
        return self._pseudo(self._class(name), name)

    def _env(self, block: str) -> str:
        """One ``NAME=value`` entry of an environment block."""
        equals = block.find("=", 1)
        if equals < 0:
            return self._substitute(block)
        name, value = block[:equals], block[equals + 1 :]
        decided = rewrite_env(self.ctx, block)
        new_value = decided[decided.find("=", 1) + 1 :] if "=" in decided[1:] else decided
        if new_value == value:
            return self._substitute(name) + "=" + value
        if "\\" in value or ";" in value:
            items = []
            for item in value.split(";"):
                if "\\" in item:
                    items.append(self._aligned(item, rewrite_path(self.ctx, item), "\\"))
                else:
                    items.append(self._substitute(item))
            return self._substitute(name) + "=" + ";".join(items)
        return self._substitute(name) + "=" + self._name(value, new_value)


def render_together(handlers: Sequence[PmlHandler]) -> Iterator[tuple[bytes, int]]:
    """The redacted logs of the files of one rolled-over capture, pseudonymised as one.

    The handlers share one :class:`Context` (discovery ran over every part, then one
    :meth:`Context.freeze`). Every part's fields are decided first, so a secret that one
    part notes late is known to all; then one set of matchers and one :class:`SameLength`
    serve every part, so a name gets the same pseudonym in each, whatever part meets it
    first (collisions are resolved once, in part order, the same on every run with the
    key); ``table`` is one table for all. Yields each part's bytes and events in turn.
    """
    first = handlers[0]
    for handler in handlers[1:]:
        handler._cache = first._cache  # the rewriters' decisions depend on the text only
    texts = [handler._decide_all() for handler in handlers]
    first._prepare()
    for handler in handlers[1:]:
        handler._adopt(first)
    for handler, fields in zip(handlers, texts, strict=True):
        yield handler._render(fields)


def _put(out: bytearray, f: Field, text: str) -> None:
    """Write ``text`` over the field: it must take exactly the field's bytes."""
    raw = text.encode("latin-1") if f.one_byte else text.encode("utf-16-le", "surrogatepass")
    if len(raw) != f.size:  # pragma: no cover - the pseudonyms keep the length
        raise AssertionError(f"pseudonym of another length at 0x{f.start:X}")
    out[f.start : f.start + f.size] = raw
