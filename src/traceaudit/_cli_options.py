"""The command line's option values, usage errors and colour, apart from the commands.

* :class:`Group` and :class:`Command` — click's classes with one change: every usage error
  (click's own: a missing argument, an unknown option, a bad choice or number; and
  traceaudit's :class:`~traceaudit.errors.UsageError`) is one line on stderr,
  ``error: <command>: <what is wrong>. See 'traceaudit <command> --help'.``, exit status 2;
* :func:`parse_date`, :func:`parse_duration`, :func:`parse_zone` and the parameter types
  :data:`SHARE` and :data:`COUNT` — option values checked before a trace is read, with the
  value quoted in the error;
* colour — :func:`set_color` from ``--color auto|always|never`` and ``NO_COLOR``, and
  :func:`style` / :func:`color_report` that style text only when colour is on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import date as Date
from datetime import datetime
from typing import IO, Any, NoReturn

import click

from traceaudit._safe_text import error_text, quoted
from traceaudit.errors import UsageError

EXIT_USAGE = 2

__all__ = [
    "EXIT_USAGE",
    "Group",
    "Command",
    "usage_fail",
    "parse_date",
    "parse_duration",
    "parse_zone",
    "one_stdin",
    "SHARE",
    "COUNT",
    "set_color",
    "color_on",
    "style",
    "echo",
    "color_report",
]


# --- one-line usage errors ------------------------------------------------------------


def _command_name(ctx: click.Context | None) -> str:
    """``analyze`` for ``traceaudit analyze`` (whatever name the program was run under)."""
    if ctx is None:
        return ""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def usage_line(message: str, ctx: click.Context | None) -> str:
    """``error: analyze: <message>. See 'traceaudit analyze --help'.``"""
    name = _command_name(ctx)
    text = message.strip().rstrip(".")
    hint = f"traceaudit {name} --help" if name else "traceaudit --help"
    return f"error: {name + ': ' if name else ''}{text}. See '{hint}'."


def usage_fail(message: str, ctx: click.Context | None = None) -> NoReturn:
    """Print a usage error in one line and exit with status 2."""
    if ctx is None:
        ctx = click.get_current_context(silent=True)
    echo(style("error:", fg="red", bold=True) + error_text(usage_line(message, ctx))[6:], err=True)
    sys.exit(EXIT_USAGE)


def _click_message(exc: click.UsageError) -> str:
    """click's message, as traceaudit words it: ``--target 'abc': expected …``."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        value = getattr(exc, "value_text", None)
        hint = exc.param_hint
        if hint is None and exc.param is not None:
            hint = exc.param.get_error_hint(exc.ctx) if exc.ctx is not None else exc.param.name
        if hint is not None and not isinstance(hint, str):
            hint = " / ".join(hint)
        hint = (hint or "value").replace('"', "").replace("'", "")
        if value is not None:
            return f"{hint} {quoted(value)}: {exc.message}"
        return f"{hint}: {exc.message}"
    text = exc.format_message()
    return text[:1].lower() + text[1:]


class _OneLineUsage(click.ClickException):
    """A usage error already worded for one line (what :class:`Group` turns click's into)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, ctx: click.Context | None) -> None:
        super().__init__(message)
        self.ctx = ctx

    def show(self, file: IO[Any] | None = None) -> None:
        line = usage_line(self.message, self.ctx)
        echo(style("error:", fg="red", bold=True) + error_text(line)[6:], err=True)


@contextlib.contextmanager
def _one_line_usage_errors(parent: click.Context | None = None) -> Iterator[None]:
    """click's usage errors as :class:`_OneLineUsage`; ``parent`` stands in for the
    context of a command whose arguments failed to parse (click gives none then)."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        raise _OneLineUsage(_click_message(exc), exc.ctx or parent) from exc


class Command(click.Command):
    """A click command whose usage errors are one line (see the module docstring)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        stand_in = click.Context(self, info_name=info_name, parent=parent)
        with _one_line_usage_errors(stand_in):
            return super().make_context(info_name, args, parent=parent, **extra)


class Group(click.Group):
    """A click group whose usage errors, and its commands', are one line."""

    command_class = Command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


# --- option values --------------------------------------------------------------------


class _ValueError(click.BadParameter):
    """A bad option value whose message names the value: ``--target 'abc': expected …``."""

    def __init__(self, value: object, message: str) -> None:
        super().__init__(message)
        self.value_text = value


class _Share(click.ParamType[float, Any]):
    name = "SHARE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise _ValueError(value, "expected a share above 0 and at most 1, e.g. 0.99")
        return share


class _Count(click.ParamType[int, Any]):
    name = "N"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            count = int(str(value).strip())
        except ValueError:
            count = self.minimum - 1
        if count < self.minimum:
            raise _ValueError(value, f"expected a whole number, {self.minimum} or more")
        return count


SHARE = _Share()
COUNT = _Count(0)
POSITIVE_COUNT = _Count(1)

# Nanosecond timestamps (the event schema's) hold these days and no others.
_FIRST_DAY, _LAST_DAY = Date(1677, 9, 22), Date(2262, 4, 10)


def parse_date(value: str | Date | None) -> Date | None:
    """``--date YYYY-MM-DD``, within the days a trace's times can hold."""
    if value is None or isinstance(value, Date):
        return value
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"--date {quoted(value)}: expected YYYY-MM-DD, e.g. 2024-07-15.") from None
    if not _FIRST_DAY <= day <= _LAST_DAY:
        raise UsageError(
            f"--date {value}: a trace's times can only fall between {_FIRST_DAY} and "
            f"{_LAST_DAY}; give the day the capture was taken."
        )
    return day


_UNITS_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "min": 60_000.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_duration(value: str | None, option: str = "--max-wait") -> float | None:
    """``500ms``, ``10s``, ``2m`` or ``2min`` as milliseconds; the unit is required."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if match is None or match.group(2).lower() not in _UNITS_MS:
        unitless = match is not None and not match.group(2)
        why = "give a unit" if unitless else "expected a duration"
        raise UsageError(
            f"{option} {quoted(value)}: {why}: ms, s or m (min), e.g. 500ms, 10s or 2m."
        )
    return float(match.group(1)) * _UNITS_MS[match.group(2).lower()]


def parse_zone(tz: str | None) -> str | None:
    """``--tz``: an IANA zone name or ``local``, checked before any trace is read."""
    if tz is None:
        return None
    import polars as pl

    from traceaudit.analysis.clock import times_in_zone, zone_name

    probe = pl.DataFrame({"time": [datetime(2000, 1, 1)]}, schema={"time": pl.Datetime("ns")})
    times_in_zone(probe, zone_name(tz), tz)  # UsageError for a zone polars does not know
    return tz


def one_stdin(traces: Sequence[object]) -> None:
    if sum(str(t) == "-" for t in traces) > 1:
        raise UsageError("'-' (standard input) can be given once only.")


# --- colour ---------------------------------------------------------------------------

_color: bool | None = None
"""True: always; False: never; None: on terminals only (click decides per stream)."""


def _windows_ansi() -> bool:
    """Turn on ANSI escape handling in a Windows console; False where that fails."""
    if sys.platform != "win32":
        return True
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
        ok = True
        for handle_id in (-11, -12):  # STD_OUTPUT_HANDLE, STD_ERROR_HANDLE
            handle = kernel32.GetStdHandle(handle_id)
            mode = ctypes.c_uint32()
            if kernel32.GetConsoleMode(handle, ctypes.byref(mode)):
                ok &= bool(kernel32.SetConsoleMode(handle, mode.value | 0x0004))
        return ok
    except Exception:  # noqa: BLE001 - no colour is always safe
        return False


def set_color(mode: str) -> None:
    """``--color``: ``always``, ``never``, or ``auto`` (terminals only, unless ``NO_COLOR``
    is set to anything non-empty)."""
    global _color
    if mode == "always":
        _color = True
    elif mode == "never" or os.environ.get("NO_COLOR"):
        _color = False
    else:
        _color = None if _windows_ansi() else False


def color_on(err: bool = False) -> bool:
    """Whether text printed to stdout (stderr with ``err``) is coloured."""
    if _color is not None:
        return _color
    stream = sys.stderr if err else sys.stdout
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):
        return False


def style(text: str, **styles: Any) -> str:
    """``text`` in click's styles; plain when colour is off (click strips it then anyway)."""
    return click.style(text, **styles) if _color is not False else text


def echo(text: str, *, err: bool = False, nl: bool = True) -> None:
    """click.echo with the colour choice: styles kept, or stripped."""
    click.echo(text, err=err, nl=nl, color=_color)


_HEADINGS = re.compile(
    r"^(Answer:|Details|-------|Conflicts by path:|Retries by the failing process:|"
    r"Blocked time|Hold time|Suggested retry policy|How real tools' retry policies|"
    r"Warnings:|The suggested policy in code:|Holders across|Failed traces)"
)
_LABELS = re.compile(
    r"^(  )(Filters|Held by|Cannot tell|No holder|Not a lock|Blocked|Held for|Advice|Warning)( )"
)


def color_report(text: str, verdicts: dict[str, str]) -> str:
    """The text report with headings bold and the verdict words coloured; ``text`` must
    already be printable (no control characters of its own)."""
    if _color is False:
        return text
    bad = verdicts.get("blocked-by-other-process")
    words = sorted((w for w in verdicts.values() if w != bad), key=len, reverse=True)
    others = re.compile(" - (" + "|".join(re.escape(w) for w in words) + ")") if words else None
    out = []
    for line in text.split("\n"):
        if _HEADINGS.match(line):
            line = click.style(line, bold=True)
        else:
            line = _LABELS.sub(lambda m: m[1] + click.style(m[2], bold=True) + m[3], line)
            if bad and f" - {bad}" in line:
                line = line.replace(f" - {bad}", " - " + click.style(bad, fg="red", bold=True))
            elif others is not None:
                line = others.sub(lambda m: " - " + click.style(m[1], fg="yellow"), line)
        out.append(line)
    return "\n".join(out)


# --- options that did not apply -------------------------------------------------------

_FULL_DATES = {"procmon-pml": "PML", "etw-etl": "ETW", "parquet": "Parquet"}


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3:,} more" if len(names) > 3 else "")


def analyze_notes(
    report: Any, *, tz: str | None, date: Date | None, given: set[str], text: bool, json: bool
) -> list[str]:
    """What ``analyze`` says about options that did not apply to these traces."""
    notes = []
    if tz is not None:
        local = [t.name for t in report.traces if t.clock == "local"]
        if local:
            verb = "has" if len(local) == 1 else "have"
            notes.append(
                f"--tz applies to traces with UTC times (PML, ETW); {_names(local)} {verb} "
                "local times, so it was not used"
                + (" for them." if len(local) < len(report.traces) else ".")
            )
    if date is not None:
        notes += date_note([(t.name, t.format) for t in report.traces])
    if not text:
        for option in sorted(given):
            notes.append(
                f"--{option} applies to the text report, not to --json."
                if json
                else f"--{option} applies to the text report, which was not printed; add "
                "--text to print it."
            )
    return notes


def date_note(traces: list[tuple[str, str]]) -> list[str]:
    """``--date`` given for traces (name, format) whose times carry their date."""
    dated = [name for name, trace_format in traces if trace_format.split()[0] in _FULL_DATES]
    if not dated:
        return []
    verb = "has" if len(dated) == 1 else "have"
    return [
        "--date applies to traces whose rows carry only a time of day (pasted rows, "
        f"exports without a Date & Time column); {_names(dated)} {verb} full dates, so it "
        "was not used" + (" for them." if len(dated) < len(traces) else ".")
    ]


def summary_line(report: Any) -> str:
    """The answer in one line, for a terminal that shows only where the report went."""
    from traceaudit.display import plural
    from traceaudit.report.answer import answer

    found = answer(report)
    first = found.lines()[:1]
    if not found.conflicts:
        return "answer: no failed file operation in the trace can be explained by a lock."
    label, line = first[0] if first else ("", "")
    return f"answer: {plural(found.conflicts, 'conflict')}; {label.lower()} {line}".rstrip()
