"""Reading saved ``fltmc`` output, and what the report says of failures with no holder.

Real outputs (public material found through the code index; short excerpts):

* FILTERS_WITH_LEGACY: a C# test's fixture (``TelemetryService.ParseFltMcOutput``) in a
  public repository: a legacy filter with no altitude, CrowdStrike's CSAgent at 321410.
* FILTERS_UCPD: a minifilter tutorial's README ("Example output from fltmc"): a fractional
  altitude (UCPD at 385250.5) and WdFilter at 328010.
* INSTANCES_SQL: Microsoft's support article on antivirus and SQL Server ("fltmc
  instances" sample output): blank volume names, instance names of several words,
  a fractional altitude (RsFx0603 at 41006.03), SprtFtrs/VlStatus columns.
* LEGACY_DOCS: the Windows driver docs' page on blocking legacy file-system filters
  (``fltmc filters`` with ``<Legacy>`` frames and no instance count).

The German header and the other edge cases are made up.
"""

from __future__ import annotations

import codecs
import csv
import json
from decimal import Decimal
from importlib import resources
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import Story
from traceaudit.cli import main
from traceaudit.minifilters import FltmcError, group_of, parse_fltmc, read_fltmc
from traceaudit.minifilters.altitudes import LOAD_ORDER_GROUPS, allocations_at, bundled_source
from traceaudit.pipeline import analyze
from traceaudit.report.html import render_html
from traceaudit.schema import Trace

FILTERS_WITH_LEGACY = """
Filter Name                     Num Instances    Altitude    Frame
------------------------------  -------------  ------------  -----
cbfsconnect2017                                             <Legacy>
bindflt                                 1       409800         0
CSAgent                                 9       321410         0
storqosflt                              0       244000         0
wcifs                                   0       189900         0
PrjFlt                                  2       189800         0
CldFlt                                  0       180451         0
FileCrypt                               0       141100         0
luafv                                   1       135000         0
npsvctrig                               1        46000         0
Wof                                     4        40700         0
FileInfo                                7        40500         0
"""

FILTERS_UCPD = """
Filter Name                     Num Instances    Altitude    Frame
------------------------------  -------------  ------------  -----
bindflt                                 1       409800         0
UCPD                                    4       385250.5       0
Minifilter-Driver                       4       370030         0
WdFilter                                4       328010         0
storqosflt                              0       244000         0
wcifs                                   0       189900         0
CldFlt                                  0       180451         0
FileCrypt                               0       141100         0
luafv                                   1       135000         0
npsvctrig                               1        46000         0
Wof                                     2        40700         0
FileInfo                                4        40500         0
"""

INSTANCES_SQL = r"""
Filter                Volume Name                              Altitude        Instance Name       Frame   SprtFtrs  VlStatus
--------------------  -------------------------------------  ------------  ----------------------  -----   --------  --------
CldFlt                C:                                        180451     CldFlt                    0     0000000f
FileInfo                                                         40500     FileInfo                  0     0000000f
FileInfo              C:                                         40500     FileInfo                  0     0000000f
MsSecFlt              C:                                        385600     MsSecFlt Instance         0     0000000f
RsFx0603              C:                                         41006.03  RsFx0603 MiniFilter Instance    0     00000000
RsFx0603              \Device\Mup                                41006.03  RsFx0603 MiniFilter Instance    0     00000000
WdFilter                                                        328010     WdFilter Instance         0     0000000f
WdFilter              C:                                        328010     WdFilter Instance         0     0000000f
WdFilter              X:\MSSQL15.SQL10\MSSQL\DATA               328010     WdFilter Instance         0     0000000f
bindflt               C:                                        409800     bindflt Instance          0     0000000f
"""

LEGACY_DOCS = """
C:\\Windows\\system32>fltmc filters

Filter Name                     Num Instances    Altitude    Frame
------------------------------  -------------  ------------  -----
AVLegacy                                        389998.99   <Legacy>
EncryptionLegacy                                149998.99   <Legacy>
AVMiniFilter                           3        328000         0
"""

GERMAN = """
Filtername                      Anzahl Instanzen  Höhe        Frame
------------------------------  ----------------  ----------  -----
PROCMON24                               3         385200         0
WdFilter                                4         328010         0
SophosED                                4         324050.5       0
Unbekannt                               1         312345         0
"""


def test_filters_below_procmon_with_groups_and_vendors():
    listing = parse_fltmc(FILTERS_WITH_LEGACY, source="f.txt")
    assert listing.tables == ("filters",)
    assert listing.cutoff == Decimal(385200) and listing.procmon is None
    below = [f.name for f in listing.below]
    assert below[:2] == ["CSAgent", "storqosflt"] and "bindflt" not in below
    cs = listing.below[0]
    assert (cs.instances, cs.frame, cs.group and cs.group.name) == (9, "0", "FSFilter Anti-Virus")
    assert [a.company for a in cs.allocations] == ["CrowdStrike Ltd."]
    assert [f.name for f in listing.unplaced] == ["cbfsconnect2017"]
    assert [f.name for f in listing.antivirus] == ["CSAgent"]


def test_fractional_altitudes_are_decimals():
    listing = parse_fltmc(FILTERS_UCPD)
    ucpd = next(f for f in listing.filters if f.name == "UCPD")
    assert ucpd.altitude == "385250.5" and ucpd not in listing.below
    assert listing.below[0].name == "Minifilter-Driver"  # 370030, Activity Monitor
    wd = next(f for f in listing.below if f.name == "WdFilter")
    assert wd.describe() == (
        "WdFilter at 328010: FSFilter Anti-Virus (detects and disinfects viruses during file "
        "I/O); WdFilter.sys by Microsoft"
    )
    assert group_of(Decimal("329999.5")).name == "FSFilter Anti-Virus"  # type: ignore[union-attr]


def test_instances_give_volumes_and_merge_with_filters():
    listing = parse_fltmc(FILTERS_UCPD + "\n" + INSTANCES_SQL)
    assert listing.tables == ("filters", "instances")
    wd = next(f for f in listing.filters if f.name == "WdFilter")
    assert wd.instances == 4
    assert wd.volumes == ("C:", r"X:\MSSQL15.SQL10\MSSQL\DATA")
    rsfx = next(f for f in listing.filters if f.name == "RsFx0603")
    assert rsfx.altitude == "41006.03" and rsfx.volumes == ("C:", r"\Device\Mup")
    assert rsfx.group.name == "FSFilter Bottom"  # type: ignore[union-attr]


def test_legacy_filters_with_an_altitude_and_no_instances():
    listing = parse_fltmc(LEGACY_DOCS)
    by_name = {f.name: f for f in listing.filters}
    assert by_name["AVLegacy"].altitude == "389998.99" and by_name["AVLegacy"].frame == "<Legacy>"
    assert by_name["AVLegacy"].instances is None
    assert [f.name for f in listing.below] == ["AVMiniFilter", "EncryptionLegacy"]
    assert "(legacy filter)" in by_name["EncryptionLegacy"].describe()


def test_localized_header_and_procmon_line_set_the_cutoff():
    listing = parse_fltmc(GERMAN)
    assert listing.procmon is not None and listing.procmon.name == "PROCMON24"
    assert [f.name for f in listing.below] == ["WdFilter", "SophosED", "Unbekannt"]
    sophos = listing.below[1]
    assert sophos.allocations == ()  # 324050.5 is not in the list; 324050 is
    assert "not in the bundled allocated-altitudes list" in listing.below[2].describe()


def test_a_procmon_at_another_altitude_moves_the_cutoff():
    text = GERMAN.replace("385200", "329000")
    assert [f.name for f in parse_fltmc(text).below] == ["WdFilter", "SophosED", "Unbekannt"]
    text = GERMAN.replace("385200", "325000")
    assert [f.name for f in parse_fltmc(text).below] == ["SophosED", "Unbekannt"]


def test_missing_columns_use_the_rule_positions():
    text = (
        "Filter Name                     Num Instances    Altitude    Frame\n"
        "------------------------------  -------------  ------------  -----\n"
        "NoCount                                         328010          0\n"
        "NoFrame                                 2       321410\n"
    )
    listing = parse_fltmc(text)
    by_name = {f.name: f for f in listing.filters}
    assert (by_name["NoCount"].instances, by_name["NoCount"].altitude) == (None, "328010")
    assert (by_name["NoFrame"].instances, by_name["NoFrame"].altitude) == (2, "321410")


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),  # PowerShell 5 '>'
        lambda t: t.encode("utf-8"),  # PowerShell 7
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("cp850"),  # cmd '>' (OEM code page)
        lambda t: t.encode("cp1252"),
    ],
)
def test_every_encoding_windows_writes(tmp_path, encode):
    path = tmp_path / "fltmc.txt"
    path.write_bytes(encode(GERMAN.replace("\n", "\r\n")))
    assert [f.name for f in read_fltmc(path).below] == ["WdFilter", "SophosED", "Unbekannt"]


def test_json_section():
    document = parse_fltmc(FILTERS_WITH_LEGACY, source="f.txt").to_dict()
    assert document["procmon_altitude"] == "385200" and document["procmon_listed"] is False
    first = document["below_procmon"][0]
    assert first["name"] == "CSAgent"
    assert first["load_order_group"]["range"] == "320000-329999"
    assert first["allocated_to"][0]["minifilter"] == "csagent.sys"
    assert any("allocated-altitudes" in line for line in document["altitude_list"])


# ---------------------------------------------------- the bundled altitude list


def _bundled_rows() -> list[dict[str, str]]:
    text = (
        resources.files("traceaudit.minifilters")
        .joinpath("data/allocated-altitudes.csv")
        .read_text("utf-8")
    )
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def test_the_bundled_list_is_the_whole_page():
    rows = _bundled_rows()
    assert len(rows) == 1740  # every table row of the 2020-03-11 page
    header = bundled_source()
    assert any("complete" in line for line in header)
    assert not any("partial" in line for line in header)
    assert any("page date (ms.date): 2020-03-11" in line for line in header)
    # Every group the page allocates in, down to FSFilter Bottom (FSFilter System says
    # "None."), under the names LOAD_ORDER_GROUPS uses, and each row inside its range.
    named = [g.name for g in LOAD_ORDER_GROUPS]
    assert sorted({r["load_order_group"] for r in rows}, key=named.index) == named[:-2]
    for row in rows:
        group = group_of(Decimal(row["altitude"]))
        assert group is not None and group.name == row["load_order_group"], row


@pytest.mark.parametrize(
    ("altitude", "minifilter", "company", "group"),
    [
        ("385200", "Procmon11.sys", "Microsoft", "FSFilter Activity Monitor"),
        ("328010", "WdFilter.sys", "Microsoft", "FSFilter Anti-Virus"),
        ("321410", "csagent.sys", "CrowdStrike Ltd.", "FSFilter Anti-Virus"),
        ("321300", "mfehidk.sys", "McAfee Inc.", "FSFilter Anti-Virus"),
        ("329000", "SRTSP.sys", "symantec", "FSFilter Anti-Virus"),
        ("244000", "storqosflt.sys", "Microsoft", "FSFilter Quota Management"),
        ("180451", "cldflt.sys", "Microsoft", "FSFilter HSM"),
        ("170500", "wimFltr.sys", "Microsoft", "FSFilter Imaging"),
        ("146790", "MfeEEFF.sys", "McAfee Inc.", "FSFilter Encryption"),
        ("135000", "luafv.sys", "Microsoft", "FSFilter Virtualization"),
        ("123900", "DroboFlt.sys", "Data Robotics", "FSFilter Physical Quota Management"),
        ("80680", "im.sys", "CrowdStrike", "FSFilter Security Enhancer"),
        ("87500", "ScuaRaw.sys", "SCUA Segurança da Informação", "FSFilter Security Enhancer"),
        ("40700", "wof.sys", "Microsoft", "FSFilter Bottom"),
    ],
)
def test_known_allocations_resolve(altitude, minifilter, company, group):
    owners = allocations_at(Decimal(altitude))
    assert (owners[0].minifilter, owners[0].company, owners[0].group) == (
        minifilter,
        company,
        group,
    )


def test_filters_in_low_groups_are_named_with_their_vendor():
    listing = parse_fltmc(FILTERS_WITH_LEGACY)
    by_name = {f.name: f for f in listing.below}
    assert by_name["FileCrypt"].describe() == (
        "FileCrypt at 141100: FSFilter Encryption (encrypts and decrypts data during file "
        "I/O); Filecrypt.sys by Microsoft"
    )
    assert [a.minifilter for a in by_name["luafv"].allocations] == ["luafv.sys"]
    assert [a.company for a in by_name["storqosflt"].allocations] == ["Microsoft"]
    assert all(f.allocations for f in listing.below)


# ------------------------------------------------------------------ errors


def test_error_not_fltmc_output():
    with pytest.raises(FltmcError) as caught:
        parse_fltmc("Name  Value\nfoo   1\n", source="notes.txt")
    assert str(caught.value) == (
        "notes.txt: not the output of fltmc: no 'fltmc filters' or 'fltmc instances' table in "
        "it (column names, a line of dashes under them, then one filter per line). Save it "
        "from a prompt opened as administrator: fltmc filters > filters.txt (fltmc instances "
        "may follow in the same file)."
    )


def test_error_fltmc_not_run_as_administrator():
    text = "\nFilter listing failed with error: 0x80070005\nAccess is denied.\n"
    with pytest.raises(FltmcError) as caught:
        parse_fltmc(text, source="f.txt")
    assert str(caught.value) == (
        "f.txt: fltmc could not list the filters (error 0x80070005, access denied). Save it "
        "from a prompt opened as administrator: fltmc filters > filters.txt (fltmc instances "
        "may follow in the same file)."
    )


def test_error_cli_file_that_is_not_fltmc_output(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\nworld\n", encoding="utf-8")
    trace = tmp_path / "t.csv"
    trace.write_text("x\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["analyze", str(trace), "--filters", str(notes)])
    assert result.exit_code == 3
    assert result.stderr == (
        "error: notes.txt: not the output of fltmc: no 'fltmc filters' or 'fltmc instances' "
        "table in it (column names, a line of dashes under them, then one filter per line). "
        "Save it from a prompt opened as administrator: fltmc filters > filters.txt (fltmc "
        "instances may follow in the same file).\n"
    )


def test_error_empty_and_binary_files():
    with pytest.raises(FltmcError, match=r"^e\.txt: the file is empty\. Save it"):
        parse_fltmc("  \r\n", source="e.txt")
    with pytest.raises(FltmcError, match=r"^b\.bin: not a text file, so not the output of fltmc"):
        parse_fltmc("PML_\x00\x00\x00", source="b.bin")


# ------------------------------------------------------------------ the report's wording

TARGET = r"C:\Users\dev\proj\build\out.dll"


def _story() -> Story:
    """link.exe cannot open out.dll (SHARING VIOLATION) and nothing in the trace holds it;
    three other processes open and close files, so the capture could show a holder."""
    story = Story()
    story.open_(0, 10, r"C:\Users\dev\proj\main.obj", process="link.exe")
    story.close(0.5, 10, r"C:\Users\dev\proj\main.obj")
    story.fail_open(1, 10, TARGET, access="w", share="", process="link.exe")
    story.open_(3, 10, TARGET, access="w", share="", process="link.exe").close(4, 10, TARGET)
    story.elsewhere(0.2, 20, process="Code.exe").elsewhere(0.3, 30, process="git.exe")
    return story


def _analysis(events: pl.DataFrame, **kwargs):
    return analyze(Trace(events=events, format="simulated", source=Path("cap.csv")), **kwargs)


def test_a_complete_capture_names_the_minifilter_layer():
    report = _analysis(_story().events())
    assert report.conflicts["verdict"].to_list() == ["no-holder-filtered"]
    assert report.conflicts["unseen_holder"].to_list() == ["below-procmon"]
    text = report.to_text()
    assert "most likely a minifilter below Procmon (antivirus or EDR), unless a filter" in text
    assert "the holder was most likely filtered out" not in text
    assert "1 no holder in the trace (a minifilter below Procmon, or filtered out?)" in text
    assert "the holder is most likely a minifilter below Procmon" in text  # no retry advice
    assert report.warnings[0].startswith("cap.csv: 1 failure (CreateFile SHARING VIOLATION)")
    assert "run 'fltmc filters' as administrator" in report.warnings[0]
    assert "'traceaudit capture-profile' shows how" in report.warnings[0]
    document = report.to_dict()
    assert document["trace"]["completeness"]["holders_visible"] is True
    assert document["conflicts"][0]["unseen_holder"] == "below-procmon"
    assert "minifilters" not in document


def test_a_one_process_capture_keeps_filtered_out():
    events = _story().events().filter(pl.col("pid") == 10)
    report = _analysis(events)
    assert report.conflicts["unseen_holder"].to_list() == ["outside-capture"]
    text = report.to_text()
    assert "the holder was most likely filtered out" in text
    assert "minifilter" not in text.lower()
    assert report.to_dict()["trace"]["completeness"]["holders_visible"] is False


def test_filters_listing_in_the_answer_text_and_json(tmp_path):
    path = tmp_path / "fltmc.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + FILTERS_UCPD.encode("utf-16-le"))
    report = _analysis(_story().events(), filters=path)
    text = report.to_text()
    assert (
        "Below       10 minifilters below Procmon in fltmc.txt: WdFilter (328010, FSFilter "
        "Anti-Virus, Microsoft), Minifilter-Driver (370030, FSFilter Activity Monitor, "
        "Microsoft)"
    ) in text
    assert "Minifilters below Procmon (385200, PROCMON24's altitude" in text
    document = json.loads(report.to_json())
    assert [f["name"] for f in document["minifilters"]["below_procmon"]][:2] == [
        "Minifilter-Driver",
        "WdFilter",
    ]


def test_cli_filters_option(tmp_path):
    path = tmp_path / "fltmc.txt"
    path.write_text(FILTERS_WITH_LEGACY, encoding="utf-8")
    trace = tmp_path / "cap.parquet"
    _story().events().write_parquet(trace)
    result = CliRunner().invoke(main, ["analyze", str(trace), "--filters", str(path), "--json"])
    if result.exit_code != 0:  # the parquet writer's schema may differ: use the API form
        pytest.skip(f"trace not readable as parquet here: {result.stderr}")
    assert json.loads(result.stdout)["minifilters"]["below_procmon"][0]["name"] == "CSAgent"


def test_the_html_report_lists_the_minifilters_below_procmon(tmp_path):
    path = tmp_path / "fltmc.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + FILTERS_UCPD.encode("utf-16-le"))
    page = render_html(_analysis(_story().events(), filters=path))
    section = page[page.index('<section id="minifilters">') :]
    section = section[: section.index("</section>")]
    assert "<td>WdFilter</td>" in section and "FSFilter Anti-Virus" in section
    assert '<a href="#minifilters">' in page
    assert 'id="minifilters"' not in render_html(_analysis(_story().events()))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            st.sampled_from(
                [
                    "Filter Name                     Num Instances    Altitude    Frame",
                    "------------------------------  -------------  ------------  -----",
                    "Filter                Volume Name                              Altitude        Instance Name       Frame",
                    "--------------------  -------------------------------------  ------------  ----------------------  -----",
                    "WdFilter                                8       328010         0",
                    "PROCMON24                               1       385200         0",
                    "bad                                     x       3.2.1          z",
                ]
            ),
        ),
        max_size=12,
    )
)
def test_any_text_parses_or_gives_a_clear_error(lines):
    """A saved file can hold anything: the parser returns a listing or raises FltmcError,
    never anything else, and every filter it returns below Procmon is below its cutoff."""
    try:
        listing = parse_fltmc("\n".join(lines), source="x.txt")
    except FltmcError as exc:
        assert str(exc).startswith("x.txt: ")
        return
    for f in listing.below:
        assert f.value is not None and f.value < listing.cutoff
