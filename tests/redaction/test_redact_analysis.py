"""Redaction keeps the analysis: ``analyze(redact(t))`` finds what ``analyze(t)`` finds.

Same number of events; the same conflicts (row, operation, result, verdict, remaining
time); the same number of blockers per conflict with the same pids, times, access and
share modes; the same lock windows. Names differ, but consistently: every original path
or process name maps to exactly one pseudonymised one and back (compared lower-cased, as
the analysis compares them).

Checked on simulated traces of every family and on mixes (hypothesis picks the seeds),
on the bundled samples, and on the real corpus when it is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locations import CORPUS, SAMPLES
from traceaudit.pipeline import analyze
from traceaudit.redaction.redactor import redact
from traceaudit.simulation.generate import FAMILY_NAMES, simulate, simulate_mix

KEY = b"analysis-equivalence-test-key-32"
SAMPLES = SAMPLES
SLOW = settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _conflict_shape(conflict: dict[str, Any]) -> tuple[Any, ...]:
    blockers = sorted(
        (b["pid"], b["opened"], b["closed"], b["access"], b["share_mode"], b["relation"], b["own"])
        for b in conflict["blockers"]
    )
    return (
        conflict["row"],
        conflict["time"],
        conflict["pid"],
        conflict["operation"],
        conflict["result"],
        conflict["error_code"],
        conflict["verdict"],
        conflict["remaining_ms"],
        conflict["censored"],
        conflict["rename_target"] is None,
        tuple(blockers),
    )


def _names(conflict: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) pairs of a conflict, blockers in a stable order."""
    pairs = [("path", conflict["path"]), ("process", conflict["process"])]
    if conflict["rename_target"] is not None:
        pairs.append(("path", conflict["rename_target"]))
    for b in sorted(conflict["blockers"], key=lambda b: (b["pid"], b["opened"], b["closed"] or "")):
        pairs += [("path", b["path"]), ("process", b["process"])]
    return pairs


def assert_same_analysis(original: Path, redacted: Path) -> None:
    """The analyses of ``original`` and ``redacted`` agree up to a renaming."""
    before, after = analyze(original).to_dict(), analyze(redacted).to_dict()
    assert after["trace"]["events"] == before["trace"]["events"]
    assert after["trace"]["skipped_rows"] == before["trace"]["skipped_rows"]
    assert [_conflict_shape(c) for c in after["conflicts"]] == [
        _conflict_shape(c) for c in before["conflicts"]
    ]
    assert after["windows"]["overall"] == before["windows"]["overall"]
    strip = [
        {k: v for k, v in w.items() if k != "blocker"} for w in before["windows"]["by_process"]
    ]
    assert [
        {k: v for k, v in w.items() if k != "blocker"} for w in after["windows"]["by_process"]
    ] == strip
    assert [(r["attempts"], r["failures"], r["succeeded"]) for r in after["retries"]] == [
        (r["attempts"], r["failures"], r["succeeded"]) for r in before["retries"]
    ]
    forward: dict[tuple[str, str], str] = {}
    backward: dict[tuple[str, str], str] = {}
    pairs = [
        (kind, a, b)
        for ca, cb in zip(before["conflicts"], after["conflicts"], strict=True)
        for (kind, a), (_, b) in zip(_names(ca), _names(cb), strict=True)
    ]
    pairs += [
        ("process", wa["blocker"], wb["blocker"])
        for wa, wb in zip(
            before["windows"]["by_process"], after["windows"]["by_process"], strict=True
        )
    ]
    for kind, a, b in pairs:
        assert forward.setdefault((kind, a.lower()), b.lower()) == b.lower(), (a, b)
        assert backward.setdefault((kind, b.lower()), a.lower()) == a.lower(), (a, b)


def _round_trip(tmp_path: Path, source: Path, suffix: str = ".csv") -> Path:
    out = tmp_path / ("redacted" + suffix)
    redact(source, out, key=KEY)
    return out


@pytest.mark.parametrize("family", FAMILY_NAMES)
@SLOW
@given(seed=st.integers(0, 100_000))
def test_simulated_family_keeps_its_analysis(tmp_path, family, seed):
    source = simulate(family, seed=seed).write_csv(tmp_path / f"{family}.csv")
    assert_same_analysis(source, _round_trip(tmp_path, source))


@SLOW
@given(seed=st.integers(0, 100_000))
def test_simulated_mix_keeps_its_analysis(tmp_path, seed):
    source = simulate_mix(3000, seed=seed).write_csv(tmp_path / "mix.csv")
    assert_same_analysis(source, _round_trip(tmp_path, source))


def test_simulated_clipboard_text_keeps_its_analysis(tmp_path):
    source = simulate("extract-rename", seed=9).write_clipboard(tmp_path / "pasted.tsv")
    assert_same_analysis(source, _round_trip(tmp_path, source, ".tsv"))


@pytest.mark.parametrize(
    "name",
    [
        "uv-extract-rename.csv",
        "replace-under-indexer.csv",
        "mixed-small.csv",
        "uv-issue-pasted.tsv",
    ],
)
def test_sample_keeps_its_analysis(tmp_path, name):
    source = SAMPLES / name
    out = _round_trip(tmp_path, source, source.suffix)
    assert_same_analysis(source, out)
    assert analyze(out).conflicts.height == analyze(source).conflicts.height > 0


def test_samples_are_all_covered():
    names = {p.name for p in SAMPLES.iterdir() if p.suffix in (".csv", ".tsv")}
    assert names == {
        "uv-extract-rename.csv",
        "replace-under-indexer.csv",
        "mixed-small.csv",
        "uv-issue-pasted.tsv",
    }


def _corpus(*patterns: str) -> list[str]:
    """Corpus files (relative paths) matching ``patterns``; a placeholder when the corpus
    is absent, so the test is collected and then skipped by the ``corpus`` fixture."""
    if not CORPUS.is_dir():
        return ["(corpus absent)"]
    return sorted(
        str(p.relative_to(CORPUS).as_posix()) for pat in patterns for p in CORPUS.glob(pat)
    )


CORPUS_TRACES = _corpus("procmon-csv/*.csv", "procmon-pairs/*.csv.gz", "procmon-xml/*.xml")


@pytest.mark.parametrize("relative", CORPUS_TRACES)
def test_corpus_trace_keeps_its_analysis(tmp_path, corpus, relative):
    source = corpus / relative
    suffix = "".join(source.suffixes[-2:]) if source.suffix == ".gz" else source.suffix
    assert_same_analysis(source, _round_trip(tmp_path, source, suffix))
