"""Refusals of ``traceaudit redact``: every message is asserted whole.

Each names the file, says what is wrong and what to do; the CLI prints it as
``error: <message>`` and exits 3, never with a traceback.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from click.testing import CliRunner

from traceaudit._redact_rows import RowRewriter
from traceaudit.cli import main
from traceaudit.convert import write_events
from traceaudit.errors import TraceFormatError, UnknownFormatError, UsageError
from traceaudit.formats import load_trace
from traceaudit.redact import RedactionLeakError, redact

KEY = bytes(32)
HEADER = '"Time of Day","Process Name","PID","Operation","Path","Result","Detail","User"'
ROW = (
    '"7:19:37.0147934 AM","Code.exe","12","CreateFile","C:\\Users\\IEUser\\notes.txt",'
    '"SUCCESS","","MSEDGEWIN10\\IEUser"'
)


def trace(tmp_path: Path, name: str = "Logfile.CSV") -> Path:
    path = tmp_path / name
    path.write_bytes(f"{HEADER}\r\n{ROW}\r\n".encode("utf-8-sig"))
    return path


def cli(*args: str):
    return CliRunner().invoke(main, ["redact", *args])


def test_error_output_is_the_input(tmp_path, monkeypatch):
    source = trace(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, Path(".") / "sub" / ".." / "Logfile.CSV", key=KEY)
    assert str(refused.value) == (
        "Logfile.CSV: is the input trace itself; give another output path with -o "
        "(redact never writes over its input)."
    )
    assert source.read_bytes().startswith(b"\xef\xbb\xbf" + HEADER.encode())


def test_error_output_is_the_input_on_the_command_line(tmp_path):
    source = trace(tmp_path)
    result = cli(str(source), "-o", str(source))
    assert result.exit_code == 3
    assert result.stderr == (
        "error: Logfile.CSV: is the input trace itself; give another output path with -o "
        "(redact never writes over its input).\n"
    )


@pytest.mark.parametrize("name", ["Logfile.PML", "Logfile.PML.gz"])
def test_error_pml_is_refused(tmp_path, name):
    data = b"PML_" + b"\x09\x00\x00\x00" + bytes(600)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(TraceFormatError) as refused:
        redact(path, tmp_path / "out.csv", key=KEY)
    assert str(refused.value) == (
        f"{name}: a Process Monitor PML log, which redact cannot rewrite. Open it in Process "
        "Monitor, save the events with File > Save > CSV, and redact that CSV."
    )
    assert not (tmp_path / "out.csv").exists()


def test_error_parquet_is_refused(tmp_path):
    parquet = write_events(load_trace(trace(tmp_path)), tmp_path / "events.parquet")
    with pytest.raises(TraceFormatError) as refused:
        redact(parquet, tmp_path / "out.parquet", key=KEY)
    message = str(refused.value)
    assert message.startswith("events.parquet: a ")
    assert message.endswith(
        ", which redact cannot rewrite. Redact the trace it was converted from, then convert "
        "the redacted one."
    )


def test_error_not_a_trace(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(UnknownFormatError) as refused:
        redact(path, tmp_path / "out.txt", key=KEY)
    assert str(refused.value).startswith(
        "notes.txt: not a trace traceaudit can read (looks like text starting 'just some notes')."
    )


def test_error_unreadable_key_file(tmp_path):
    source = trace(tmp_path)
    key_file = tmp_path / "redact.key"
    key_file.write_text("not a key\n", encoding="ascii")
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=key_file)
    assert str(refused.value) == (
        f"{key_file}: not a redaction key (expected 64 hex digits). Give the key file "
        "traceaudit redact created, or a path that does not exist yet to create one."
    )
    result = cli(str(source), "-o", str(tmp_path / "out.csv"), "--key-file", str(key_file))
    assert result.exit_code == 3 and result.stderr == f"error: {refused.value}\n"
    assert not (tmp_path / "out.csv").exists()


def test_error_key_file_is_a_folder(tmp_path):
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=tmp_path)
    assert str(refused.value) == f"{tmp_path}: is a folder, not a key file. Give a file path."


def test_error_key_file_in_a_missing_folder(tmp_path):
    key_file = tmp_path / "keys" / "redact.key"
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=key_file)
    assert str(refused.value) == (
        f"{key_file}: cannot create the key file: the folder {key_file.parent} does not exist."
    )


def test_error_unknown_keep_class(tmp_path):
    source = trace(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=KEY, keep=["users"])
    assert str(refused.value) == (
        "--keep 'users': unknown class. Choose from: cmdline, computer, domain, email, env, "
        "ip, path, sid, unc, user."
    )
    result = cli(str(source), "-o", str(tmp_path / "out.csv"), "--keep", "users")
    assert result.exit_code == 3 and result.stderr == f"error: {refused.value}\n"


def test_error_output_folder_missing(tmp_path):
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "nowhere" / "out.csv", key=KEY)
    assert str(refused.value) == (
        f"out.csv: cannot write the output: the folder {tmp_path / 'nowhere'} does not exist."
    )


def test_error_map_would_overwrite_the_input(tmp_path):
    source = trace(tmp_path)
    with pytest.raises(UsageError) as refused:
        redact(source, tmp_path / "out.csv", key=KEY, map_path=source)
    assert str(refused.value) == (
        "Logfile.CSV: the --map file would overwrite the input trace; give another path."
    )


def test_error_key_file_is_the_output(tmp_path):
    with pytest.raises(UsageError) as refused:
        redact(trace(tmp_path), tmp_path / "out.csv", key=tmp_path / "out.csv")
    assert str(refused.value) == (
        "out.csv: the key file cannot also be the input, the output or the --map file; give "
        "another path."
    )


def test_error_secret_file_missing(tmp_path):
    result = cli(str(trace(tmp_path)), "-o", str(tmp_path / "o.csv"), "--secret-file", "none.txt")
    assert result.exit_code == 3
    assert result.stderr == "error: none.txt: no such secret file. Check the path.\n"


def test_error_leak_check_a_secret_the_rewriter_cannot_reach(tmp_path):
    """Column names are never rewritten, so a --secret equal to one leaks."""
    source = trace(tmp_path)
    out = tmp_path / "out.csv"
    with pytest.raises(RedactionLeakError) as refused:
        redact(source, out, key=KEY, secrets=["Detail"])
    assert str(refused.value) == (
        "out.csv: redaction check failed: 1 secret(s) of class secret leaked ('Detail' on "
        "line 1). The output was removed."
    )
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["Logfile.CSV"]  # no temporary file left


def test_error_leak_check_when_the_writer_skips_redaction(tmp_path, monkeypatch):
    """A writer that loses the rewritten fields is caught by reading the output back.

    (MSEDGEWIN10 is only seen as the domain half of the User column here, so it counts
    as a domain: nothing says it is a computer.)"""
    rewrite = RowRewriter.row

    def leaky(self: RowRewriter, fields: list[str]) -> list[str]:
        rewritten = rewrite(self, fields)
        return rewritten if self.ctx.discovering else list(fields)

    monkeypatch.setattr(RowRewriter, "row", leaky)
    source = trace(tmp_path)
    out = tmp_path / "out.csv"
    result = cli(str(source), "-o", str(out), "--key-file", str(tmp_path / "k.key"))
    assert result.exit_code == 3
    assert result.stderr == (
        "error: out.csv: redaction check failed: 2 secret(s) of class user, domain leaked "
        "('IEUser' on line 2, 'MSEDGEWIN10' on line 2). The output was removed.\n"
    )
    assert not out.exists()
