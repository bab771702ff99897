"""Text from a trace or from the user, made safe to print.

A trace is hostile input: a path or process name may hold an ANSI escape sequence
(``\\x1b]0;…\\x07`` retitles the terminal, ``\\x1b[2J`` clears it), a NUL, a newline that
splits one line of output into two, or forty megabytes in one field. Every face that prints
to a terminal passes such text through :func:`printable`; error messages go through
:func:`error_text`, which also caps their length, and quote user input with
:func:`quoted`.
"""

from __future__ import annotations

import re

__all__ = ["printable", "quoted", "error_text", "MAX_ERROR_CHARS"]

MAX_ERROR_CHARS = 2_000
"""An error message longer than this is cut (it only ever grows by quoting input)."""

# C0 and C1 controls and DEL; tab kept (tables), newline kept where the caller allows it.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_AND_NEWLINES = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters shown as ``\\xNN`` (newlines kept if ``newlines``)."""
    pattern = _CONTROLS if newlines else _CONTROLS_AND_NEWLINES
    return pattern.sub(_escape, text)


def quoted(value: object, limit: int = 80) -> str:
    """A value the user typed, quoted for a message: escaped, and cut at ``limit`` chars."""
    text = printable(str(value), newlines=False)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text) if "'" not in text else f'"{text}"'


def error_text(message: str) -> str:
    """One line of error: controls and newlines escaped, at most :data:`MAX_ERROR_CHARS`."""
    text = printable(message, newlines=False)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text
