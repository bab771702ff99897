"""The docs the code cites are in the repository and agree with the code.

``docs/retry-policies.md`` must name every known policy, the repository (and commit) each
was read from, and quote the same attempts, triggers and worst-case wait as the code;
every ``docs/….md`` path cited in ``src/`` or ``tests/`` must exist, and every section a
citation names (``docs/formats.md §1.4``) must be a heading of that file.
"""

from __future__ import annotations

import re

import pytest

from locations import ROOT
from traceaudit.policy import KNOWN_POLICIES, KnownPolicy

POLICIES_DOC = ROOT / "docs" / "retry-policies.md"
POLICIES_TEXT = POLICIES_DOC.read_text(encoding="utf-8")

# A repository-relative docs path (not some other project's ``…/docs/x.md``), with an
# optional section sign after it.
_CITATION = re.compile(r"(?<![\w/.-])(docs/[\w.-]+\.md)(?:'s)?(?:\s*§\s*(\d+(?:\.\d+)*))?")


def _citations() -> list[tuple[str, str, str | None]]:
    """(citing file, cited docs path, section or None) for every citation in src/ and tests/."""
    found = []
    for folder in (ROOT / "src", ROOT / "tests"):
        for path in sorted(folder.rglob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for match in _CITATION.finditer(text):
                found.append((str(path.relative_to(ROOT)), match.group(1), match.group(2)))
    return found


def _summary_row(tool: str) -> list[str]:
    """The cells of the summary-table row of ``tool``."""
    for line in POLICIES_TEXT.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == tool:
            return cells
    raise AssertionError(f"{tool!r} has no row in the summary table of {POLICIES_DOC.name}")


def _has_number(text: str, number: float) -> bool:
    return re.search(rf"(?<![\d.,]){number:g}(?![\d,]|\.\d)", text) is not None


def _wait_text(ms: float) -> str:
    return f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"


@pytest.mark.parametrize("policy", KNOWN_POLICIES, ids=lambda p: p.tool)
def test_every_known_policy_is_in_the_doc_with_its_source(policy: KnownPolicy):
    assert policy.tool in POLICIES_TEXT
    repository = policy.source.split()[0].split("@")[0]
    assert repository in POLICIES_TEXT
    for commit in re.findall(r"@([0-9a-f]{7,40})\b", policy.source):
        assert commit in POLICIES_TEXT, f"{policy.tool}: commit {commit} is not in the doc"


@pytest.mark.parametrize("policy", KNOWN_POLICIES, ids=lambda p: p.tool)
def test_the_summary_row_agrees_with_the_code(policy: KnownPolicy):
    _, version, triggers, _, attempts, wait = _summary_row(policy.tool)
    assert version == policy.version
    if policy.any_error:
        assert "any" in triggers
    else:
        quoted = {int(n) for n in re.findall(r"\d+", triggers)} & {2, 5, 32, 33}
        assert quoted == set(policy.triggers)
    if policy.jittered:
        return  # the prose gives their ranges; the policy tests check those
    schedule = policy.schedule()
    assert _has_number(attempts, schedule.attempts), (attempts, schedule.attempts)
    assert _wait_text(schedule.total_ms) in wait, (wait, schedule.total_ms)


def test_the_jittered_policies_bounds_are_quoted():
    rows = {p.tool: _summary_row(p.tool) for p in KNOWN_POLICIES if p.jittered}
    assert "under 2 s" in rows["Go cmd/go robustio"][5]
    assert "317.81 s" in rows["rustup rename"][5]  # sum of the 26 Fibonacci delays
    assert "6.3–6.9 s" in rows["conda"][5]  # 6300 ms of base plus 6 × U[0, 100)


def test_every_cited_docs_path_exists():
    citations = _citations()
    cited = {doc for _, doc, _ in citations}
    assert {"docs/retry-policies.md", "docs/formats.md"} <= cited
    missing = sorted({(source, doc) for source, doc, _ in citations if not (ROOT / doc).is_file()})
    assert missing == []


def test_every_cited_section_is_a_heading():
    missing = []
    for source, doc, section in _citations():
        if section is None or not (ROOT / doc).is_file():
            continue
        text = (ROOT / doc).read_text(encoding="utf-8")
        if not re.search(rf"^#+ {re.escape(section)}\.?\s", text, flags=re.MULTILINE):
            missing.append((source, doc, section))
    assert missing == []


def test_no_citation_of_the_notes_outside_the_repository():
    stale = []
    for folder in (ROOT / "src", ROOT / "tests"):
        for path in folder.rglob("*.py"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if re.search(r"BACKOFF-POLICIES\.md|(?<![\w/])FORMATS\.md", text):
                stale.append(str(path.relative_to(ROOT)))
    assert stale == []


def test_the_readme_points_at_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`docs/retry-policies.md`" in readme and "`docs/formats.md`" in readme
