"""Rewriting paths one component at a time, so the analysis still sees the same files.

The analysis compares paths lower-cased and asks "is A below B?". Both answers survive
because every component is rewritten on its own, by a function of the lower-cased
component (and of where it stands), and different components never get the same
pseudonym: ``C:\\Users\\Bob\\X`` and ``c:\\users\\bob\\x`` become the same path modulo
case, ``…\\numpy-1.26.4`` stays the parent of ``…\\numpy-1.26.4\\core``, and the sibling
``…\\numpy-1.26.4.tar.gz`` stays a sibling.

What each component becomes:

* under ``<drive>:\\Windows`` and ``Program Files`` (the *system zone*, minus
  ``Windows\\Temp`` and service profiles): kept, secrets inside replaced (a dotted quad
  there is a version, ``Modules\\PackageManagement\\1.0.0.1``, not an address);
* the name after ``\\Users\\`` or ``\\Documents and Settings\\``: the user's pseudonym;
* an IP address (``\\\\10.1.2.3\\share``, ``C:\\backups\\10.1.2.3``; see
  :func:`~._redact_shapes.find_addresses`): an address of the same kind;
* well-known names (:mod:`._redact_vocab`): kept;
* generated names (temp names, GUIDs, hex hashes): a pseudonym of the same shape;
* anything else (class ``path``): ``name_3f2a9c81d0`` plus the original extension.

Registry paths keep their keys (software chose them); SIDs, addresses
(``Terminal Server Client\\Servers\\10.1.2.3``), secrets inside them and embedded file
paths (``…\\Store\\C:\\Users\\bob\\app.exe``) are rewritten. Network
"paths" (``DESKTOP-FR51PUU:60791 -> 10.0.0.5:https``) get host and IP pseudonyms.
"""

from __future__ import annotations

import re

from traceaudit.redaction.context import Context
from traceaudit.redaction.shapes import (
    EMAIL,
    IPV4,
    SID,
    find_addresses,
    ipv6_literal,
    is_special_ip,
    valid_ipv6,
)
from traceaudit.redaction.vocab import ACCOUNTS, SYSTEM_ENV_ROOTS, is_vocab, split_ext

__all__ = [
    "REGISTRY_ROOT",
    "rewrite_component",
    "rewrite_host",
    "rewrite_location",
    "rewrite_path",
    "rewrite_process",
    "rewrite_registry",
]

REGISTRY_ROOT = re.compile(r"(?:HKLM|HKCU|HKCR|HKU|HKCC|HKEY_[A-Z_]+|\\REGISTRY)(?=\\|$)", re.I)
_NETWORK = re.compile(r"(?P<a>.+?):(?P<ap>[\w-]+) -> (?P<b>.+?):(?P<bp>[\w-]+)")
_DRIVE = re.compile(r"[A-Za-z]:")
_WILDCARDS = re.compile(r"([*?<>]+)")
_SID_NAME = re.compile(rf"({SID.pattern})(-\d+)?((?:_classes)?)", re.I)
_SYSTEM_TOP = frozenset(
    ["windows", "winnt", "program files", "program files (x86)", "program files (arm)"]
    + ["progra~1", "progra~2", "progra~3", "window~1"]
)
_NOT_SYSTEM = (
    ("windows", "temp"),
    ("winnt", "temp"),
    ("windows", "serviceprofiles"),
    ("windows", "system32", "config", "systemprofile"),
    ("windows", "syswow64", "config", "systemprofile"),
)
_USER_TOP = frozenset(["users", "documents and settings"])
_LOCAL_HOSTS = frozenset(["localhost", "*", ".", "?", "", "tsclient", "wsl$", "wsl.localhost"])
_LOCAL_SUFFIXES = frozenset(["localdomain", "local", "lan", "home", "internal", "home.arpa"])
_ADMIN_SHARE = re.compile(r"[A-Za-z]\$|admin\$|ipc\$|print\$|sysvol|netlogon", re.I)
_IPV6_LITERAL = ".ipv6-literal.net"


def rewrite_location(ctx: Context, value: str) -> str:
    """A Path-column value: a file path, a registry path, or a network endpoint pair."""
    if not value:
        return value
    if REGISTRY_ROOT.match(value):
        return rewrite_registry(ctx, value)
    if " -> " in value and (m := _NETWORK.fullmatch(value)):
        a = rewrite_host(ctx, m.group("a"), "computer")
        b = rewrite_host(ctx, m.group("b"), "computer")
        ctx.public(m.group("ap"))  # ports and service names (https, domain, llmnr)
        ctx.public(m.group("bp"))
        return f"{a}:{m.group('ap')} -> {b}:{m.group('bp')}"
    return rewrite_path(ctx, value)


def rewrite_host(ctx: Context, host: str, cls: str) -> str:
    """A host name or address: IPs get IP pseudonyms; ``pc1.corp.example.com`` becomes
    ``host_….domain_…`` (the first label is the computer, the rest its domain)."""
    lower = host.lower()
    if lower in _LOCAL_HOSTS:
        return host
    bare = host.strip("[]")
    if IPV4.fullmatch(bare) or (":" in bare and valid_ipv6(bare)):
        return host if is_special_ip(bare) else host.replace(bare, ctx.structural("ip", bare))
    if lower.endswith(_IPV6_LITERAL) and (address := ipv6_literal(host.split(".")[0])):
        # \\fe80--1s4.ipv6-literal.net\share: Windows' spelling of [fe80::1%4]
        if is_special_ip(address):
            return host
        fresh = ctx.structural("ip", address)
        if fresh == address:  # kept (--keep ip), or discovering
            return host
        label = host.split(".")[0]
        zone = label[len(label.lower().partition("s")[0]) :]
        return fresh.replace(":", "-") + zone + host[len(label) :]
    first, dot, suffix = host.partition(".")
    out = ctx.structural(cls, first)
    if dot:
        rest = suffix if suffix.lower() in _LOCAL_SUFFIXES else ctx.structural("domain", suffix)
        out += dot + rest
    return out


def rewrite_registry(ctx: Context, value: str) -> str:
    """Keys kept, secrets in them replaced, embedded file paths rewritten as paths."""
    parts = value.split("\\")
    out: list[str] = []
    for index, part in enumerate(parts):
        if index and (_DRIVE.fullmatch(part) or (not part and index + 1 < len(parts))):
            # a value named after a file: …\Store\C:\Users\… or …\1001\\Device\…
            out.append(rewrite_path(ctx, "\\".join(parts[index:])))
            break
        _scan(ctx, part)
        ctx.public(part)
        out.append(ctx.identity(part) or ctx.substitute(part))
    return "\\".join(out)


def rewrite_path(ctx: Context, path: str, sep: str = "\\") -> str:
    """A file path in any of the forms Procmon shows (drive, UNC, ``\\\\?\\``, ``\\??\\``,
    ``\\Device\\…``, rooted without a drive, relative, ``%SystemRoot%\\…``)."""
    if not path:
        return path
    if path.startswith(sep * 2):
        rest = path[2:]
        if rest[:2] in ("?" + sep, "." + sep):
            head, tail = path[:4], path[4:]
            if tail[:4].lower() == "unc" + sep:
                return head + tail[:4] + _unc(ctx, tail[4:], sep)
            return head + rewrite_path(ctx, tail, sep)
        return sep * 2 + _unc(ctx, rest, sep)
    parts = path.split(sep)
    lower0 = parts[0].lower()
    if lower0 == "" and len(parts) > 2:
        second = parts[1].lower()
        if second == "??":
            return sep + "??" + sep + rewrite_path(ctx, sep.join(parts[2:]), sep)
        if second == "device" and len(parts) > 3:
            if parts[2].lower() == "mup":
                return _mup(ctx, parts, sep)
            return sep.join(parts[:3] + _tail(ctx, parts[3:], rooted=True))
        if second == "systemroot":
            return sep.join(parts[:2] + _tail(ctx, parts[2:], rooted=True, system=True))
    if lower0 == "" or _DRIVE.fullmatch(parts[0]):
        return sep.join(parts[:1] + _tail(ctx, parts[1:], rooted=True))
    if lower0.startswith("%") and lower0.endswith("%") and len(lower0) > 2:
        system = lower0 in SYSTEM_ENV_ROOTS
        return sep.join(parts[:1] + _tail(ctx, parts[1:], rooted=False, system=system))
    return sep.join(_tail(ctx, parts, rooted=False))


def _unc(ctx: Context, rest: str, sep: str) -> str:
    """``server\\share\\…`` (after the leading ``\\\\``)."""
    parts = rest.split(sep)
    server = rewrite_host(ctx, parts[0], "unc") if parts[0] else parts[0]
    if len(parts) == 1:
        return server
    share = parts[1]
    if _ADMIN_SHARE.fullmatch(share):
        return sep.join([server, share, *_tail(ctx, parts[2:], rooted=True)])
    return sep.join([server, *_tail(ctx, parts[1:], rooted=False)])


def _mup(ctx: Context, parts: list[str], sep: str) -> str:
    """``\\Device\\Mup\\[;LanmanRedirector\\;Z:…\\]server\\share\\…``."""
    index = 3
    while index < len(parts) and parts[index].startswith(";"):
        index += 1
    return sep.join(parts[:index]) + sep + _unc(ctx, sep.join(parts[index:]), sep)


def _zone(lowers: list[str]) -> tuple[bool, int]:
    """(in the system zone, number of leading well-known components of an excluded one)."""
    if not lowers:
        return False, 0
    if lowers[0] in _SYSTEM_TOP:
        for excluded in _NOT_SYSTEM:
            if tuple(lowers[: len(excluded)]) == excluded:
                return False, len(excluded)
        return True, 0
    return lowers[0] == "programdata" and len(lowers) > 1 and lowers[1] == "microsoft", 0


def _tail(ctx: Context, names: list[str], *, rooted: bool, system: bool = False) -> list[str]:
    """Rewrite the components below a root."""
    lowers = [n.lower() for n in names]
    well_known = 0
    if rooted and not system:
        system, well_known = _zone(lowers)
    user_slot = 1 if rooted and lowers and lowers[0] in _USER_TOP else -1
    out: list[str] = []
    last = len(names) - 1
    for index, name in enumerate(names):
        if system:
            if ctx.discovering and index == last and lowers[index].endswith(".exe"):
                ctx.system_images.update((lowers[index], lowers[index][:-4]))
            out.append(_kept(ctx, name))
        elif index < well_known:  # Windows\Temp, Windows\ServiceProfiles…
            ctx.public(name)  # kept as it is here: not a secret elsewhere either
            out.append(name)
        elif index == user_slot and name and lowers[index] not in ACCOUNTS:
            out.append(ctx.structural("user", name))
        else:
            out.append(rewrite_component(ctx, name))
    return out


def _scan(ctx: Context, text: str, *, addresses: bool = True) -> None:
    """Note SIDs, e-mail and IP addresses inside a name (discovery only; no addresses in
    the system zone, where a dotted quad is a version)."""
    if not ctx.discovering or not text:
        return
    if "-" in text:
        for m in SID.finditer(text):
            ctx.note("sid", m.group(0))
    if "@" in text:
        for m in EMAIL.finditer(text):
            ctx.note("email", m.group(0))
    if addresses and ("." in text or ":" in text):
        for found in find_addresses(text):
            ctx.note("ip", found)


def _kept(ctx: Context, name: str) -> str:
    """A name in the system zone: kept, secrets inside it replaced."""
    got = ctx.memo.get(("kept", name))
    if got is None:
        _scan(ctx, name, addresses=False)
        ctx.public(name)
        got = ctx.identity(name) or ctx.substitute(name)
        ctx.memo[("kept", name)] = got
    return got


def rewrite_component(ctx: Context, name: str) -> str:
    """One file or folder name outside the system zone (see the module docstring)."""
    if not name:
        return name
    got = ctx.memo.get(("name", name))
    if got is None:
        got = _component(ctx, name)
        ctx.memo[("name", name)] = got
    return got


def _component(ctx: Context, name: str) -> str:
    identity = ctx.identity(name)
    if identity is not None:
        return identity
    _scan(ctx, name)
    lower = name.lower()
    if "path" in ctx.keep or is_vocab(lower, ctx.system_images):
        ctx.public(name)
        return ctx.substitute(name)
    if (sid := _SID_NAME.fullmatch(name)) is not None:
        return ctx.structural("sid", sid.group(1)) + sid.group(2) + sid.group(3)
    if "*" in name or "?" in name:  # a search pattern: resources*.pri, gcc.*
        return "".join(_pattern_piece(ctx, piece) for piece in _WILDCARDS.split(name))
    if ":" in name:  # alternate data stream: file.txt:Zone.Identifier
        base, colon, stream = name.partition(":")
        return rewrite_component(ctx, base) + colon + ctx.substitute(stream)
    if name.startswith("~$") and len(name) > 2:  # Office owner file of name
        return "~$" + rewrite_component(ctx, name[2:])
    stem, ext = split_ext(name)
    if ext and (identity := ctx.identity(stem)) is not None:  # 10.1.2.3.log, bob.txt
        return identity + ctx.substitute(ext)
    shaped = ctx.shaped(name)
    return shaped if shaped is not None else ctx.name(name)


def _pattern_piece(ctx: Context, piece: str) -> str:
    """A literal piece of a search pattern (wildcards and extensions kept)."""
    if not piece or _WILDCARDS.fullmatch(piece) or piece == ".":
        return piece
    if piece.startswith(".") and len(piece) <= 6:  # an extension: *.pri
        return ctx.substitute(piece)
    if piece.endswith("."):
        return _pattern_piece(ctx, piece[:-1]) + "."
    return rewrite_component(ctx, piece)


def rewrite_process(ctx: Context, name: str) -> str:
    """A Process Name: kept for well-known software, else rewritten like the image's file
    name (so ``banload1.exe`` matches the last component of its image path)."""
    if not name or is_vocab(name.lower(), ctx.system_images):
        ctx.public(name)
        return name
    return rewrite_component(ctx, name)
