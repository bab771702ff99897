"""``traceaudit capture-profile``: recording setups with exactly what the analysis needs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from traceaudit.cli import main
from traceaudit.errors import UsageError
from traceaudit.formats.etl.profile import KERNEL_FILE_KEYWORDS, capture_profile


def test_kernel_file_keywords_are_the_ones_the_analysis_needs():
    assert KERNEL_FILE_KEYWORDS == 0x10 | 0x20 | 0x40 | 0x80 | 0x400 | 0x800 == 0xCF0


def test_wpr_profile_is_valid_xml_with_the_kernel_keywords():
    root = ET.fromstring(capture_profile("wpr"))
    assert root.tag == "WindowsPerformanceRecorder"
    keywords = [k.get("Value") for k in root.iter("Keyword")]
    assert keywords == ["ProcessThread", "Loader", "FileIO", "FileIOInit", "DiskIO"]
    profile = root.find("./Profiles/Profile")
    assert profile is not None and profile.get("LoggingMode") == "File"
    ids = {e.get("Id") for e in root.iter() if e.get("Id")}
    assert {c.get("Value") for c in root.iter("SystemCollectorId")} <= ids
    assert {c.get("Value") for c in root.iter("SystemProviderId")} <= ids


def test_xperf_and_logman_lines():
    xperf = capture_profile("xperf")
    assert "xperf -on PROC_THREAD+LOADER+FILE_IO+FILE_IO_INIT+DISK_IO " in xperf
    assert "xperf -d trace.etl" in xperf
    logman = capture_profile("logman")
    assert "-p Microsoft-Windows-Kernel-File 0xCF0 0x4" in logman
    assert "-p Microsoft-Windows-Kernel-Process 0x30 0x4" in logman
    assert "logman stop traceaudit -ets" in logman


def test_unknown_tool():
    with pytest.raises(UsageError, match="capture profile for 'perf': unknown tool"):
        capture_profile("perf")


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        (["--wpr"], "<WindowsPerformanceRecorder"),
        (["--xperf"], "xperf -on"),
        (["--logman"], "logman start"),
    ],
)
def test_cli_command(flag, text):
    result = CliRunner().invoke(main, ["capture-profile", *flag])
    assert result.exit_code == 0, result.output
    assert text in result.output
