"""The leak check of a redacted PML log: every byte, as UTF-16LE and as ANSI text.

The rewriting (:mod:`.pml`) visits the string fields it knows; this check does not trust
it. It searches the whole output, case-insensitively, for every secret the redaction
found (:meth:`Context.secrets`), every ``--secret`` word and the key:

* **UTF-16LE, everywhere, at both byte alignments**, for every secret (the searchable
  ones have 3 characters or more): Procmon stores text as UTF-16, and three UTF-16
  characters are six bytes, three of them NUL in alternate places, which binary numbers
  next to each other almost never form;
* **one byte per character (ANSI/ASCII), everywhere**, for secrets of
  :data:`ANSI_EVERYWHERE` characters or more; shorter ones only inside the one-byte
  string fields (paths Procmon stored as ANSI). A three-letter name matches random
  binary bytes about once per megabyte (``(2/256)**3`` per position, case-insensitive),
  so searching all bytes for it would refuse almost every log for bytes that are not
  text; at six letters a false match is about once per 10 TB (``(2/256)**6``, less in
  practice because binary bytes are seldom letters), so a hit is a real leak.

Originals with control characters are not searched for: they are binary data read as
text, not names (the rewriting still replaces their words where it reads them).

A secret counts where it stands as a word: not next to a Latin letter or digit (``bob``
in ``bob-notes``, not in ``bobcat``); ``--secret`` words, the key and identity secrets
(user, computer, domain, SID, e-mail, address, server names) of :data:`GLUED` characters
or more count anywhere, since binary structures store strings end to end.
Characters that decode binary bytes (CJK, symbols) count as word boundaries, so a name
right after binary data is still found. A hit is reported with its byte offset.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from traceaudit.redaction.context import IDENTITY_CLASSES, Secret, word_pattern

__all__ = ["ANSI_EVERYWHERE", "PmlLeak", "find_pml_leaks", "pml_leak_message"]

ANSI_EVERYWHERE = 6
"""Secrets at least this long are searched for as one-byte text in every byte."""
GLUED = 6
"""Identity secrets (users, computers, domains…) at least this long count inside words
too: binary structures store strings end to end (a registry value's name and data)."""
_LEFT = r"(?<![0-9a-z\u00c0-\u024f])"
_RIGHT = r"(?![0-9a-z\u00c0-\u024f])"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffd]")
"""Characters no name holds: an "original" with one is binary data read as text (a
damaged or misread field), and its bytes recur in binary data by chance."""
_ORDER = ("sid", "email", "ip", "user", "computer", "unc", "domain", "cmdline", "env", "path")


@dataclass(frozen=True)
class PmlLeak:
    """A secret found in the output: its class, its text, where, and as which encoding."""

    kind: str
    text: str
    offset: int
    encoding: str


def _pattern(words: Iterable[str], *, whole: bool) -> re.Pattern[str] | None:
    base = word_pattern(words, whole_word=False, ignore_case=False)
    if base is None:
        return None
    return re.compile(f"{_LEFT}{base.pattern}{_RIGHT}" if whole else base.pattern)


def _units(data: bytes, align: int) -> str:
    """``data[align:]`` as UTF-16LE text, one character per code unit (surrogates become
    U+FFFD, so a character's index times two is its byte offset)."""
    end = len(data) - (len(data) - align) % 2
    units = np.frombuffer(data, dtype="<u2", count=(end - align) // 2, offset=align).copy()
    units[(units >= 0xD800) & (units < 0xE000)] = 0xFFFD
    text: str = units.tobytes().decode("utf-16-le")
    return text


_EXPANDING = {c: chr(c).lower()[0] for c in range(0x10000) if len(chr(c).lower()) != 1}
"""Characters whose lower case is longer (``İ`` → ``i̇``), mapped to its first character."""
_EXPANDS = re.compile("[" + "".join(chr(c) for c in _EXPANDING) + "]")


def _lower(text: str) -> str:
    """``text`` lower-cased character by character (same length: offsets stay true)."""
    if _EXPANDS.search(text):
        text = text.translate(_EXPANDING)
    return text.lower()


def find_pml_leaks(
    data: bytes,
    secrets: Sequence[Secret],
    key_hex: str = "",
    one_byte: Sequence[tuple[int, int]] = (),
) -> list[PmlLeak]:
    """Each secret of ``secrets`` found in ``data`` (first occurrence per encoding),
    and the key. ``one_byte`` are the (start, end) of the ANSI string fields."""
    by_text = {
        s.original.lower(): s for s in secrets if s.original and not _CONTROL.search(s.original)
    }
    if key_hex:
        by_text.setdefault(key_hex.lower(), Secret("key", key_hex))
    anywhere = [t for t, s in by_text.items() if s.kind in ("secret", "key")]
    anywhere += [t for t, s in by_text.items() if s.kind in IDENTITY_CLASSES and len(t) >= GLUED]
    words = [t for t, s in by_text.items() if s.kind not in ("secret", "key")]
    long_words = [t for t in words if len(t) >= ANSI_EVERYWHERE]
    short_words = [t for t in words if len(t) < ANSI_EVERYWHERE]
    found: dict[tuple[str, str], PmlLeak] = {}

    def sweep(
        text: str, scale: int, base: int, encoding: str, patterns: list[re.Pattern[str] | None]
    ) -> None:
        lowered = _lower(text)
        for pattern in patterns:
            if pattern is None:
                continue
            for m in pattern.finditer(lowered):
                key = (m.group(0), encoding)
                if key not in found:
                    secret = by_text[m.group(0)]
                    found[key] = PmlLeak(
                        secret.kind, secret.original, base + scale * m.start(), encoding
                    )

    wide = [_pattern(words, whole=True), _pattern(anywhere, whole=False)]
    for align in (0, 1):
        sweep(_units(data, align), 2, align, "UTF-16", wide)
    narrow = [_pattern(long_words, whole=True), _pattern(anywhere, whole=False)]
    sweep(data.decode("latin-1"), 1, 0, "ANSI", narrow)
    short = [_pattern(short_words, whole=True)]
    if one_byte and short[0] is not None:
        # every field at once, NUL-separated (a word boundary); offsets mapped back
        pieces, starts, position = [], [], 0
        for start, end in sorted(one_byte):
            starts.append((position, start))
            pieces.append(data[start:end].decode("latin-1"))
            position += end - start + 1
        joined = _lower("\x00".join(pieces))
        at = [p for p, _ in starts]
        for m in short[0].finditer(joined):
            key = (m.group(0), "ANSI")
            if key not in found:
                index = bisect.bisect_right(at, m.start()) - 1
                offset = starts[index][1] + m.start() - starts[index][0]
                secret = by_text[m.group(0)]
                found[key] = PmlLeak(secret.kind, secret.original, offset, "ANSI")
    return sorted(found.values(), key=lambda leak: (leak.offset, leak.text))


def pml_leak_message(name: str, leaks: Sequence[PmlLeak]) -> str:
    """``out.pml: redaction check failed: 2 secret(s) of class user leaked ('bob' as
    UTF-16 at 0x1A2B, …). The output was removed.``"""
    kinds = sorted(
        {leak.kind for leak in leaks},
        key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k),
    )
    shown = ", ".join(
        f"{'the key' if leak.kind == 'key' else repr(leak.text)} as {leak.encoding} at "
        f"0x{leak.offset:X}"
        for leak in leaks[:3]
    )
    more = ", …" if len(leaks) > 3 else ""
    return (
        f"{name}: redaction check failed: {len(leaks)} secret(s) of class "
        f"{', '.join(kinds)} leaked ({shown}{more}). The output was removed."
    )
