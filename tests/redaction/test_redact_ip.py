"""IP addresses in ``traceaudit redact``: which dotted quads are addresses, and pseudonyms
that keep an address's kind.

Four numbers and three dots are an address or a version, and the rule leans towards
address (a leaked address costs more than a hidden version): an address unless glued to
a name, after a version keyword, ending in ``.0.0`` or a folder under ``Windows`` /
``Program Files``; an IP context (``\\\\``, ``http://``, ``:port``, ``--server``,
``Data:``…) always means address. See ``traceaudit.redaction.shapes``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from pathlib import Path

import pytest

from traceaudit.formats import load_trace
from traceaudit.redaction.keys import Pseudonyms
from traceaudit.redaction.redactor import redact
from traceaudit.redaction.shapes import find_addresses, ip_maker

KEY = bytes(range(32))
COLUMNS = ("Time of Day", "Process Name", "PID", "Operation", "Path", "Result", "Detail")


@pytest.mark.parametrize(
    ("text", "addresses"),
    [
        # IP contexts
        ("tool.exe --server 10.23.45.67 --port 8080", ["10.23.45.67"]),
        ("Type: REG_SZ, Length: 28, Data: 192.168.127.2", ["192.168.127.2"]),
        ("fetch http://140.82.112.4:443/x", ["140.82.112.4"]),
        ("\\\\10.1.2.3\\share", ["10.1.2.3"]),
        ("saddr=10.128.0.117; sport=52", ["10.128.0.117"]),
        ("bob@10.1.2.3", ["10.1.2.3"]),
        ("--server 10.20.0.0", ["10.20.0.0"]),  # context beats the .0.0 rule
        ("Data: 4.0.0.0", ["4.0.0.0"]),
        ("route 10.1.0.0/16", ["10.1.0.0"]),
        ("10.1.0.0:8080", ["10.1.0.0"]),
        # no context at all: an address
        ("10.1.2.3", ["10.1.2.3"]),
        ("8.8.8.8", ["8.8.8.8"]),
        ("10.1.2.3.log", ["10.1.2.3"]),
        ("backup 10.1.2.3", ["10.1.2.3"]),
        # versions
        ("numpy-1.2.3.4", []),
        ("Package_for_KB4493441~31bf3856ad364e35~amd64~~10.0.1.5.cat", []),
        ("v4.0.0.0", []),
        ("x.1.2.3.4", []),
        ("System.Xml, Version=4.0.0.0, Culture=neutral", []),
        ("FileVersion: 1.2.3.4", []),
        ("Index: 129, Name: System.ServiceModel 4.0.0.0", []),
        ("Office 15.0.0.0", []),
        ("Version 10.0.19041.1", []),
        ("Microsoft.NET\\Framework\\v4.0.30319", []),
        ("4.18.2001.10-0", []),
        ("1.2.3.4.5", []),
        ("256.1.2.3", []),
        # addresses that identify no one
        ("127.0.0.1:8888", []),
        ("224.0.0.252:llmnr", []),
        ("255.255.255.255", []),
        ("0.0.0.0", []),
        ("192.0.2.7", []),
        # IPv6
        ("http://[fe80::1]:80/", ["fe80::1"]),
        ("DnsServers=2606:4700::1111", ["2606:4700::1111"]),
        ("::1", []),
        ("ff02::1:2", []),
        ("2001:db8::5", []),
        ("7:19:37 and 1:18:10", []),
    ],
)
def test_which_dotted_quads_are_addresses(text, addresses):
    assert list(find_addresses(text)) == addresses


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("10.23.45.67", "10.0.0.0/8"),
        ("172.20.1.5", "172.16.0.0/12"),
        ("192.168.127.2", "192.168.0.0/16"),
        ("169.254.3.4", "169.254.1.0/16"),
        ("100.64.1.1", "100.64.0.0/10"),
        ("fe80::1", "fe80::/64"),
        ("fd12:3456::1", "fd00::/8"),
        ("2606:4700::1111", "2001:db8::/32"),
    ],
)
def test_an_address_stays_in_its_kind(address, network):
    make = ip_maker(Pseudonyms(KEY), address)
    block = ipaddress.ip_network(network, strict=False)
    made = [ipaddress.ip_address(make(f"{address}#{n}", 0)) for n in range(300)]
    assert all(a in block for a in made)
    assert len(set(made)) > 290  # keyed: spread over the block
    if block.version == 4:
        assert all(0 < a.packed[3] < 255 for a in made)  # a host stays a host
    if network.startswith("169.254"):
        assert all(0 < a.packed[2] < 255 for a in made)  # 169.254.1.0 - 169.254.254.255


def test_a_public_address_becomes_another_public_one():
    make = ip_maker(Pseudonyms(KEY), "140.82.112.4")
    made = [ipaddress.ip_address(make(f"public#{n}", 0)) for n in range(500)]
    assert all(a.is_global and not a.is_private for a in made)


def test_network_broadcast_and_mapped_addresses_keep_their_shape():
    pseudo = Pseudonyms(KEY)
    assert ip_maker(pseudo, "192.168.2.255")("192.168.2.255", 0).endswith(".255")
    assert ip_maker(pseudo, "10.1.2.0")("10.1.2.0", 0).endswith(".0")
    mapped = ip_maker(pseudo, "::ffff:10.1.2.3")("::ffff:10.1.2.3", 0)
    assert mapped.startswith("::ffff:10.")


# --------------------------------------------------------------------------- end to end


def _csv(rows: list[tuple[str, ...]]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, (process, op, path, detail) in enumerate(rows):
        writer.writerow([f"7:19:{n:02d}.0000000 AM", process, "4410", op, path, "SUCCESS", detail])
    return buffer.getvalue()


START = (
    "Parent PID: 4, Command line: sync.exe --server 10.23.45.67 --port 8080, Current "
    "directory: C:\\Windows\\system32\\"
)
ROWS = [
    ("sync.exe", "Process Start", "", START),
    ("sync.exe", "RegQueryValue", "HKLM\\Software\\Sync\\Server", "Data: 10.23.45.67"),
    ("svchost.exe", "RegQueryValue", "HKLM\\System\\Dns", "Type: REG_SZ, Data: 192.168.127.2"),
    ("sync.exe", "TCP Connect", "WKSTN-ORION:50123 -> 140.82.112.4:https", "Length: 0"),
    ("sync.exe", "CreateFile", "\\\\172.20.1.5\\share\\db.bak", ""),
    ("sync.exe", "CreateFile", "C:\\backups\\169.254.3.4\\db.bak", ""),
    ("sync.exe", "CreateFile", "\\\\[fe80::1]\\share\\db.bak", ""),
    ("sync.exe", "CreateFile", "\\\\fe80--2s4.ipv6-literal.net\\share\\db.bak", ""),
    ("sync.exe", "RegQueryValue", "HKCU\\Software\\Sync\\Url", "Data: http://127.0.0.1:8888/"),
    (
        "powershell.exe",
        "CreateFile",
        "C:\\Program Files\\WindowsPowerShell\\Modules\\PackageManagement\\1.0.0.1\\p.psd1",
        "",
    ),
    ("sync.exe", "RegQueryValue", "HKCR\\Record\\x", "Data: System.Xml, Version=4.0.0.0"),
    ("sync.exe", "CreateFile", "C:\\Windows\\Microsoft.NET\\Framework\\v4.0.30319\\a.dll", ""),
]
ADDRESSES = ["10.23.45.67", "192.168.127.2", "140.82.112.4", "172.20.1.5", "169.254.3.4"]


def test_addresses_are_replaced_everywhere_and_versions_stay(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(_csv(ROWS).encode("utf-8-sig"))
    out = tmp_path / "out.csv"
    result = redact(source, out, key=KEY, map_path=tmp_path / "map.json")
    text = out.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    for address in ADDRESSES + ["fe80::1", "fe80--2s4"]:
        assert address not in text, address
    table = json.loads((tmp_path / "map.json").read_text(encoding="utf-8"))["classes"]["ip"]
    back = {original: fake for fake, original in table.items()}
    # the same address gets the same pseudonym in the command line and the registry
    assert f"--server {back['10.23.45.67']} --port 8080" in rows[1][6]
    assert rows[2][6] == f"Data: {back['10.23.45.67']}"
    for original, network in [
        ("10.23.45.67", "10.0.0.0/8"),
        ("192.168.127.2", "192.168.0.0/16"),
        ("172.20.1.5", "172.16.0.0/12"),
        ("169.254.3.4", "169.254.0.0/16"),
        ("fe80::1", "fe80::/64"),
        ("fe80::2", "fe80::/64"),
    ]:
        assert ipaddress.ip_address(back[original]) in ipaddress.ip_network(network), original
    assert ipaddress.ip_address(back["140.82.112.4"]).is_global
    assert rows[4][4].endswith(f" -> {back['140.82.112.4']}:https")
    assert rows[5][4].startswith(f"\\\\{back['172.20.1.5']}\\")
    assert rows[6][4].split("\\")[2] == back["169.254.3.4"]  # C:\backups\<address>\db.bak
    assert rows[7][4].startswith(f"\\\\[{back['fe80::1']}]\\")
    literal = back["fe80::2"].replace(":", "-") + "s4.ipv6-literal.net"
    assert rows[8][4].startswith(f"\\\\{literal}\\share\\")
    # kept: loopback, versions
    assert rows[9][6] == "Data: http://127.0.0.1:8888/"
    assert rows[10][4] == ROWS[9][2]
    assert rows[11][6] == "Data: System.Xml, Version=4.0.0.0"
    assert rows[12][4] == ROWS[11][2]
    assert result.counts["ip"] == 7
    assert load_trace(out).events.height == len(ROWS)


def test_keep_ip_leaves_every_address(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(_csv(ROWS).encode("utf-8-sig"))
    result = redact(source, tmp_path / "out.csv", key=KEY, keep=["ip"])
    text = (tmp_path / "out.csv").read_text(encoding="utf-8-sig")
    for address in ADDRESSES + ["[fe80::1]", "fe80--2s4.ipv6-literal.net"]:
        assert address in text, address
    assert "ip" not in result.counts


def test_the_same_key_gives_an_address_the_same_pseudonym_in_every_file(tmp_path):
    one = tmp_path / "one.csv"
    one.write_bytes(_csv(ROWS[:2]).encode("utf-8-sig"))
    two = tmp_path / "two.csv"
    two.write_bytes(_csv([ROWS[1]]).encode("utf-8-sig"))
    redact(one, tmp_path / "a.csv", key=KEY)
    redact(two, tmp_path / "b.csv", key=KEY)
    a = list(csv.reader(io.StringIO((tmp_path / "a.csv").read_text(encoding="utf-8-sig"))))
    b = list(csv.reader(io.StringIO((tmp_path / "b.csv").read_text(encoding="utf-8-sig"))))
    assert a[2][6] == b[1][6] != ROWS[1][3]


# --------------------------------------------------------------------------- corpus

CORPUS_ADDRESSES = {
    "procmon-pairs/Tests32bit.csv.gz": ["192.168.127.2"],
    "procmon-pairs/Tests64bit.csv.gz": ["192.168.127.2"],
    "procmon-csv/yara-with-tid.csv": ["52.219.88.35", "10.0.2.15"],
    "procmon-csv/noriben-2013.csv": ["83.133.123.20", "50.22.196.70", "192.168.2.255"],
}


@pytest.mark.parametrize("relative", sorted(CORPUS_ADDRESSES))
def test_real_captures_lose_their_addresses(tmp_path, corpus, relative):
    import gzip

    source = corpus / relative
    out = tmp_path / ("out.csv.gz" if source.suffix == ".gz" else "out.csv")
    result = redact(source, out, key=KEY)
    data = out.read_bytes()
    text = (gzip.decompress(data) if source.suffix == ".gz" else data).decode("utf-8-sig")
    for address in CORPUS_ADDRESSES[relative]:
        assert address not in text, address
    assert result.counts["ip"] >= len(CORPUS_ADDRESSES[relative])


def test_versions_in_real_captures_stay(tmp_path, corpus):
    """PowerShell module folders (Program Files) and assembly versions are not addresses."""
    out = tmp_path / "out.csv"
    redact(corpus / "procmon-csv/exe-to-pdf.csv", out, key=KEY)
    text = out.read_text(encoding="utf-8-sig")
    assert "\\Modules\\PackageManagement\\1.0.0.1\\" in text
    assert "\\Modules\\PSWindowsUpdate\\1.5.2.2\\" in text
    assert "Version=4.0.0.0" in text


def test_a_path_component_that_is_an_address_keeps_the_tree(tmp_path):
    rows = [
        ("sync.exe", "CreateFile", "C:\\backups\\10.1.2.3", ""),
        ("sync.exe", "CreateFile", "C:\\backups\\10.1.2.3\\db.bak", ""),
        ("sync.exe", "CreateFile", "C:\\backups\\10.1.2.3.log", ""),
    ]
    source = tmp_path / "in.csv"
    source.write_bytes(_csv(rows).encode("utf-8-sig"))
    redact(source, tmp_path / "out.csv", key=KEY)
    out = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8-sig"))))
    folder = out[1][4]
    assert out[2][4].startswith(folder + "\\") and out[2][4].endswith(".bak")
    assert out[3][4] == folder + ".log"
    assert ipaddress.ip_address(folder.rsplit("\\", 1)[1]) in ipaddress.ip_network("10.0.0.0/8")


def test_the_output_still_reads_as_the_same_trace(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(_csv(ROWS).encode("utf-8-sig"))
    redact(source, tmp_path / "out.csv", key=KEY)
    before, after = load_trace(source).events, load_trace(tmp_path / "out.csv").events
    assert before["operation"].to_list() == after["operation"].to_list()
    assert Path(tmp_path / "out.csv").stat().st_size > 0
