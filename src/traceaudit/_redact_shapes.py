"""Pseudonyms that keep the shape of what they replace.

A redacted trace should still *look* like the original to someone reading it: uv's
``.tmpcUIakH`` stays a ``.tmp`` name of the same length, a GUID stays a GUID, a cache hash
stays hex of the same length and case, a SID keeps its ``S-1-5-21-`` authority and its RID
(``-1001`` says "first local user", not who), an IPv4 address stays an address. Each maker
here is ``make(lower, attempt) -> str`` for :meth:`Pseudonyms.assign`, so the same
lower-cased original always gets the same pseudonym and a collision re-derives one of the
same shape with the next ``attempt``.

Also here: the regular expressions that *find* SIDs, e-mail addresses and IP addresses in
text, shared by discovery and rewriting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from traceaudit._redact_keys import Pseudonyms

__all__ = [
    "EMAIL",
    "IPV4",
    "IPV6_CANDIDATE",
    "SID",
    "generated_shape",
    "email_maker",
    "ip_maker",
    "is_special_ip",
    "sid_maker",
    "valid_ipv6",
]

Maker = Callable[[str, int], str]

SID = re.compile(r"(?<![\w-])(?:S-1-5-21(?:-\d{1,10}){3}|S-1-12-1(?:-\d{1,10}){4})(?!\d)", re.I)
"""The identifying part of a SID: a machine or domain (``S-1-5-21-a-b-c``; the RID after
it is kept) or an Azure AD user (``S-1-12-1-a-b-c-d``). Well-known SIDs (``S-1-5-18``)
identify no one and are not matched."""

EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
IPV6_CANDIDATE = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")

_TMP = re.compile(r"(\.tmp|tmp|~df|~wr[a-z]|_mei|\$tmp)([A-Za-z0-9_]{3,})(\.tmp)?", re.I)
_GUID = re.compile(
    r"(\{?)([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})(\}?)"
    r"((?:\.[A-Za-z0-9]{1,12})*)"
)
_HEX = re.compile(r"([0-9A-Fa-f]*\d[0-9A-Fa-f]*)((?:\.[A-Za-z0-9]{1,12})*)")
_DIGITS = re.compile(r"(\d{5,})((?:\.[A-Za-z0-9]{1,12})*)")
_HEXCHARS = "0123456789abcdef"
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def _hex_body(body: str, data: bytes) -> str:
    """Random hex of ``body``'s length; upper case when ``body`` is."""
    out = "".join(_HEXCHARS[b % 16] for b in data[: len(body)])
    letters = [c for c in body if c.isalpha()]
    return out.upper() if letters and all(c.isupper() for c in letters) else out


def _mixed_body(body: str, data: bytes) -> str:
    """Digit for digit, letter for letter (same case), anything else kept."""
    out = []
    for c, b in zip(body, data, strict=False):
        if c.isdigit():
            out.append(str(b % 10))
        elif c.isascii() and c.isalpha():
            letter = _LOWER[b % 26]
            out.append(letter.upper() if c.isupper() else letter)
        else:
            out.append(c)
    return "".join(out)


def generated_shape(pseudo: Pseudonyms, name: str) -> Maker | None:
    """A shape-keeping maker when ``name`` is a generated name, else None.

    Generated names: temp names (``.tmpXXXXXX``, ``tmpa1b2c3d4``, ``~DF1A2B.TMP``,
    ``_MEI12345``), GUIDs (``{…}`` optional, extensions kept), hex hashes of 8+ digits with
    at least one decimal digit, and numbers of 5+ digits.
    """
    if m := _TMP.fullmatch(name):
        prefix, body, ext = m.group(1), m.group(2), m.group(3) or ""

        def tmp(lower: str, attempt: int) -> str:
            return prefix + _mixed_body(body, pseudo.stream(lower, attempt, len(body))) + ext

        return tmp
    if m := _GUID.fullmatch(name):
        left, guid, right, ext = m.groups()

        def guid_maker(lower: str, attempt: int) -> str:
            digits = guid.replace("-", "")
            fresh = _hex_body(digits, pseudo.stream(lower, attempt, 32))
            parts, at = [], 0
            for size in (8, 4, 4, 4, 12):
                parts.append(fresh[at : at + size])
                at += size
            return left + "-".join(parts) + right + ext

        return guid_maker
    if (m := _HEX.fullmatch(name)) and len(m.group(1)) >= 8 and not m.group(1).isdigit():
        body, ext = m.groups()

        def hex_maker(lower: str, attempt: int) -> str:
            return _hex_body(body, pseudo.stream(lower, attempt, len(body))) + ext

        return hex_maker
    if m := _DIGITS.fullmatch(name):
        body, ext = m.groups()

        def digits(lower: str, attempt: int) -> str:
            data = pseudo.stream(lower, attempt, len(body))
            first = str(1 + data[0] % 9)  # no leading zero: stays the same kind of number
            return first + "".join(str(b % 10) for b in data[1:]) + ext

        return digits
    return None


def sid_maker(pseudo: Pseudonyms, sid: str) -> Maker:
    """``S-1-5-21-a-b-c`` → ``S-1-5-21-x-y-z`` (ten-digit-ish sub-authorities, as Windows
    generates them); ``S-1-12-1-a-b-c-d`` likewise with four."""
    parts = sid.split("-")
    head, count = "-".join(parts[:4]), len(parts) - 4

    def make(lower: str, attempt: int) -> str:
        data = pseudo.stream(lower, attempt, 4 * count)
        numbers = [
            1_000_000_000 + int.from_bytes(data[4 * i : 4 * i + 4], "big") % 3_000_000_000
            for i in range(count)
        ]
        return head + "".join(f"-{n}" for n in numbers)

    return make


def is_special_ip(text: str) -> bool:
    """Addresses that identify no one: unspecified, loopback, broadcast, multicast."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return True
    return bool(
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or (address.version == 4 and str(address) == "255.255.255.255")
    )


def valid_ipv6(text: str) -> bool:
    """A candidate from :data:`IPV6_CANDIDATE` that really is an IPv6 address (``::`` or
    all eight groups; times like ``1:18:10`` are not)."""
    if "::" not in text and text.count(":") != 7:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def ip_maker(pseudo: Pseudonyms, address: str) -> Maker:
    """IPv4 → an address in 10.0.0.0/8; IPv6 → one in the unique-local ``fd00::/8``."""
    version6 = ":" in address

    def make(lower: str, attempt: int) -> str:
        data = pseudo.stream(lower, attempt, 16)
        if version6:
            return str(ipaddress.IPv6Address(bytes([0xFD]) + data[1:16]))
        return f"10.{data[0]}.{data[1]}.{1 + data[2] % 254}"

    return make


def email_maker(pseudo: Pseudonyms) -> Maker:
    """``email_3f2a9c81@example.invalid`` (two hex digits longer per collision)."""

    def make(lower: str, attempt: int) -> str:
        return f"email_{pseudo.hexdigest(lower)[: 8 + 2 * attempt]}@example.invalid"

    return make
