"""The README tells the truth: every command, option and format it should name, it names."""

from __future__ import annotations

import click

from locations import ROOT
from traceaudit.cli import main
from traceaudit.formats import FORMATS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, click.Command]:
    return dict(main.commands)


def test_every_command_is_in_the_readme():
    missing = [name for name in _commands() if f"traceaudit {name}" not in README]
    assert missing == []


def test_every_option_is_in_the_readme():
    missing = []
    for name, command in _commands().items():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            longs = [o for o in param.opts if o.startswith("--")]
            if longs and not any(o in README for o in longs):
                missing.append(f"{name} {longs[0]}")
    assert missing == []


def test_every_format_is_in_the_readme():
    missing = [f.name for f in FORMATS if f"`{f.name}`" not in README]
    assert missing == []


def test_the_help_names_every_kind_of_trace():
    from click.testing import CliRunner

    text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    for word in ("PML", "CSV", "XML", "pasted", ".etl", "Parquet", "standard input"):
        assert word in text, word
