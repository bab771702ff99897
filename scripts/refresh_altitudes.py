"""Rebuild ``src/traceaudit/minifilters/data/allocated-altitudes.csv`` from Microsoft's list.

Microsoft publishes the filter altitudes it has allocated in "Allocated filter altitudes"
(https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/allocated-altitudes), a
Markdown page of the MicrosoftDocs/windows-driver-docs repository
(``windows-driver-docs-pr/ifs/allocated-altitudes.md``). This script reads that Markdown
(fetched from GitHub, or a copy given with ``--source``), takes every table row
(minifilter, altitude, company) under its load-order-group heading, and writes the CSV
that :mod:`traceaudit.minifilters.altitudes` bundles, with the source and date in its
header comments. The output is written to a temporary name and moved into place.

Usage::

    python scripts/refresh_altitudes.py                      # fetch the page from GitHub
    python scripts/refresh_altitudes.py --source allocated-altitudes.md --date 2020-03-11
    python scripts/refresh_altitudes.py --below 385200       # only filters below Procmon

Only the Python standard library is used, so it runs without the project installed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import html
import io
import os
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

RAW_URL = (
    "https://raw.githubusercontent.com/MicrosoftDocs/windows-driver-docs/staging/"
    "windows-driver-docs-pr/ifs/allocated-altitudes.md"
)
PAGE_URL = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/allocated-altitudes"
OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "src/traceaudit/minifilters/data/allocated-altitudes.csv"
)

_HEADING = re.compile(r"^#+\s*(?:<span[^>]*></span>)*\s*([\d ]+-[\d ]+):\s*\*?(.+?)\s*$")
_ALTITUDE = re.compile(r"^\d+(?:\.\d+)?$")
_MS_DATE = re.compile(r"^ms\.date:\s*(\S+)", re.MULTILINE)


def _group_name(text: str) -> str:
    """A heading's load order group as :mod:`traceaudit.minifilters.altitudes` names it.

    The page writes "*FSFilter Imaging (ex: .ZIP)" and "FSFilter Physical Quota management":
    the example and the asterisk go, and every word is capitalized ("Anti-Virus" keeps its case).
    """
    name = re.sub(r"\s*\(ex:.*\)$", "", text).strip().lstrip("*").strip()
    return " ".join(word[:1].upper() + word[1:] for word in name.split())


def parse(markdown: str) -> list[tuple[str, str, str, str]]:
    """(altitude, minifilter, company, load order group) for every row of every table.

    A row is ``| minifilter | altitude | company |`` (the outer bars may be missing); the
    header row, the ``---`` rule and rows whose altitude is not a number are skipped.
    """
    rows: list[tuple[str, str, str, str]] = []
    group = ""
    for line in markdown.splitlines():
        heading = _HEADING.match(line.strip())
        if heading:
            group = _group_name(heading.group(2))
            continue
        if "|" not in line:
            continue
        cells = [html.unescape(c.strip()) for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        name, altitude, company = cells[0], cells[1].strip(), cells[2]
        if not _ALTITUDE.match(altitude):
            continue
        rows.append((altitude, name.replace("\\_", "_"), company, group))
    return rows


def ms_date(markdown: str) -> str | None:
    """The page's ``ms.date`` (MM/DD/YYYY) as an ISO date, if it has one."""
    found = _MS_DATE.search(markdown)
    if not found:
        return None
    try:
        return dt.datetime.strptime(found.group(1), "%m/%d/%Y").date().isoformat()
    except ValueError:
        return None


def render(rows: list[tuple[str, str, str, str]], *, source: str, date: str, note: str) -> str:
    out = io.StringIO()
    out.write(f"# Microsoft's allocated filter altitudes: {PAGE_URL}\n")
    out.write(f"# source: {source}\n")
    out.write(f"# page date (ms.date): {date}\n")
    if note:
        out.write(f"# {note}\n")
    out.write("# rebuilt by scripts/refresh_altitudes.py; one row per allocation\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["altitude", "minifilter", "company", "load_order_group"])
    writer.writerows(rows)
    return out.getvalue()


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="a saved copy of allocated-altitudes.md")
    parser.add_argument("--url", default=RAW_URL, help="where to fetch the Markdown from")
    parser.add_argument("--date", help="the page's date, when the copy has no ms.date")
    parser.add_argument("--origin", help="where the copy came from (for the header)")
    parser.add_argument("--below", type=float, help="keep only altitudes at or below this")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.source:
        markdown = Path(args.source).read_text(encoding="utf-8")
        source = args.origin or args.source
    else:
        try:
            with urllib.request.urlopen(args.url, timeout=30) as response:
                markdown = response.read().decode("utf-8")
        except OSError as exc:
            print(
                f"error: {args.url}: cannot fetch it ({exc}); save the page and pass --source FILE",
                file=sys.stderr,
            )
            return 3
        source = args.url
    rows = parse(markdown)
    if not rows:
        print(
            "error: no altitude table rows found: is this the allocated-altitudes page?",
            file=sys.stderr,
        )
        return 3
    note = f"complete: every table row of the page ({len(rows)} allocations)"
    if args.below is not None:
        rows = [r for r in rows if float(r[0]) <= args.below]
        note = f"partial: only the allocations at or below altitude {args.below:g}"
    date = args.date or ms_date(markdown) or "unknown"
    write_atomically(args.output, render(rows, source=source, date=date, note=note))
    print(f"wrote {args.output}: {len(rows)} allocations", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
