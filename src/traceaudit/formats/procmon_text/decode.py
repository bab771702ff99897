"""Turn trace bytes into text: UTF-8 first, then the legacy Windows code pages.

Procmon itself writes UTF-8 with a BOM. Files re-saved by Excel come back in the ANSI code
page of the machine (cp932 in Japan, cp1251 in Russia, cp1252 in Western Europe) or, with
"Unicode Text", as UTF-16. There is no label in the file, so the code page is guessed:

1. a BOM decides (UTF-8, UTF-16 LE/BE);
2. strict UTF-8 that decodes is UTF-8;
3. cp932 when it decodes (nearly) cleanly and the text has Japanese kana;
4. cp1251 when the non-ASCII bytes come in runs of mostly lower-case letters (Cyrillic
   words);
5. GBK when the non-ASCII bytes are GB2312-shaped pairs that decode to Chinese;
6. otherwise cp1252, which decodes almost any byte.

A few undecodable bytes are tolerated (Excel truncates long cells in the middle of a
double-byte character); they become U+FFFD and the caller reports how many.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from traceaudit.display import plural

__all__ = ["Decoded", "decode", "decode_head", "head_is_utf8", "looks_binary", "encoding_note"]

_LABELS = {
    "utf-8": "UTF-8",
    "utf-16": "UTF-16",
    "cp932": "cp932 (Japanese Shift-JIS)",
    "gbk": "GBK (Simplified Chinese)",
    "cp1251": "cp1251 (Cyrillic)",
    "cp1252": "cp1252 (Western European)",
}

_KANA = re.compile(r"[\u3040-\u30ff]")
_HALFWIDTH_KANA = re.compile(r"[\uff61-\uff9f]")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_CYRILLIC_RUN = re.compile(rb"[\xc0-\xff]{3,}")
_CYRILLIC_LETTER = re.compile(rb"[\xc0-\xff]")
_CYRILLIC_LOWER = re.compile(rb"[\xe0-\xff]")
_GB2312_PAIRS = re.compile(rb"(?:[\xa1-\xf7][\xa1-\xfe])+")
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


@dataclass(frozen=True)
class Decoded:
    """Text decoded from bytes, the codec that was used and how many bytes it replaced."""

    text: str
    encoding: str
    replaced: int = 0
    guessed: bool = False

    @property
    def label(self) -> str:
        """Human name of the encoding, for warnings."""
        return _LABELS.get(self.encoding, self.encoding)


def _tolerance(size: int) -> int:
    """How many undecodable bytes still count as "decodes cleanly"."""
    return max(4, size // 20_000)


def decode(data: bytes) -> Decoded:
    """Decode a whole trace; see the module docstring for the order of guesses."""
    if data.startswith(codecs.BOM_UTF8):
        return _decode_unicode(data[3:], "utf-8", "utf-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_unicode(data, "utf-16", "utf-16")
    if _looks_utf16(data):
        return _decode_unicode(data, "utf-16-le", "utf-16", guessed=True)
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    return _decode_legacy(data)


def _decode_unicode(data: bytes, codec: str, encoding: str, guessed: bool = False) -> Decoded:
    """Text in a known Unicode encoding; undecodable bytes become U+FFFD and are counted
    (a U+FFFD the file itself holds, as Procmon writes for names it could not read, is
    not counted as replaced)."""
    try:
        text = data.decode(codec)
        replaced = 0
    except UnicodeDecodeError:
        text = data.decode(codec, errors="replace")
        replaced = text.count("\ufffd")
    return Decoded(text.lstrip("\ufeff"), encoding, replaced, guessed=guessed)


def _decode_legacy(data: bytes) -> Decoded:
    limit = _tolerance(len(data))
    japanese = data.decode("cp932", errors="replace")
    bad = japanese.count("\ufffd")
    if bad <= limit:
        kana = len(_KANA.findall(japanese))
        if kana and kana >= len(_HALFWIDTH_KANA.findall(japanese)):
            return Decoded(japanese, "cp932", bad, guessed=True)
    high = len(_HIGH_BYTE.findall(data))
    if high and _looks_cyrillic(data, high):
        return Decoded(data.decode("cp1251", errors="replace"), "cp1251", guessed=True)
    paired = sum(len(run) for run in _GB2312_PAIRS.findall(data))
    if high and paired * 10 >= high * 8:
        chinese = data.decode("gbk", errors="replace")
        bad = chinese.count("\ufffd")
        if bad <= limit and _CJK.search(chinese):
            return Decoded(chinese, "gbk", bad, guessed=True)
    text = data.decode("cp1252", errors="replace")
    return Decoded(text, "cp1252", text.count("\ufffd"), guessed=True)


def _looks_cyrillic(data: bytes, high: int) -> bool:
    """cp1251 Russian: high bytes come in word-long runs, mostly lower-case letters.

    (Lower case а–я is 0xE0–0xFF; accented Latin in cp1252 comes one letter at a time,
    and GBK's double bytes spread evenly over 0xA1–0xFE.)
    """
    in_runs = sum(len(run) for run in _CYRILLIC_RUN.findall(data))
    letters = len(_CYRILLIC_LETTER.findall(data))
    lower = len(_CYRILLIC_LOWER.findall(data))
    return in_runs * 2 > high and lower * 10 > letters * 6


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 LE without a BOM: text where every other byte is NUL."""
    sample = data[:4096]
    if len(sample) < 16:
        return False
    odd_nuls = sample[1::2].count(0)
    even_nuls = sample[0::2].count(0)
    return odd_nuls > len(sample) // 4 and even_nuls < len(sample) // 64


def decode_head(head: bytes) -> str:
    """Best-effort text of the first bytes of a file, for sniffing.

    The head may end in the middle of a multi-byte character; that tail is dropped.
    """
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(head):
        even = head[: len(head) - len(head) % 2]
        return even.decode("utf-16", errors="replace").lstrip("\ufeff")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:
            return head[: exc.start].decode("utf-8")
    return _decode_legacy(head).text


def head_is_utf8(head: bytes) -> bool:
    """True when the head is UTF-8 (with or without BOM), allowing a cut character.

    NUL bytes are valid UTF-8 but mean UTF-16 (or binary) here.
    """
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def looks_binary(head: bytes) -> bool:
    """True for content that is not text: NUL bytes (outside UTF-16) or many controls."""
    if not head:
        return False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(head):
        return False
    if b"\x00" in head:
        return True
    return len(_CONTROL.findall(head)) * 20 > len(head)


def encoding_note(name: str, decoded: Decoded) -> str | None:
    """The warning to show when the text was not clean UTF-8, else None."""
    if decoded.encoding == "utf-8" and not decoded.replaced:
        return None
    if decoded.encoding == "utf-8":
        note = f"{name}: damaged UTF-8"
    else:
        guess = " (guessed from the content)" if decoded.guessed else ""
        note = f"{name}: not UTF-8; read as {decoded.label}{guess}"
    if decoded.replaced:
        note += f"; {plural(decoded.replaced, 'undecodable byte')} replaced with U+FFFD"
    return note + "."
