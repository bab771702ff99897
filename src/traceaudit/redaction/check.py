"""The leak check: read the written output back and look for every secret found.

Rewriting is structural, so a secret standing where no rule looks (an unusual Detail, a
column this version does not know) could pass through unchanged. The check does not
trust the rewriters: it decodes the bytes actually written (decompressed if need be) and
searches them, case-insensitively, for every original the redaction noted or replaced,
of every class (users, computers, domains, SIDs, e-mail and IP addresses, UNC servers,
command-line arguments, environment values, file and folder names), for the
``--secret`` words, and for the key. Originals count where they stand as a word, the way
they are replaced (``bob`` in ``bob-notes``, not in ``bobcat``); ``--secret`` words count
anywhere. Originals shorter than 3 characters, without a letter (IP addresses excepted),
or that are also well-known words or words of the columns written back untouched are not
searched for (see :meth:`._redact_context.Context.searchable`).

All secrets are found in one pass per chunk by one expression laid out as a trie
(:func:`~._redact_context.word_pattern`), so thousands of file names cost little more
than a handful of user names.
"""

from __future__ import annotations

import gzip
import html
import io
import re
import zipfile
from collections.abc import Generator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from traceaudit.display import plural
from traceaudit.redaction.context import CLASSES, IDENTITY_CLASSES, Secret, word_pattern
from traceaudit.redaction.handlers import Source

__all__ = ["Leak", "find_leaks", "find_leaks_in_file", "leak_message"]

_ORDER = tuple(dict.fromkeys((*IDENTITY_CLASSES, *CLASSES, "secret", "key")))


@dataclass(frozen=True)
class Leak:
    """A secret found in the output: its class, its text there, and the line (1-based)."""

    kind: str
    text: str
    line: int


_CHUNK = 8 * 1024 * 1024
"""Characters decoded and searched at a time: memory stays flat for any size of trace."""


def _chunks(path: Path, source: Source) -> Generator[str, None, None]:
    """The written output as decoded text, a chunk at a time (a zip's member names
    first: a name can leak too)."""
    encoding = "utf-8-sig" if source.bom and source.encoding == "utf-8" else source.encoding
    with ExitStack() as stack:
        raw: IO[bytes]
        if source.compression == "gzip":
            raw = stack.enter_context(gzip.open(path, "rb"))  # type: ignore[arg-type]
        elif source.compression == "zip":
            archive = stack.enter_context(zipfile.ZipFile(path))
            names = archive.namelist()
            yield "\n".join(names) + "\n"
            raw = stack.enter_context(archive.open(names[0]))
        else:
            raw = stack.enter_context(path.open("rb"))
        text = stack.enter_context(
            io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        )
        while chunk := text.read(_CHUNK):
            yield chunk


@dataclass(frozen=True)
class _Targets:
    """The secrets to look for: by lower-cased text, and the expressions that find them
    (``words``: where they stand as a word; ``anywhere``: ``--secret`` words and the key)."""

    secrets: dict[str, Secret]
    words: re.Pattern[str] | None
    anywhere: re.Pattern[str] | None

    @property
    def longest(self) -> int:
        return max((len(t) for t in self.secrets), default=0)


def find_leaks_in_file(
    path: Path, source: Source, secrets: Sequence[Secret], key_hex: str = ""
) -> list[Leak]:
    """:func:`find_leaks` over the written file, read back a chunk at a time."""
    targets = _targets(secrets, key_hex)
    if not targets.secrets:
        return []
    xml = source.format == "procmon-xml"
    overlap = 6 * targets.longest + 16  # an escaped secret fits in the overlap
    found: dict[str, Leak] = {}
    line, carry = 1, ""
    # closed explicitly: on Windows an open handle would block removing the file
    with closing(_chunks(path, source)) as chunks:
        chunk = next(chunks, "")
        while chunk or carry:
            following = next(chunks, "")
            text = carry + chunk
            final = not following
            scan = html.unescape(text) if xml else text
            _search(scan, targets, found, line, skip_first=bool(carry), final=final)
            if final:
                break
            carry = text[-overlap:]
            line += text.count("\n", 0, len(text) - len(carry))
            chunk = following
    return sorted(found.values(), key=lambda leak: (leak.line, leak.text))


def find_leaks(text: str, secrets: Sequence[Secret], key_hex: str = "") -> list[Leak]:
    """Each secret of ``secrets`` found in ``text`` (first occurrence), and the key."""
    found: dict[str, Leak] = {}
    _search(text, _targets(secrets, key_hex), found, 1, skip_first=False, final=True)
    return sorted(found.values(), key=lambda leak: (leak.line, leak.text))


def _targets(secrets: Sequence[Secret], key_hex: str) -> _Targets:
    """Later secrets win for the same text: a ``--secret`` word is looked for anywhere
    even when it is also a user name."""
    by_text = {s.original.lower(): s for s in secrets if s.original}
    if key_hex:
        by_text.setdefault(key_hex.lower(), Secret("key", key_hex))
    anywhere = [t for t, s in by_text.items() if s.kind in ("secret", "key")]
    words = [t for t, s in by_text.items() if s.kind not in ("secret", "key")]
    return _Targets(
        by_text,
        word_pattern(words, whole_word=True, ignore_case=False),
        word_pattern(anywhere, whole_word=False, ignore_case=False),
    )


def _search(
    text: str,
    targets: _Targets,
    found: dict[str, Leak],
    line: int,
    *,
    skip_first: bool,
    final: bool,
) -> None:
    """Record in ``found`` the first occurrence of each target not found yet.

    The text is lower-cased and swept once per expression. Away from the end of the
    file, a match touching the chunk's last character waits for the next chunk (it may
    continue a word); one at its first character was already judged in the previous
    chunk.
    """
    lowered = text.lower()
    start = 1 if skip_first else 0
    for pattern in (targets.words, targets.anywhere):
        if pattern is None:
            continue
        for m in pattern.finditer(lowered, start):
            if not final and m.end() >= len(lowered):
                break
            lower = m.group(0)
            if lower not in found:
                secret = targets.secrets[lower]
                count = lowered.count("\n", 0, m.start())
                found[lower] = Leak(secret.kind, secret.original, line + count)


def leak_message(name: str, leaks: Sequence[Leak]) -> str:
    """``out.csv: redaction check failed: 2 secrets of class user, computer leaked
    ('bob' on line 3, …). The output was removed.``"""
    kinds = sorted({leak.kind for leak in leaks}, key=lambda k: (_ORDER.index(k), k))
    shown = ", ".join(
        f"{'the key' if leak.kind == 'key' else repr(leak.text)} on line {leak.line}"
        for leak in leaks[:3]
    )
    more = ", …" if len(leaks) > 3 else ""
    return (
        f"{name}: redaction check failed: {plural(len(leaks), 'secret')} of class "
        f"{', '.join(kinds)} leaked ({shown}{more}). The output was removed."
    )
