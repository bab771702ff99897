"""Same-length pseudonyms: a secret replaced by keyed text of exactly its length.

Binary formats whose strings sit at fixed offsets (Procmon's PML) are redacted in place
(:mod:`.pml`), so a pseudonym must take exactly the bytes of its original in the same
encoding. ``user_3f2a9c81`` cannot; :class:`SameLength` makes, instead, text of the same
shape:

* every maximal run of letters and digits (a *word*) is replaced by a keyed word of the
  same length: letters by letters with the original's case pattern (``WChen`` →
  ``Qmxaz``), digits by digits, and a word of hex digits with at least one digit by hex
  digits (GUIDs and hashes stay hex); everything else (``\\``, ``.``, ``-``, ``_``,
  spaces, the extension where the caller keeps it) is kept. A character outside the
  Basic Multilingual Plane (two UTF-16 code units) becomes two letters, so the UTF-16
  byte length is kept too; one-byte (ANSI) strings hold only one-byte characters;
* a word's pseudonym is derived (HMAC-SHA256 under the redaction key) from the word
  lower-cased, and only the case pattern is taken from each occurrence: ``WChen`` and
  ``wchen`` become words equal case-insensitively, so paths that Windows (and the
  analysis) treat as one file stay one file;
* it is a function of the word alone, so ``bob`` becomes the same word in a path, a
  command line and an environment block, and in every file redacted with the same key
  (except where two words collide: the one met second gets another candidate, so the
  parts of one rolled-over capture share one :class:`SameLength`, :func:`.pml.render_together`);
* it is injective: two different words (lower-cased) never get the same pseudonym, and a
  pseudonym is never a word of another secret, a well-known word (:func:`.vocab.is_vocab`),
  a word of the untouched columns, or text containing a ``--secret`` word: a candidate
  that is refuses ``attempt`` + 1 (deterministically, by counter). Words of one or two
  characters, whose space is small (26 letters), may fall back to any free candidate;
  should none be free, :class:`UsageError` says so;
* SIDs keep their form: ``S-1-5-21-`` (``S-1-12-1-``) and the RID stay, the domain
  numbers get digits of their length.

These pseudonyms look different from those of the text formats (``user_3f2a9c81``,
``name_…``) because they keep the length; the ``--map`` file lists them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from traceaudit.errors import UsageError
from traceaudit.redaction.keys import Pseudonyms
from traceaudit.redaction.shapes import SID
from traceaudit.redaction.vocab import is_vocab

__all__ = ["WORD", "SameLength"]

WORD = re.compile(r"[^\W_]+")
"""A word: a maximal run of letters and digits."""
_HEX_WORD = re.compile(r"[0-9a-f]*[0-9][0-9a-f]*")
_SID_FULL = re.compile(rf"{SID.pattern}", re.I)
_RID = re.compile(r"-\d+")
_TRIES = 64
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_HEX_LETTERS = "abcdef"
_DOMAIN = "pml-same-length\x00"
_LATIN1_LETTERS = "".join(chr(c) for c in range(0xE0, 0xFF) if c != 0xF7)
"""à…þ: one byte in the one-byte (Latin-1 read) fields, their upper case too."""
_CJK = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 2048))
"""Ideographs for short names that are not Latin-1 (so only ever in UTF-16 fields)."""
_WIDE_PAIRS = 4096  # keyed random two-character candidates tried from the wide pools


def _fold(char: str) -> str:
    lower = char.lower()
    return lower if len(lower) == 1 else char


class SameLength:
    """Keyed same-length pseudonyms of words, consistent per key (see module docstring).

    ``forbidden`` are lower-cased words no pseudonym may equal (the words of every
    secret); ``guard`` returns the ``--secret`` word a candidate contains, if any.
    """

    def __init__(
        self,
        pseudo: Pseudonyms,
        forbidden: Iterable[str] = (),
        guard: Callable[[str], str | None] = lambda text: None,
        extra_vocab: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self._pseudo = pseudo
        self._forbidden = set(forbidden)
        self._guard = guard
        self._vocab = extra_vocab
        self._given: dict[str, str] = {}
        self._taken: dict[str, str] = {}
        self._permutations: dict[int, dict[str, str]] = {}

    def word(self, word: str) -> str:
        """The pseudonym of one word, with ``word``'s case pattern."""
        lower = "".join(_fold(c) for c in word)
        given = self._given.get(lower)
        if given is None:
            given = self._choose(lower)
        return _cased(given, word)

    def text(self, text: str) -> str:
        """``text`` with every word replaced (separators and punctuation kept); a SID
        keeps its ``S-1-5-21-`` prefix and RID."""
        if "-" in text and (sid := _SID_FULL.search(text)) is not None:
            head, body, tail = text[: sid.start()], sid.group(0), text[sid.end() :]
            parts = body.split("-")  # S-1-5-21-a-b-c or S-1-12-1-a-b-c-d (no RID)
            body = "-".join(parts[:4] + [self.word(p) for p in parts[4:]])
            if (rid := _RID.match(tail)) is not None:
                body, tail = body + rid.group(0), tail[rid.end() :]
            return self.text(head) + body + self.text(tail)
        return WORD.sub(lambda m: self.word(m.group(0)), text)

    def _choose(self, lower: str) -> str:
        if len(lower) == 1:
            # A trace may hold more distinct one-character names (digits, CJK folder
            # names, a damaged log read as names) than any pool of one-character
            # pseudonyms drawn one by one could serve: a keyed permutation serves them
            # all, and no other word can take its values (pseudonyms keep their length).
            candidate = self._one_char(lower)
            self._given[lower] = candidate
            self._taken[candidate] = lower
            return candidate
        hexed = len(lower) >= 4 and _HEX_WORD.fullmatch(lower) is not None
        fallback: str | None = None
        for attempt in range(_TRIES):
            candidate = self._candidate(lower, attempt, hexed or attempt >= _TRIES // 2)
            if candidate == lower or candidate in self._taken:
                continue
            if self._guard(candidate) is not None:
                continue
            if candidate in self._forbidden or (
                not candidate.isdigit() and is_vocab(candidate, self._vocab)
            ):
                if fallback is None and len(lower) <= 2:
                    fallback = candidate
                continue
            break
        else:
            if fallback is None and len(lower) <= 2:
                fallback = self._any_free(lower)
            if fallback is None and len(lower) <= 2:
                fallback = self._wide_free(lower)
            if fallback is None and len(lower) <= 2 and lower not in self._taken:
                # More distinct one- or two-character names than even the wide pools
                # hold: keep the name. It says next to nothing, it is never searched
                # for (too short), and keeping it keeps names distinct.
                fallback = lower
            if fallback is None:
                raise UsageError(
                    f"no same-length pseudonym is free for a {len(lower)}-character name in "
                    f"{_TRIES} candidates: the trace has too many distinct names of that "
                    "length. Keep the class with --keep, or redact a CSV export instead."
                )
            candidate = fallback
        self._given[lower] = candidate
        self._taken[candidate] = lower
        return candidate

    def _any_free(self, lower: str) -> str | None:
        """A short word's first free candidate of all letters and digits, in keyed order
        (identity and other originals allowed: too short to be searched for)."""
        alphabet = _LETTERS + "0123456789"
        pool = [a + b for a in alphabet for b in alphabet] if len(lower) == 2 else list(alphabet)
        order = self._pseudo.stream(_DOMAIN + "any\x00" + lower, 0, len(pool))
        for _, candidate in sorted(zip(order, pool, strict=True)):
            if candidate not in self._taken and self._guard(candidate) is None:
                return candidate
        return None

    def _one_char(self, char: str) -> str:
        """A one-character word's pseudonym: a keyed permutation of the word characters
        (case-folded) of its 256-character block, ASCII apart (other readers read
        one-byte strings as ASCII or UTF-8, so ASCII must stay ASCII). In ASCII, digits
        go to letters, so a dotted run of single digits (an IP address, a version)
        never becomes another such original."""
        code = ord(char)
        block = -1 if code < 0x80 else code >> 8  # ASCII stays ASCII (one-byte readers)
        table = self._permutations.get(block)
        if table is None:
            table = self._permutations[block] = self._permutation(block)
        return table.get(char, char)

    def _permutation(self, block: int) -> dict[str, str]:
        codes = range(0x80) if block < 0 else range(max(block << 8, 0x80), (block + 1) << 8)
        domain = [
            c
            for c in map(chr, codes)
            if WORD.fullmatch(c) and _fold(c) == c and len(c.upper()) == 1
        ]
        salt = _DOMAIN + f"one\x00{block}\x00"

        def keyed(chars: list[str], what: str) -> list[str]:
            return sorted(chars, key=lambda c: self._pseudo.stream(salt + what + c, 0, 8))

        digits = [c for c in domain if "0" <= c <= "9"]
        others = [c for c in domain if not "0" <= c <= "9"]
        if not digits or len(others) < len(digits):
            return dict(zip(keyed(domain, "from"), keyed(domain, "to"), strict=True))
        letters = keyed(others, "to")
        table = dict(zip(keyed(digits, "from"), letters[: len(digits)], strict=True))
        rest = keyed(letters[len(digits) :] + digits, "rest")
        table.update(zip(keyed(others, "from"), rest, strict=True))
        return table

    def _wide_free(self, lower: str) -> str | None:
        """A non-ASCII two-character word's free candidate past the 1,296 pairs of
        letters and digits (a trace with that many two-character names): Latin-1
        letters for a Latin-1 word (they fit the one-byte fields), ideographs for any
        other (such a word is only ever in UTF-16 fields)."""
        if lower.isascii():
            return None  # ASCII must stay ASCII: other readers read one-byte strings so
        latin = all(ord(c) <= 0xFF for c in lower)
        alphabet = _LETTERS + "0123456789" + (_LATIN1_LETTERS if latin else _CJK)
        size = len(alphabet)
        draws = self._pseudo.stream(_DOMAIN + "wide\x00" + lower, 0, 4 * _WIDE_PAIRS)
        pool = [  # two keyed bytes per character: the whole alphabet is reachable
            alphabet[int.from_bytes(draws[4 * k : 4 * k + 2], "big") % size]
            + alphabet[int.from_bytes(draws[4 * k + 2 : 4 * k + 4], "big") % size]
            for k in range(_WIDE_PAIRS)
        ]
        for candidate in pool:
            free = candidate != lower and candidate not in self._taken
            if free and self._guard(candidate) is None:
                return candidate
        return None

    def _candidate(self, lower: str, attempt: int, hexed: bool) -> str:
        stream = self._pseudo.stream(_DOMAIN + lower, attempt, 2 * len(lower) + 2)
        out: list[str] = []
        for i, char in enumerate(lower):
            value = stream[2 * i]
            if char.isdigit():
                out.append(str(value % 10))
                continue
            if attempt >= _TRIES // 2 and len(lower) <= 2:  # small spaces: any alphanumeric
                out.append((_LETTERS + "0123456789")[value % 36])
                continue
            letters = _HEX_LETTERS if hexed else _LETTERS
            out.append(letters[value % len(letters)])
            if ord(char) > 0xFFFF:  # two UTF-16 code units: two letters
                out.append(_LETTERS[stream[2 * i + 1] % 26])
        return "".join(out)


def _cased(pseudonym: str, original: str) -> str:
    """``pseudonym`` with ``original``'s upper-case letters upper-cased (position by
    position; a character of two code units counts two positions)."""
    if original.islower() or not any(c.isupper() for c in original):
        return pseudonym
    out = list(pseudonym)
    pos = 0
    for char in original:
        if char.isupper() and pos < len(out):
            upper = out[pos].upper()
            # Only where upper case keeps the length and, for a one-byte field's
            # character, one byte ('ß' would become 'SS', 'ÿ' 'Ÿ', 'µ' Greek).
            if len(upper) == 1 and (ord(upper) <= 0xFF or ord(out[pos]) > 0xFF):
                out[pos] = upper
        pos += 2 if ord(char) > 0xFFFF else 1
    return "".join(out)
