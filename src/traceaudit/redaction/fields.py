"""Rewriting the text fields of a Procmon event: accounts, command lines, environment
blocks, Detail and free text.

Each function takes the :class:`~._redact_context.Context` and one raw field value and
returns the value to write. They keep everything that is not a secret byte for byte
(separators, quoting, spacing, Detail keys), because the readers parse these fields:
``ShareMode: Read, Write`` and ``FileName: C:\\…`` must still parse after redaction.

* accounts (``User`` column, ``Impersonating:``): ``DOMAIN\\user`` → ``host_…\\user_…``;
  built-in principals (``NT AUTHORITY\\SYSTEM``) kept;
* command lines: the executable is a path (well-known ones kept), options (``-m``,
  ``--no-cache``, ``/c``) are kept, paths are paths, other arguments become ``arg_…``
  (class ``cmdline``);
* environment blocks (``Process Start``): variable names kept; ``USERNAME``,
  ``COMPUTERNAME``, ``USERDOMAIN``… get their class pseudonyms, path values are paths,
  values of unknown variables become ``env_…`` (class ``env``);
* Detail: ``FileName:`` and ``Name:`` paths, ``Impersonating:``, the command line,
  current directory and environment of ``Process Start``, directory listings of
  ``QueryDirectory`` (names rewritten as children of the row's Path);
* free text: paths found inside it are rewritten as paths, everything else has its
  secrets replaced.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from traceaudit.redaction.context import Context
from traceaudit.redaction.paths import (
    REGISTRY_ROOT,
    rewrite_host,
    rewrite_location,
    rewrite_path,
    rewrite_process,
    rewrite_registry,
)
from traceaudit.redaction.shapes import EMAIL, SID, find_addresses
from traceaudit.redaction.vocab import (
    AUTHORITIES,
    COMPANIES,
    SAFE_ENV,
    is_number_or_version,
    is_vocab,
)

__all__ = [
    "rewrite_account",
    "rewrite_cmdline",
    "rewrite_company",
    "rewrite_detail",
    "rewrite_env",
    "rewrite_text",
]

_STOP = r"[^\t\r\n\",;|<>*?]*"
_TEXT_PATH = re.compile(
    rf"""(?ix)
    (?<![\w\\%])(?:
        [a-z]:\\{_STOP}
      | \\\\[^\\\s\",;|<>*?]+\\{_STOP}
      | \\(?:users|documents\ and\ settings|device|registry|systemroot|windows|programdata
            |program\ files[^\\]*|\?\?)\\{_STOP}
      | %[a-z_()0-9]+%\\{_STOP}
      | (?:hklm|hkcu|hkcr|hku|hkcc|hkey_[a-z_]+)\\{_STOP}
    )"""
)
_TOKEN = re.compile(r'(?:[^\s"]+|"[^"]*(?:"|$))+')
_EXE_WITH_SPACES = re.compile(r"[A-Za-z]:\\[^\"\r\n]*?\.(?:exe|com|bat|cmd)(?=\s|$)", re.I)
_OPTION = re.compile(r"(?:--?|/)[A-Za-z][\w.-]{0,39}")
_OPTION_VALUE = re.compile(r"((?:--?|/)[A-Za-z][\w.-]{0,39}[=:])(.*)", re.S)
_INTEGER = re.compile(r"[+-]?\d{1,12}")
_PATHLIKE = re.compile(r"[A-Za-z]:[\\/]|\\|^%[^%\s]+%[\\/]|^\.{1,2}[\\/]")
_ENV_SEPARATOR = re.compile(r"((?:\r\n|\r|\n)?;\t|(?:\r\n|\r|\n)\t)")
_ENV_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\|\\[^\s\\]|%[^%\s]+%[\\/]|\.{1,2}[\\/])")
_PROCESS_START = re.compile(
    r"(?P<head>.*?Command line: )(?P<cmd>.*?)(?P<cwdkey>, Current directory: )(?P<cwd>.*?)"
    r"(?:(?P<envkey>, Environment: )(?P<env>.*))?",
    re.S,
)
_LISTING = re.compile(r"(?:^|, )(Filter|\d+|FileInformationClass): ")
_IMPERSONATING = re.compile(r"(?:^|, )Impersonating: ([^,]*)")
_SERIAL = re.compile(r"(VolumeSerialNumber: )([0-9A-Fa-f]{4}-[0-9A-Fa-f]{4})")
_FLAGS = frozenset(["true", "false", "yes", "no", "on", "off", "none", "null", "auto"])


# --------------------------------------------------------------------------- free text


def _scan(ctx: Context, text: str) -> None:
    """Note SIDs, e-mail and IP addresses in text (discovery only; what is an address
    and what a version: :func:`~._redact_shapes.find_addresses`)."""
    if "-" in text:
        for m in SID.finditer(text):
            ctx.note("sid", m.group(0))
    if "@" in text:
        for m in EMAIL.finditer(text):
            ctx.note("email", m.group(0))
    for found in find_addresses(text):
        ctx.note("ip", found)


def _plain(ctx: Context, text: str) -> str:
    if ctx.discovering:
        _scan(ctx, text)
        return text
    return ctx.substitute(text)


def rewrite_text(ctx: Context, text: str) -> str:
    """Free text: paths inside it rewritten as paths, secrets elsewhere replaced."""
    if not text:
        return text
    if "\\" not in text:
        return _plain(ctx, text)
    out: list[str] = []
    pos = 0
    for m in _TEXT_PATH.finditer(text):
        value = m.group(0).rstrip(" ")
        out.append(_plain(ctx, text[pos : m.start()]))
        if REGISTRY_ROOT.match(value):
            out.append(rewrite_registry(ctx, value))
        else:
            out.append(rewrite_path(ctx, value))
        pos = m.start() + len(value)
    out.append(_plain(ctx, text[pos:]))
    return "".join(out)


# --------------------------------------------------------------------------- accounts


def rewrite_account(ctx: Context, value: str) -> str:
    """``DOMAIN\\user`` (User column, ``Impersonating:``), ``user`` or ``user@domain``."""
    if not value.strip():
        return value
    domain, sep, user = value.rpartition("\\")
    if sep:
        if domain.strip().lower() in AUTHORITIES:
            return value
        return ctx.structural("domain", domain) + sep + _user(ctx, user)
    if EMAIL.fullmatch(value.strip()):
        return ctx.structural("email", value)
    return _user(ctx, value)


def _user(ctx: Context, user: str) -> str:
    if user.endswith("$") and len(user) > 1:  # machine account: COMPUTER$
        return ctx.structural("computer", user[:-1]) + "$"
    return ctx.structural("user", user)


# --------------------------------------------------------------------------- command lines


def rewrite_cmdline(ctx: Context, cmd: str) -> str:
    """A command line, token by token, keeping its spacing and quoting."""
    if not cmd.strip():
        return cmd
    if ctx.discovering:  # addresses in context: --server 10.20.0.0, --version 4.0.0.0
        _scan(ctx, cmd)
    out: list[str] = []
    pos = 0
    lead = len(cmd) - len(cmd.lstrip())
    exe = _EXE_WITH_SPACES.match(cmd, lead)
    if exe is not None:
        out.append(cmd[:lead] + rewrite_path(ctx, exe.group(0)))
        pos = exe.end()
    first = exe is None
    for m in _TOKEN.finditer(cmd, pos):
        out.append(cmd[pos : m.start()])
        token = m.group(0)
        out.append(_quoted(ctx, token, _executable if first else _argument))
        first = False
        pos = m.end()
    out.append(cmd[pos:])
    return "".join(out)


def _quoted(ctx: Context, token: str, rewrite: Callable[[Context, str], str]) -> str:
    """Apply ``rewrite`` to what is inside the quotes of a token (``"a b"``, ``--x="a b"``)."""
    if '"' not in token:
        return rewrite(ctx, token)
    pieces = token.split('"')
    return '"'.join(rewrite(ctx, p) if p else p for p in pieces)


def _executable(ctx: Context, text: str) -> str:
    if _PATHLIKE.search(text):
        return rewrite_path(ctx, text, "\\" if "\\" in text or "/" not in text else "/")
    return rewrite_process(ctx, text)


def _argument(ctx: Context, text: str) -> str:
    """One argument: kept when it is an option, a number or a well-known word."""
    if not text:
        return text
    identity = ctx.identity(text)
    if identity is not None:
        return identity
    if _OPTION.fullmatch(text):
        ctx.public(text)
        return _plain(ctx, text)
    if (m := _OPTION_VALUE.fullmatch(text)) is not None:
        ctx.public(m.group(1))
        return _plain(ctx, m.group(1)) + _argument(ctx, m.group(2))
    if "\\" in text or (_PATHLIKE.search(text) and "://" not in text):
        return rewrite_path(ctx, text)
    if "/" in text and "://" not in text and " " not in text:
        return rewrite_path(ctx, text, "/")
    lower = text.lower()
    if (
        len(text) <= 2
        or not any(c.isalnum() for c in text)
        or _INTEGER.fullmatch(text)
        or lower in _FLAGS
        or is_vocab(lower, ctx.system_images)
    ):
        return _plain(ctx, text)
    if "cmdline" in ctx.keep:
        return _plain(ctx, text)
    if ctx.discovering:
        _scan(ctx, text)
    return ctx.pseudonym("cmdline", text)


# --------------------------------------------------------------------------- environment


def rewrite_env(ctx: Context, block: str) -> str:
    """An environment block (``\\r;\\tNAME=value`` entries), or one pasted line of it."""
    pieces = _ENV_SEPARATOR.split(block)
    for index in range(0, len(pieces), 2):
        pieces[index] = _env_entry(ctx, pieces[index])
    return "".join(pieces)


def _env_entry(ctx: Context, entry: str) -> str:
    equals = entry.find("=", 1)
    if equals < 0:
        return rewrite_text(ctx, entry)
    name, value = entry[:equals], entry[equals + 1 :]
    ctx.public(name)
    return ctx.substitute(name) + "=" + _env_value(ctx, name.strip().lower(), value)


def _env_value(ctx: Context, name: str, value: str) -> str:
    if not value.strip():
        return value
    if name == "username":
        return _user(ctx, value)
    if name in ("computername", "clientname"):
        return ctx.structural("computer", value)
    if name == "logonserver":
        host = value.lstrip("\\")
        return value[: len(value) - len(host)] + rewrite_host(ctx, host, "computer")
    if name in ("userdomain", "userdomain_roamingprofile", "userdnsdomain"):
        return ctx.structural("domain", value)
    if EMAIL.fullmatch(value.strip()):
        return ctx.structural("email", value)
    if (identity := ctx.identity(value.strip())) is not None:  # an address, a user name…
        return value.replace(value.strip(), identity)
    items = value.split(";")
    if any(_ENV_PATH.match(item) for item in items):
        return ";".join(_env_item(ctx, item) for item in items)
    lower = value.strip().lower()
    if (
        name in SAFE_ENV
        or "env" in ctx.keep
        or lower in _FLAGS
        or is_number_or_version(lower)
        or is_vocab(lower, ctx.system_images)
    ):
        return rewrite_text(ctx, value)
    if ctx.discovering:
        _scan(ctx, value)
    return ctx.pseudonym("env", value)


def _env_item(ctx: Context, item: str) -> str:
    if _ENV_PATH.match(item):
        return rewrite_path(ctx, item, "/" if "/" in item and "\\" not in item else "\\")
    return rewrite_text(ctx, item)


# --------------------------------------------------------------------------- Detail


def rewrite_detail(ctx: Context, detail: str, operation: str = "", path: str = "") -> str:
    """Procmon's Detail column for an event of ``operation`` on ``path``."""
    if not detail:
        return detail
    if "Command line: " in detail:
        if detail.startswith("Parent PID:") and (m := _PROCESS_START.fullmatch(detail)):
            out = m.group("head") + rewrite_cmdline(ctx, m.group("cmd"))
            out += m.group("cwdkey") + rewrite_path(ctx, m.group("cwd"))
            if m.group("envkey") is not None:
                out += m.group("envkey") + rewrite_env(ctx, m.group("env"))
            return out
        head, key, cmd = detail.partition("Command line: ")
        if head.startswith(("PID:", "Parent PID:")):
            return head + key + rewrite_cmdline(ctx, cmd)
    if operation == "QueryDirectory" or (
        detail.startswith("Filter: ") and "FileInformationClass: " in detail
    ):
        return _listing(ctx, detail, path)
    return _keyed(ctx, detail)


def _keyed(ctx: Context, detail: str) -> str:
    """Detail as ``Key: value`` pairs: path-valued and account-valued keys rewritten by
    their kind, the rest as free text."""
    if detail.startswith("Name: "):
        return "Name: " + rewrite_location(ctx, detail[6:])
    at = detail.find("FileName: ")
    if at == 0 or (at > 0 and detail[at - 2 : at] == ", "):
        return _keyed(ctx, detail[:at]) + "FileName: " + rewrite_path(ctx, detail[at + 10 :])
    spans: list[tuple[int, int, str]] = []
    for m in _IMPERSONATING.finditer(detail):
        spans.append((m.start(1), m.end(1), rewrite_account(ctx, m.group(1))))
    for m in _SERIAL.finditer(detail):
        spans.append((m.start(2), m.end(2), _serial(ctx, m.group(2))))
    if not spans:
        return rewrite_text(ctx, detail)
    out: list[str] = []
    pos = 0
    for start, end, text in sorted(spans):
        out.append(rewrite_text(ctx, detail[pos:start]))
        out.append(text)
        pos = end
    out.append(rewrite_text(ctx, detail[pos:]))
    return "".join(out)


def _serial(ctx: Context, serial: str) -> str:
    """A volume serial number identifies a disk: hex of the same shape (class computer)."""
    return serial if "computer" in ctx.keep else ctx.serial(serial)


def _listing(ctx: Context, detail: str, path: str) -> str:
    """``Filter: x, 2: name, FileInformationClass: …``: names as children of ``path``."""
    marks = list(_LISTING.finditer(detail))
    if not marks or marks[0].start() != 0:
        return _keyed(ctx, detail)
    if marks[0].group(1) == "Filter":
        # Procmon shows the directory plus the filter as the Path (C:\Users\test for
        # "Filter: test"): the listed names are then children of the Path's parent
        end = marks[1].start() if len(marks) > 1 else len(detail)
        pattern = detail[marks[0].end() : end]
        if pattern and path.lower().endswith("\\" + pattern.lower()):
            path = path[: -len(pattern) - 1]
    out = [detail[: marks[0].start()]]
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(detail)
        value = detail[mark.end() : end]
        out.append(mark.group(0))
        if mark.group(1) == "FileInformationClass":
            ctx.public(value)
            out.append(value)
        else:
            out.append(_child(ctx, path, value))
    return "".join(out)


def _child(ctx: Context, parent: str, name: str) -> str:
    """A name listed in ``parent``, rewritten exactly as the path ``parent\\name`` is."""
    if name in ("", ".", "..") or name.startswith("*"):
        return ctx.substitute(name)
    if not parent or REGISTRY_ROOT.match(parent):
        return rewrite_path(ctx, name)
    full = rewrite_path(ctx, parent.rstrip("\\") + "\\" + name)
    return full.rsplit("\\", 1)[-1]


# --------------------------------------------------------------------------- image columns


def rewrite_company(ctx: Context, value: str, known_process: bool) -> str:
    """Company or Description: kept for well-known software, else a pseudonym (class path),
    since a publisher's name can identify an employer's in-house tool."""
    if not value.strip():
        return value
    if known_process or "path" in ctx.keep or value.strip().lower() in COMPANIES:
        ctx.public(value)
        return _plain(ctx, value)
    if ctx.discovering:
        _scan(ctx, value)
    return ctx.whole_name(value)
