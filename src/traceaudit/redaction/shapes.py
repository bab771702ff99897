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

**Address or version?** Four numbers and three dots are an address or a version, and
:func:`find_addresses` has to decide which. A leaked address costs more than a hidden
version, so the rule leans towards address:

* *never an address*: a part above 255, three parts or five (``10.0.19041.1``,
  ``v4.0.30319``, ``1.2.3.4.5``), or four glued to a letter, digit, ``_`` or dot on
  either side (``v4.0.0.0``, ``x.1.2.3.4``, ``GAC_MSIL\\…\\4.0.0.0__b77a…``);
* *an address* whenever an IP context says so: after ``\\\\`` (UNC), ``//``
  (``http://``), ``@``, ``->`` or a word naming an address (``IP``, ``Address``, ``addr``,
  ``Server``, ``Host``, ``Gateway``, ``DNS``, ``Proxy``, ``Data:``, ``--server``), or
  followed by ``:port`` or ``/prefix``;
* *a version* otherwise when it reads as one: glued to a name by ``-``, ``+`` or ``~``
  (``numpy-1.2.3.4``, ``~~10.0.1.5.cat``), after a version keyword (``Version=4.0.0.0``,
  ``FileVersion: …``), or ending in ``.0.0`` (``4.0.0.0``, ``15.0.0.0``: assembly and
  Office versions; as an address it would name a network, not a host);
* *an address* in every other case, alone included (``10.1.2.3``, ``C:\\backups\\10.1.2.3``).

A whole path component under ``Windows`` or ``Program Files``
(``Modules\\PackageManagement\\1.0.0.1``) is a version too: software chose those names,
and the paths module looks for no address there. An address found anywhere is then
replaced wherever it stands as a word, versions included. Addresses that identify no one
(unspecified, loopback, multicast, broadcast, reserved, the documentation ranges) are
kept as they are; the others become an address of the same kind (:func:`ip_maker`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from traceaudit.redaction.keys import Pseudonyms

__all__ = [
    "EMAIL",
    "IPV4",
    "IPV6_CANDIDATE",
    "SID",
    "generated_shape",
    "email_maker",
    "find_addresses",
    "ip_maker",
    "ipv6_literal",
    "is_special_ip",
    "serial_maker",
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


_V4_KEPT = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # this network, unspecified
        "127.0.0.0/8",  # loopback
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "192.0.2.0/24",  # documentation (TEST-NET-1..3)
        "198.51.100.0/24",
        "203.0.113.0/24",
    )
)
_V4_BLOCKS = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "10.0.0.0/8",  # private
        "172.16.0.0/12",  # private
        "192.168.0.0/16",  # private
        "169.254.0.0/16",  # link-local
        "100.64.0.0/10",  # carrier-grade NAT
    )
)
_V4_NOT_PUBLIC = (
    _V4_KEPT
    + _V4_BLOCKS
    + tuple(
        ipaddress.IPv4Network(n)
        for n in ("192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15")  # IETF, relay, benchmark
    )
)
_V6_DOCUMENTATION = ipaddress.IPv6Network("2001:db8::/32")
_IP_BEFORE = re.compile(
    r"""(?ix)(?:
        \\\\ | // | @ | ->\s* | <-\s*
      | (?:ip|ipv4|addr|address|addresses|server|servers|host|hostname|gateway|dns|proxy
         |peer|remote|nameserver|data)\s*[:=]?\s*
    )$"""
)
_IP_AFTER = re.compile(r":\w|/\d{1,2}(?!\d)")
_VERSION_BEFORE = re.compile(r"(?i)(?:version|\b(?:ver|v|rev|revision|build|release))\s*[:=]?\s*$")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_special_ip(text: str) -> bool:
    """Addresses that identify no one, kept as they are: unspecified, loopback, multicast,
    broadcast, reserved and documentation addresses (and anything that does not parse)."""
    address = _address(text)
    if address is None:
        return True
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return is_special_ip(str(mapped))
        return bool(
            address.is_unspecified
            or address.is_loopback
            or address.is_multicast
            or address in _V6_DOCUMENTATION
        )
    return any(address in network for network in _V4_KEPT)


def _ipv4_is_address(text: str, start: int, end: int) -> bool:
    """Whether the dotted quad ``text[start:end]`` is an address (module docstring)."""
    found = text[start:end]
    if is_special_ip(found):
        return False
    before = text[max(0, start - 40) : start]
    if _IP_BEFORE.search(before) or _IP_AFTER.match(text, end):
        return True
    if before.endswith(("-", "+", "~")) or _VERSION_BEFORE.search(before):
        return False
    return not found.endswith(".0.0")


def find_addresses(text: str) -> Iterator[str]:
    """The IPv4 and IPv6 addresses in ``text`` that identify something (see the module
    docstring for what counts as an address rather than a version)."""
    if "." in text:
        for m in IPV4.finditer(text):
            if _ipv4_is_address(text, m.start(), m.end()):
                yield m.group(0)
    if "::" in text or text.count(":") >= 7:
        for m in IPV6_CANDIDATE.finditer(text):
            found = m.group(0)
            if valid_ipv6(found) and not is_special_ip(found):
                yield found


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


def ipv6_literal(label: str) -> str | None:
    """The address in a Windows UNC IPv6 literal label (``fe80--1s4`` of
    ``fe80--1s4.ipv6-literal.net``: ``-`` for ``:``, ``s`` before the zone), or None."""
    address, _, _zone = label.lower().partition("s")
    address = address.replace("-", ":")
    return address if ":" in address and valid_ipv6(address) else None


def _v4_in(network: ipaddress.IPv4Network, data: bytes, last: int) -> str:
    """A keyed address in ``network``; the last octet kept when it is 0 or 255 (a network
    or broadcast address stays one), else 1-254."""
    size = network.num_addresses
    value = int.from_bytes(data[:4], "big") % size
    base = int(network.network_address) + value
    octets = list(ipaddress.IPv4Address(base).packed)
    if size > 256:
        octets[3] = last if last in (0, 255) else 1 + data[4] % 254
    if network.network_address.packed[:2] == b"\xa9\xfe":  # 169.254.1.0 - 169.254.254.255
        octets[2] = 1 + data[5] % 254
    return ".".join(str(o) for o in octets)


def _v4_pseudonym(address: ipaddress.IPv4Address, data: bytes) -> str:
    last = address.packed[3]
    for network in _V4_BLOCKS:
        if address in network:
            return _v4_in(network, data, last)
    # public (or another unusual range): a keyed public address; 85 % of 32-bit values
    # are public, so one of the ten tries is (the fixed one after them is public too)
    for at in range(0, 60, 6):
        candidate = ipaddress.IPv4Address(bytes(data[at : at + 4]))
        if not any(candidate in network for network in _V4_NOT_PUBLIC):
            octets = list(candidate.packed)
            octets[3] = last if last in (0, 255) else 1 + data[at + 4] % 254
            return ".".join(str(o) for o in octets)
    return f"{1 + data[60] % 9}.{data[61]}.{data[62]}.{1 + data[63] % 254}"


def ip_maker(pseudo: Pseudonyms, address: str) -> Maker:
    """A keyed address of the same kind: a private IPv4 address stays in its private block
    (10/8, 172.16/12, 192.168/16), link-local in 169.254/16, carrier-grade NAT in
    100.64/10, a public one becomes another public address; IPv6 link-local stays in
    ``fe80::/64``, unique-local goes to ``fd00::/8``, IPv4-mapped stays IPv4-mapped and
    global addresses go to the documentation prefix ``2001:db8::/32``."""
    parsed = _address(address)

    def make(lower: str, attempt: int) -> str:
        data = pseudo.stream(lower, attempt, 64)
        if parsed is None or parsed.version == 4:
            v4 = parsed if parsed is not None else ipaddress.IPv4Address("8.8.8.8")
            return _v4_pseudonym(v4, data)
        if parsed.ipv4_mapped is not None:
            return "::ffff:" + _v4_pseudonym(parsed.ipv4_mapped, data)
        if parsed.is_link_local:
            return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + data[:8]))
        if parsed.is_private or parsed.is_site_local:
            return str(ipaddress.IPv6Address(b"\xfd" + data[:15]))
        return str(ipaddress.IPv6Address(b"\x20\x01\x0d\xb8" + data[:12]))

    return make


def serial_maker(pseudo: Pseudonyms) -> Maker:
    """A volume serial number (``1A2B-3C4D``): hex of the same shape."""

    def make(lower: str, attempt: int) -> str:
        digits = pseudo.stream(lower, attempt, 8).hex().upper()[:8]
        return digits[:4] + "-" + digits[4:]

    return make


def email_maker(pseudo: Pseudonyms) -> Maker:
    """``email_3f2a9c81@example.invalid`` (two hex digits longer per collision)."""

    def make(lower: str, attempt: int) -> str:
        return f"email_{pseudo.hexdigest(lower)[: 8 + 2 * attempt]}@example.invalid"

    return make
