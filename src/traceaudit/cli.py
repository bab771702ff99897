"""The ``traceaudit`` command: a thin click layer over the library.

Each command parses its options, makes one library call and prints. Library errors become
``error: <message>`` on stderr with exit status 3 here, at the boundary, and nowhere else.

Exit status: 0 analysed; 2 wrong usage (click's own, and an option value that cannot work:
:class:`~traceaudit.errors.UsageError`); 3 bad input; 4 with ``--check`` when another
process's handle or mapped section blocked an operation.

Everything printed that comes from a trace or from the user (paths, process names, option
values quoted in errors) passes through :func:`traceaudit._safe_text.printable` first:
control characters are escaped so that a file name cannot clear the screen or retitle the
terminal, and quoted input is capped in length.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import wraps
from pathlib import Path
from typing import Any

import click

from traceaudit._cli_options import (
    COUNT,
    EXIT_USAGE,
    POSITIVE_COUNT,
    SHARE,
    Group,
    color_report,
    echo,
    one_stdin,
    parse_date,
    parse_duration,
    parse_zone,
    set_color,
    style,
    usage_fail,
)
from traceaudit._outputs import check_output_file, check_plots_dir, same_file
from traceaudit._progress import progress
from traceaudit._safe_text import error_text, printable
from traceaudit._version import __version__
from traceaudit.errors import TraceauditError, UsageError

EXIT_BAD_INPUT = 3
EXIT_CHECK_FAILED = 4


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM: leave like any error, so that temporary output files are removed."""
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM (and SIGHUP where it exists) into SystemExit in the main thread."""
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                signal.signal(number, _terminate)


def _configure_output() -> None:
    """Never die on a console that cannot encode a path (cp1252/cp437 Windows consoles)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # detached or exotic streams
                reconfigure(errors="replace")


def _say(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print text that holds strings from a trace: control characters escaped."""
    echo(printable(text), err=err, nl=nl)


def _say_json(text: str, *, nl: bool = True) -> None:
    """Print JSON: ``json.dumps`` escapes C0 controls; escape C1 and DEL too."""
    click.echo(_C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text), nl=nl)


_C1 = re.compile(r"[\x7f-\x9f]")


class _JsonOut:
    """Stdout for JSON written in pieces (:meth:`ReportData.write_json`): C1 and DEL
    escaped as :func:`_say_json` does, flushed a megabyte at a time."""

    LIMIT = 1 << 20

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self.LIMIT:
            self.flush()

    def flush(self, *, end: str = "") -> None:
        text = "".join(self._parts) + end
        self._parts, self._size = [], 0
        _say_json(text, nl=False)


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> None:
    echo(style("error:", fg="red", bold=True) + f" {error_text(message)}", err=True)
    sys.exit(status)


def _usage(message: str) -> None:
    """A usage error from traceaudit: one line, exit 2; one about an option's value (its
    message starts with the option) also says where the options are explained."""
    if message.startswith("--"):
        usage_fail(message)
    _fail(message, EXIT_USAGE)


def _compiled_loops_for(inputs: Any) -> AbstractContextManager[None]:
    """Read these trace files without the PML and CSV readers' compiled loops unless they
    are big enough to win back loading them (:mod:`traceaudit._jit`); ETL always uses its
    decoder's. Compressed files count eight times their size, about what Procmon's text and
    logs compress by."""
    from traceaudit._jit import pays_off, plain_paths

    if not isinstance(inputs, (tuple, list)) or not inputs:
        return nullcontext()
    total = 0
    for item in inputs:
        name = Path(str(item)).name.lower()
        if ".etl" in Path(name).suffixes:
            return nullcontext()
        try:
            size = os.path.getsize(item)
        except (OSError, TypeError, ValueError):  # "-", missing: the command says so
            continue
        total += size * 8 if name.endswith((".gz", ".zip")) else size
    return plain_paths(not pays_off(total))


def _guard(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library and file-system errors into ``error: …`` and exit status 3."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _compiled_loops_for(kwargs.get("traces") or kwargs.get("trace")):
                return command(*args, **kwargs)
        except UsageError as exc:
            _usage(str(exc))
        except TraceauditError as exc:
            _fail(str(exc))
        except FileNotFoundError as exc:
            _fail(f"{exc.filename}: no such file. Check the path.")
        except IsADirectoryError as exc:
            _fail(f"{exc.filename}: is a directory; give a trace file.")
        except PermissionError as exc:
            _fail(f"{exc.filename}: permission denied while opening it.")
        except OSError as exc:
            name = getattr(exc, "filename", None)
            if exc.errno == errno.ENOSPC:
                _fail(
                    f"{name or 'output'}: cannot write it: no space left on the device. Free "
                    "some space, or write the output elsewhere."
                )
            _fail(f"{name}: {exc.strerror or exc}" if name else f"{exc.strerror or exc}")
        except MemoryError:
            _fail(
                "not enough memory for this trace. Analyse a shorter capture, or filter it in "
                "Process Monitor (by path) before saving."
            )

    return wrapper


def _reading_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--date`` and ``--strict``, shared by every command that reads a trace."""
    command = click.option(
        "--strict", is_flag=True, help="Fail on the first damaged row instead of skipping it."
    )(command)
    return click.option(
        "--date",
        "date_text",
        metavar="YYYY-MM-DD",
        help="Date of a trace whose rows carry only a time of day.",
    )(command)


_EPILOG = """\b
Exit status:
  0  done (analyze: the report was printed, whatever it found)
  2  wrong usage: a missing argument, an unknown option, a bad option value or output path
  3  bad input: a file that is missing, unreadable or not a trace
  4  analyze --check: another process's handle or mapped section blocked an operation

\b
Environment:
  NO_COLOR   set to anything: no colour (as --color never)
"""


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
)
@click.version_option(__version__, "-V", "--version", prog_name="traceaudit")
@click.option(
    "--color",
    "color",
    type=click.Choice(["auto", "always", "never"]),
    metavar="WHEN",
    default="auto",
    show_default=True,
    help="Colour: auto (on terminals, unless NO_COLOR is set), always or never.",
)
def main(color: str) -> None:
    """Find which process held a file, for how long, and how long to retry.

    \b
    Reads (detected from the content; gzip and zip too):
      Process Monitor's native log (.PML)
      Process Monitor's CSV and XML exports (File > Save)
      rows pasted from Process Monitor's window (Ctrl+C)
      ETW traces (.etl: xperf, WPR, logman, PerfView)
      traceaudit's own Parquet (traceaudit convert)
      '-' reads standard input.

    \b
    Examples:
      traceaudit analyze Logfile.PML
      traceaudit analyze Logfile.CSV --process uv.exe --max-wait 10s
      traceaudit analyze Logfile.CSV --html report.html
      traceaudit timeline Logfile.CSV "C:\\Users\\me\\AppData\\Local\\Temp\\file.txt"
      traceaudit capture-profile --procmon "C:\\Users\\me\\project"
    """
    set_color(color)
    _configure_output()
    install_signal_handlers()


@main.command(short_help="Who held the failing files, for how long; how long to retry.")
@click.argument("traces", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--text",
    "as_text",
    is_flag=True,
    help="Print the text report also when writing --html or --plots (not with --json).",
)
@click.option(
    "--path",
    "path_glob",
    metavar="GLOB",
    help="Only conflicts on paths matching GLOB (case-insensitive, * crosses folders).",
)
@click.option(
    "--process", metavar="NAME", help="Only conflicts of the process named NAME (e.g. uv.exe)."
)
@_reading_options
@click.option(
    "--check",
    is_flag=True,
    help="Exit 4 when another process's handle or mapped section blocked an operation (for CI).",
)
@click.option(
    "--target",
    type=SHARE,
    default=0.99,
    show_default=True,
    help="Share of lock episodes the suggested retry policy must ride out.",
)
@click.option(
    "--max-wait",
    "max_wait",
    metavar="DURATION",
    help="A retry budget not to exceed, with its unit (500ms, 10s, 2m); report the best "
    "coverage within it.",
)
@click.option(
    "--tz",
    metavar="ZONE",
    help="Show traces with UTC times (PML, ETW) in this time zone: an IANA name "
    "(Europe/Berlin) or 'local'.",
)
@click.option(
    "--limit",
    type=COUNT,
    default=10,
    show_default=True,
    metavar="N",
    help="Details for at most N blocked paths in the text report (0: all).",
)
@click.option(
    "--snippets",
    is_flag=True,
    help="Also print the suggested retry policy as Rust, Python, Go and .NET code.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a self-contained HTML report (figures inline) to this file.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the figures as PNG and SVG into this folder (created if missing).",
)
@click.option(
    "--filters",
    "filters_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="The saved output of 'fltmc filters' (and/or 'fltmc instances', as administrator) "
    "from the machine of the capture: list the minifilters below Procmon, which can hold a "
    "file without any process showing it.",
)
@_guard
def analyze(
    traces: tuple[Path, ...],
    as_json: bool,
    as_text: bool,
    path_glob: str | None,
    process: str | None,
    date_text: str | None,
    strict: bool,
    check: bool,
    target: float,
    max_wait: str | None,
    tz: str | None,
    limit: int,
    snippets: bool,
    html_path: Path | None,
    plots_dir: Path | None,
    filters_path: Path | None,
) -> None:
    """Find the failed file operations in TRACES and the handles that blocked them.

    The report opens with the answer: who held what, how long operations stayed blocked,
    the retry advice (or why there is none) and the warning that matters most. With
    --html or --plots it is written there, and the terminal shows only what was written
    and a one-line answer (--text prints the text report too, --json the JSON).

    \b
    Examples:
        traceaudit analyze Logfile.CSV
        traceaudit analyze Logfile.PML --tz Europe/Berlin
        traceaudit analyze Logfile.CSV --process uv.exe --json > report.json
        traceaudit analyze Logfile.CSV --check || echo "a lock got in the way"
        traceaudit analyze Logfile.CSV --limit 0 --snippets
        traceaudit analyze Logfile.CSV --html report.html --plots figures
        traceaudit analyze machine1.csv machine2.csv --target 0.999 --max-wait 10s
        traceaudit analyze Logfile.PML --filters fltmc.txt
    """
    from traceaudit._cli_options import analyze_notes, summary_line
    from traceaudit.pipeline import analyze as run

    # Every option and output is checked before the first byte of a trace is read.
    date = parse_date(date_text)
    max_wait_ms = parse_duration(max_wait)
    parse_zone(tz)
    if html_path is not None:
        check_output_file(html_path, traces, "HTML report")
    if plots_dir is not None:
        check_plots_dir(plots_dir, traces)
    one_stdin(traces)
    if as_json and as_text:
        raise UsageError("--json and --text both print to standard output; choose one.")
    listing = None
    if filters_path is not None:
        from traceaudit.minifilters import read_fltmc

        listing = read_fltmc(filters_path)
    written_elsewhere = html_path is not None or plots_dir is not None
    ctx = click.get_current_context()
    names = ", ".join(t.name or str(t) for t in traces)
    with progress(f"analysing {names}"):
        report = run(
            list(traces),
            date=date,
            strict=strict,
            path_glob=path_glob,
            process=process,
            target=target,
            max_wait_ms=max_wait_ms,
            tz=tz,
            filters=listing,
        )
    given = {
        name
        for name in ("limit", "snippets")
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    text_shown = as_text or not (as_json or written_elsewhere)
    for note in analyze_notes(report, tz=tz, date=date, given=given, text=text_shown, json=as_json):
        _note(note)
    if as_json:
        out = _JsonOut()
        report.write_json(out.write)
        out.flush(end="\n")
    if text_shown:
        from traceaudit.report.text import VERDICT_WORDS, render_text

        text = printable(render_text(report, limit=limit, snippets=snippets))
        echo(color_report(text, VERDICT_WORDS), nl=False)
    if html_path is not None:
        from traceaudit.report.html import write_html

        written = write_html(report, html_path, inputs=traces)
        _say(f"wrote {written}", err=True)
    if plots_dir is not None:
        from traceaudit.report.plot import save_all

        for figure in save_all(report, plots_dir, inputs=traces):
            _say(f"wrote {figure}", err=True)
    if written_elsewhere and not text_shown:
        _say(summary_line(report), err=True)
    if check and report.blocked_by_other():
        sys.exit(EXIT_CHECK_FAILED)


def plural(n: int, word: str) -> str:
    """:func:`traceaudit.display.plural`, imported when used: ``--version`` and ``--help``
    load no polars."""
    from traceaudit.display import plural as spelled

    return spelled(n, word)


def _note(text: str) -> None:
    """``note: …`` on stderr: something the user should know that is not an error."""
    echo(style("note:", fg="cyan", bold=True) + " " + error_text(text), err=True)


def _one_trace(files: tuple[Path, ...]) -> Path | list[Path]:
    """The source of a command that reads one trace: a file, or the files of one
    rolled-over capture (said in a note; an error when they are not one capture)."""
    one_stdin(files)
    if len(files) == 1:
        return files[0]
    from traceaudit.formats.pml.rollover import CaptureParts, one_capture, part_name

    parts = one_capture(files)
    numbers = tuple(named[1] for named in map(part_name, parts) if named is not None)
    _note(CaptureParts(tuple(parts), numbers).note())
    return parts


@main.command(short_help="Every operation on one path (and below it), in order.")
@click.argument("trace", nargs=-1, type=click.Path(path_type=Path))
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as a JSON list.")
@_reading_options
@_guard
def timeline(
    trace: tuple[Path, ...], path: str, as_json: bool, date_text: str | None, strict: bool
) -> None:
    """Every operation on PATH (and below it) in TRACE, by every process, in order.

    TRACE is one trace file, or the files of one capture Process Monitor rolled over
    (Log.PML Log-1.PML …), read as one trace.

    \b
    Example:
        traceaudit timeline Logfile.CSV "C:\\Users\\me\\AppData\\Local\\Temp\\.tmpAbC123"
        traceaudit timeline Log.PML Log-1.PML "C:\\Users\\me\\project\\.venv"
    """
    from traceaudit.pipeline import timeline as build
    from traceaudit.report.timeline_text import timeline_records, timeline_text

    if not trace:  # click gave the one argument to PATH
        usage_fail("missing argument 'PATH'.")
    date = parse_date(date_text)
    frame = build(_one_trace(trace), path, date=date, strict=strict)
    if as_json:
        _say_json(json.dumps(timeline_records(frame), indent=2, ensure_ascii=False))
    else:
        _say(timeline_text(frame, path), nl=False)


@main.command(short_help="Write a trace as Parquet or CSV.")
@click.argument("trace", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write: a .parquet or .csv file.",
)
@click.option(
    "--to",
    "to",
    type=click.Choice(["parquet", "csv"]),
    help="Output format (default: from the extension).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="CSV: write cells as they are, without defusing ones a spreadsheet would run as a "
    "formula (=, +, -, @ at the start).",
)
@_reading_options
@_guard
def convert(
    trace: tuple[Path, ...],
    out: Path,
    to: str | None,
    raw: bool,
    date_text: str | None,
    strict: bool,
) -> None:
    """Write TRACE's normalised events as Parquet (exact round trip) or CSV.

    TRACE is one trace file, or the files of one capture Process Monitor rolled over
    (Log.PML Log-1.PML …), written as one trace.

    In CSV, a text cell that starts with =, +, -, @ (or a tab or carriage return) gets a
    leading apostrophe, so that a spreadsheet shows it instead of running it as a formula
    (a trace is untrusted input: a path can be =HYPERLINK(...)). --raw writes cells as
    they are.

    \b
    Example:
        traceaudit convert Logfile.PML -o events.parquet
        traceaudit convert Logfile.CSV -o events.csv
    """
    from traceaudit.formats.convert import convert as run
    from traceaudit.formats.convert import output_format

    date = parse_date(date_text)
    output_format(out, to)
    check_output_file(out, list(trace), "converted trace")
    source, written = run(_one_trace(trace), out, to=to, date=date, strict=strict, raw=raw)
    if date is not None:
        from traceaudit._cli_options import date_note

        for note in date_note([(source.name, source.format)]):
            _note(note)
    _say(
        f"wrote {written}: {plural(source.events.height, 'event')} from {source.format}",
        err=True,
    )


@main.command(short_help="List the trace formats traceaudit reads.")
def formats() -> None:
    """List the trace formats traceaudit reads (detected from the content).

    \b
    Example:
        traceaudit formats
    """
    from traceaudit.formats import FORMATS

    for trace_format in FORMATS:
        _say(f"{trace_format.name:<20} {trace_format.description}")


@main.command(short_help="Replace user, computer and other names with pseudonyms.")
@click.argument(
    "traces", metavar="TRACE...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the redacted trace (same format as TRACE; never TRACE itself); "
    "for the files of a rolled-over capture, a folder (created if missing).",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Key for the pseudonyms, created if missing; reuse it so traces line up.",
)
@click.option(
    "--secret", "words", multiple=True, metavar="WORD", help="Also replace WORD anywhere."
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also replace the words in this file (one per line, # comments).",
)
@click.option(
    "--map",
    "map_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the private pseudonym -> original table here (JSON; do not share).",
)
@click.option(
    "--keep",
    multiple=True,
    metavar="CLASS",
    help="Leave a class as it is: user, computer, domain, sid, email, ip, unc, cmdline, env, path.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@_guard
def redact(
    traces: tuple[Path, ...],
    out: Path,
    key_file: Path | None,
    words: tuple[str, ...],
    secret_file: Path | None,
    map_path: Path | None,
    keep: tuple[str, ...],
    as_json: bool,
) -> None:
    """Replace user, computer and other names in TRACE with keyed pseudonyms.

    The output has the format of TRACE and reads the same in `traceaudit analyze`:
    same conflicts, blockers, hold and blocked times, with names such as user_3f2a9c81.
    A PML stays a PML that Process Monitor opens: its names are replaced in place by
    pseudonyms of the same length (Qmxaz for wchen), so nothing in the file moves.

    Several files must be the parts of one capture Process Monitor rolled over (Log.PML,
    Log-1.PML…): they are redacted together, the same name the same pseudonym in every
    part, into the folder OUT under their own names, and analyse together as before.

    \b
    Example:
        traceaudit redact Logfile.PML -o shareable.PML --key-file redact.key
        traceaudit redact Log.PML Log-1.PML Log-2.PML -o shareable --key-file redact.key
        traceaudit redact Logfile.CSV -o shareable.csv --key-file redact.key
        traceaudit redact Logfile.CSV.gz -o shareable.csv.gz --secret ACME --keep path
        traceaudit redact pasted.tsv -o pasted.redacted.tsv --map private-map.json
    """
    from traceaudit.redaction.redactor import (
        CaptureRedactionResult,
        RedactionResult,
        read_secret_file,
        redact_capture,
    )
    from traceaudit.redaction.redactor import redact as run

    several, trace = len(traces) > 1, traces[0]
    if not several:
        check_output_file(out, [trace], "redacted trace")
    if map_path is not None:
        check_output_file(map_path, [*traces] + ([] if several else [out]), "pseudonym map")
    if key_file is not None:
        for other, what in ((out, "redacted trace"), (map_path, "pseudonym map")):
            if other is not None and same_file(key_file, other):
                raise UsageError(
                    f"{key_file}: given as both the key file and the {what}; give two names."
                )
    secrets = list(words) + (read_secret_file(secret_file) if secret_file else [])
    result: RedactionResult
    if several:
        result = redact_capture(
            traces, out, key=key_file, secrets=secrets, keep=keep, map_path=map_path
        )
    else:
        result = run(trace, out, key=key_file, secrets=secrets, keep=keep, map_path=map_path)
    if result.key_created:
        _say(
            f"created key file {key_file}: keep it private; reuse it to redact other traces "
            "so their pseudonyms line up.",
            err=True,
        )
    elif key_file is None:
        _note(
            "no --key-file: used a one-off random key, so these pseudonyms will not line up "
            "with other redacted traces."
        )
    for note in result.notes:
        _note(note)
    if as_json:
        _say_json(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    counts = ", ".join(f"{n:,} {cls}" for cls, n in result.counts.items()) or "nothing"
    written = str(result.output)
    if isinstance(result, CaptureRedactionResult):
        written = ", ".join(str(p) for p in result.outputs)
    files = f" in {len(traces)} files" if several else ""
    _say(
        f"wrote {written} ({result.format}, {plural(result.rows, 'row')}{files}); replaced: "
        f"{counts}; leak check passed{' on each' if several else ''}.",
        err=True,
    )


@main.command(
    "capture-profile",
    short_help="How to record a trace: a Procmon configuration, or WPR, xperf, logman.",
)
@click.option(
    "--procmon",
    "folder",
    metavar="PATH",
    help="Write a Process Monitor configuration that captures file activity on PATH and "
    "below it, from every process (PATH: the folder the failing tool works in, in full).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="With --procmon: the configuration file to write (default: traceaudit.pmc).",
)
@click.option("--wpr", "tool", flag_value="wpr", help="Print a WPR profile.")
@click.option("--xperf", "tool", flag_value="xperf", help="Print xperf command lines.")
@click.option("--logman", "tool", flag_value="logman", help="Print logman command lines.")
@_guard
def capture_profile(folder: str | None, output: Path | None, tool: str | None) -> None:
    """How to record a trace traceaudit can analyse (from an administrator terminal).

    Without options: every way, and which to try first. --procmon writes a Process Monitor
    configuration filtered on the folder, never on a process, and prints the commands to
    run; --wpr, --xperf and --logman print an ETW recording setup.

    \b
    Example:
        traceaudit capture-profile --procmon "C:\\path\\to\\project"
        traceaudit capture-profile --wpr > traceaudit.wprp
        wpr -start traceaudit.wprp -filemode   (reproduce, then: wpr -stop trace.etl)
        traceaudit capture-profile --xperf
    """
    if folder is not None and tool is not None:
        raise UsageError(f"--procmon and --{tool}: choose one way of recording.")
    if output is not None and folder is None:
        raise UsageError("--output goes with --procmon; the other ways print to standard output.")
    if folder is not None:
        from traceaudit.capture import DEFAULT_OUTPUT, procmon_steps, write_procmon_config

        written, where = write_procmon_config(folder, output or DEFAULT_OUTPUT)
        _say(procmon_steps(str(written), where), err=True)
        return
    if tool is None:
        from traceaudit.capture import OVERVIEW

        click.echo(OVERVIEW, nl=False)
        return
    from traceaudit.formats.etl.profile import capture_profile as build

    click.echo(build(tool), nl=False)


@main.command(short_help="Analyse many traces on Dask into one dataset, pooled.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "dataset",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The Parquet dataset folder (created; traces already in it are skipped).",
)
@click.option(
    "--workers",
    type=POSITIVE_COUNT,
    metavar="N",
    help="Worker processes of the local Dask cluster (default: one per core).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on an existing Dask cluster instead: its scheduler's address (tcp://host:8786).",
)
@click.option(
    "--target",
    type=SHARE,
    default=0.99,
    show_default=True,
    help="Share of the fleet's lock episodes the suggested retry policy must ride out.",
)
@click.option(
    "--max-wait",
    "max_wait",
    metavar="DURATION",
    help="A retry budget not to exceed, with its unit (500ms, 10s, 2m); report the best "
    "coverage within it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the fleet summary as one JSON object.")
@_reading_options
@_guard
def fleet(
    paths: tuple[Path, ...],
    dataset: Path,
    workers: int | None,
    scheduler: str | None,
    target: float,
    max_wait: str | None,
    as_json: bool,
    date_text: str | None,
    strict: bool,
) -> None:
    """Analyse every trace under PATHS on Dask into a Parquet dataset, and pool them.

    PATHS are trace files, folders (searched recursively for files a reader recognises)
    and glob patterns. Each trace's tables go to DATASET, partitioned by trace (its sha256);
    a trace that cannot be read is recorded with its error, and a run again skips the
    traces already there. The summary pools the whole dataset: the holders across
    machines, blocked and hold times, the retry policy and how known tools would have
    fared. Needs Dask: pip install 'traceaudit[fleet]'.

    \b
    Example:
        traceaudit fleet captures/ -o fleet-dataset
        traceaudit fleet "captures/**/*.PML" -o fleet-dataset --workers 8 --json > fleet.json
        traceaudit fleet /shared/captures -o /shared/fleet --scheduler tcp://10.0.0.5:8786
    """
    from traceaudit.fleet.driver import fleet as run

    date = parse_date(date_text)
    max_wait_ms = parse_duration(max_wait)
    summary = run(
        list(paths),
        dataset,
        workers=workers,
        scheduler=scheduler,
        target=target,
        max_wait_ms=max_wait_ms,
        date=date,
        strict=strict,
    )
    if as_json:
        _say_json(summary.to_json())
    else:
        _say(summary.to_text(), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
