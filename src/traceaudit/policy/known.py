"""Real tools' retry policies for transient Windows file errors, as data.

Every entry is transcribed from ``docs/retry-policies.md`` (which cites each tool's source
at a commit). A :class:`KnownPolicy` holds the tool, the error codes it retries on, and a
schedule *kind* with its parameters; :data:`SCHEDULE_KINDS` is the dispatch table that
turns a kind into delays. Jittered kinds draw from a seeded ``numpy`` Generator so that a
replay is the same every run.

Error codes are the Win32 codes the application saw: 5 ERROR_ACCESS_DENIED,
32 ERROR_SHARING_VIOLATION, 33 ERROR_LOCK_VIOLATION (and 2 FILE_NOT_FOUND for Go). Each
tool's trigger set already applies its runtime's mapping (Rust std maps only 5 to
``PermissionDenied``; libuv maps 5 to EPERM and 32/33 to EBUSY; Python maps all three to
EACCES).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from traceaudit.errors import UsageError
from traceaudit.policy.schedule import Schedule

__all__ = [
    "KnownPolicy",
    "KNOWN_POLICIES",
    "SCHEDULE_KINDS",
    "JITTERED_KINDS",
    "known_policy",
    "format_triggers",
]

ERROR_NAMES: dict[int, str] = {
    2: "FILE_NOT_FOUND",
    5: "ACCESS_DENIED",
    32: "SHARING_VIOLATION",
    33: "LOCK_VIOLATION",
}


def format_triggers(triggers: frozenset[int] | tuple[int, ...], any_error: bool = False) -> str:
    """Display a trigger set as ``"5"`` / ``"5,32"`` (or ``"any"`` for catch-all policies)."""
    if any_error:
        return "any"
    return ",".join(str(c) for c in sorted(triggers)) if triggers else "none"


# ---------------------------------------------------------------------------------------
# Schedule kinds. Each takes the policy's parameters and a Generator (ignored by the
# deterministic ones) and returns a Schedule. Times in ms; the clock starts at the first
# failure and the operations themselves take no time.


def _exponential(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """``initial·factor^k`` capped at ``cap``, ``retries`` delays; optional sleep after the last."""
    delays = [float(p["initial"]) * float(p["factor"]) ** k for k in range(int(p["retries"]))]
    if p.get("cap") is not None:
        delays = [min(d, float(p["cap"])) for d in delays]
    final = 0.0
    if p.get("sleep_after_last"):
        final = float(p["initial"]) * float(p["factor"]) ** int(p["retries"])
        if p.get("cap") is not None:
            final = min(final, float(p["cap"]))
    return Schedule.of(delays, final)


def _fixed(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """The same delay ``retries`` times."""
    return Schedule.of([float(p["delay"])] * int(p["retries"]))


def _table(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """A literal list of delays (Git for Windows' ``{0, 1, 10, 20, 40}``)."""
    return Schedule.of(p["delays"])


def _none(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """No retry at all."""
    return Schedule.of([])


def _fixed_deadline(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """pip's ``retry``: sleep ``delay`` after each failure while elapsed < ``deadline``.

    pip's test is ``elapsed > stop_after_delay → raise``. With operations taking no time the
    failure at exactly 3.0 s would sleep once more; real operations take a little time, so
    the boundary counts as reached (which gives the document's "about 7 and 5" attempts).
    """
    delay, deadline = float(p["delay"]), float(p["deadline"])
    delays: list[float] = []
    elapsed = 0.0
    while elapsed < deadline:
        delays.append(delay)
        elapsed += delay
    return Schedule.of(delays)


def _linear_deadline(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """graceful-fs ``rename``: backoff 0, +``step`` per retry up to ``cap``, while elapsed < deadline."""
    step, cap, deadline = float(p["step"]), float(p["cap"]), float(p["deadline"])
    delays: list[float] = []
    backoff = float(p.get("first", 0.0))
    elapsed = 0.0
    while elapsed < deadline:
        delays.append(backoff)
        elapsed += backoff
        if backoff < cap:
            backoff += step
    return Schedule.of(delays)


def _go_robustio(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """cmd/go robustio ``retry``: sleep 1 ms, then ``next += U[0, next)``; stop when elapsed+next ≥ timeout.

    The first sleep is unconditional (the clock starts at the first failure); later failures
    break out when ``time.Since(start) + nextSleep >= arbitraryTimeout``.
    """
    timeout = float(p["timeout"])
    nxt = float(p["initial"])
    delays = [nxt]
    elapsed = nxt
    nxt += rng.uniform(0.0, nxt)
    while elapsed + nxt < timeout:
        delays.append(nxt)
        elapsed += nxt
        nxt += rng.uniform(0.0, nxt)
    return Schedule.of(delays)


def _fibonacci_full_jitter(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """rustup (crate ``retry``): Fibonacci from ``first`` ms, each delay × U[0, 1), ``count`` delays."""
    fib = np.empty(int(p["count"]))
    a, b = float(p["first"]), float(p["first"])
    for i in range(len(fib)):
        fib[i] = a
        a, b = b, a + b
    return Schedule.of(fib * rng.random(len(fib)))


def _conda(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """conda ``exp_backoff_fn``: sleep ``(2**n + U[0,1)) * 100 ms`` for n = 0 … tries-2."""
    base = float(p["base"])
    n = np.arange(int(p["tries"]) - 1)
    return Schedule.of((2.0**n + rng.random(len(n))) * base)


def _rimraf(p: Mapping[str, Any], rng: np.random.Generator) -> Schedule:
    """rimraf ``retryBusy``: backoff = ceil(backoff × rate) from 1, sleeping while the total < max.

    Once the running total would reach ``max_backoff`` it stops sleeping and makes
    ``max_retries`` immediate retries.
    """
    rate, max_backoff = float(p["rate"]), float(p["max_backoff"])
    backoff, total = 1.0, 0.0
    delays: list[float] = []
    while True:
        backoff = float(np.ceil(backoff * rate))
        total += backoff
        if total >= max_backoff:
            break
        delays.append(backoff)
    delays.extend([0.0] * int(p["max_retries"]))
    return Schedule.of(delays)


ScheduleKind = Callable[[Mapping[str, Any], np.random.Generator], Schedule]

SCHEDULE_KINDS: dict[str, ScheduleKind] = {
    "exponential": _exponential,
    "fixed": _fixed,
    "table": _table,
    "none": _none,
    "fixed_deadline": _fixed_deadline,
    "linear_deadline": _linear_deadline,
    "go_robustio": _go_robustio,
    "fibonacci_full_jitter": _fibonacci_full_jitter,
    "conda": _conda,
    "rimraf": _rimraf,
}
JITTERED_KINDS = frozenset({"go_robustio", "fibonacci_full_jitter", "conda"})


@dataclass(frozen=True)
class KnownPolicy:
    """One real tool's retry policy, as docs/retry-policies.md describes it.

    ``triggers`` are the Win32 codes after which the tool retries (``any_error`` marks
    tools that retry on every error; ``triggers`` then lists 5, 32, 33 for display and
    replay). ``kind`` names an entry of :data:`SCHEDULE_KINDS`; ``params`` its arguments as
    ``(name, value)`` pairs so that the dataclass stays frozen and hashable.
    """

    tool: str
    version: str
    source: str
    triggers: frozenset[int]
    kind: str
    params: tuple[tuple[str, Any], ...] = ()
    any_error: bool = False
    operations: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"{self.tool}: unknown schedule kind {self.kind!r}")

    @property
    def parameters(self) -> dict[str, Any]:
        """``params`` as a dict."""
        return dict(self.params)

    @property
    def jittered(self) -> bool:
        """True when the delays are random (replay averages over many seeded draws)."""
        return self.kind in JITTERED_KINDS

    @property
    def triggers_text(self) -> str:
        """``"5"``, ``"5,32"`` or ``"any"``."""
        return format_triggers(self.triggers, self.any_error)

    def retries_on(self, error_code: int | None) -> bool:
        """Whether this tool retries at all after a failure with ``error_code``."""
        if self.any_error:
            return True
        return error_code is not None and int(error_code) in self.triggers

    def schedule(self, rng: np.random.Generator | None = None) -> Schedule:
        """One draw of the delays. ``rng=None`` means a Generator seeded with 0 (deterministic)."""
        if rng is None:
            rng = np.random.default_rng(0)
        return SCHEDULE_KINDS[self.kind](self.parameters, rng)

    def delays(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """The delays (ms) of one draw, as an array."""
        return np.asarray(self.schedule(rng).delays, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        return {
            "tool": self.tool,
            "version": self.version,
            "source": self.source,
            "triggers": sorted(self.triggers),
            "any_error": self.any_error,
            "kind": self.kind,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params},
            "jittered": self.jittered,
            "operations": self.operations,
            "notes": self.notes,
        }


_ANY = frozenset({5, 32, 33})

KNOWN_POLICIES: tuple[KnownPolicy, ...] = (
    KnownPolicy(
        tool="uv",
        version="0.12.5",
        source="astral-sh/uv@26a9dd4b crates/uv-fs/src/lib.rs backoff_file_move (backon 1.6.0)",
        triggers=frozenset({5}),
        kind="exponential",
        params=(("initial", 10.0), ("factor", 2.0), ("cap", 60_000.0), ("retries", 10)),
        operations="rename into the cache, tempfile persist",
        notes="ErrorKind::PermissionDenied only: Rust std maps 32/33 to Uncategorized. "
        "Persist retries on any persist error.",
    ),
    KnownPolicy(
        tool="graceful-fs",
        version="4.2.11",
        source="isaacs/node-graceful-fs@23437990 polyfills.js patch() rename",
        triggers=frozenset({5, 32, 33}),
        kind="linear_deadline",
        params=(("first", 0.0), ("step", 10.0), ("cap", 100.0), ("deadline", 60_000.0)),
        operations="fs.rename (win32; npm)",
        notes="EACCES/EPERM/EBUSY; retries only while stat(to) is ENOENT.",
    ),
    KnownPolicy(
        tool="Go cmd/go robustio",
        version="go@3e6f2941",
        source="golang/go src/cmd/internal/robustio/robustio_flaky.go@3e6f2941",
        triggers=frozenset({2, 5, 32}),
        kind="go_robustio",
        params=(("initial", 1.0), ("timeout", 2_000.0)),
        operations="Rename, RemoveAll, ReadFile",
        notes="next += rand[0,next): growth ×U[1,2) is the jitter; stops when elapsed+next ≥ 2 s.",
    ),
    KnownPolicy(
        tool="pip rmtree",
        version="26.3.dev0",
        source="pypa/pip@6d309205 utils/retry.py retry, utils/misc.py rmtree",
        triggers=_ANY,
        any_error=True,
        kind="fixed_deadline",
        params=(("delay", 500.0), ("deadline", 3_000.0)),
        operations="rmtree of temp and build dirs",
    ),
    KnownPolicy(
        tool="pip replace",
        version="26.3.dev0",
        source="pypa/pip@6d309205 utils/retry.py retry, utils/filesystem.py replace",
        triggers=_ANY,
        any_error=True,
        kind="fixed_deadline",
        params=(("delay", 250.0), ("deadline", 1_000.0)),
        operations="os.replace of wheels, HTTP cache, self-check state",
    ),
    KnownPolicy(
        tool="rustup rename",
        version="1.30.0",
        source="rust-lang/rustup@0878429a src/utils/mod.rs rename (crate retry 2.2.0)",
        triggers=frozenset({5}),
        kind="fibonacci_full_jitter",
        params=(("first", 1.0), ("count", 26)),
        operations="rename of component dirs after unpack",
        notes="Full jitter delay×U[0,1): max 317.8 s, expected ≈159 s.",
    ),
    KnownPolicy(
        tool="Git for Windows",
        version="git-for-windows@003e2844",
        source="git-for-windows/git compat/mingw.c@003e2844 retry_ask_yes_no",
        triggers=frozenset({5, 32}),
        kind="table",
        params=(("delays", (0.0, 1.0, 10.0, 20.0, 40.0)),),
        operations="unlink, rmdir, rename",
        notes="Non-interactive; with a TTY it then asks 'Should I try again?'.",
    ),
    KnownPolicy(
        tool="MSBuild Copy",
        version="msbuild@05f08912",
        source="dotnet/msbuild@05f08912 src/Tasks/Copy.cs DoCopyWithRetries",
        triggers=frozenset({32, 33}),
        kind="fixed",
        params=(("delay", 1_000.0), ("retries", 10)),
        operations="file copy",
        notes="Code 5 is not retried on Windows unless MSBUILDALWAYSRETRY=1.",
    ),
    KnownPolicy(
        tool=".NET SDK FileAccessRetrier",
        version="sdk@fd94bf3d",
        source="dotnet/sdk src/Cli/Microsoft.DotNet.Cli.Utils/FileAccessRetrier.cs@fd94bf3d "
        "RetryOnMoveAccessFailure",
        triggers=frozenset({5}),
        kind="exponential",
        params=(
            ("initial", 10.0),
            ("factor", 2.0),
            ("cap", None),
            ("retries", 9),
            ("sleep_after_last", True),
        ),
        operations="Directory.Move / File.Move into the tool store, workload packs, shims",
        notes="10 attempts; sleeps after the 10th failure too (10.23 s elapsed, last try at 5.11 s).",
    ),
    KnownPolicy(
        tool="conda",
        version="26.7.x",
        source="conda/conda@0f64223f conda/gateways/disk/__init__.py exp_backoff_fn",
        triggers=frozenset({5, 32, 33}),
        kind="conda",
        params=(("base", 100.0), ("tries", 7)),
        operations="rename, open rb+, make_writable (Windows)",
        notes="EPERM/EACCES; Python maps 5, 32, 33 to EACCES. rm_rf has no timed retry.",
    ),
    KnownPolicy(
        tool="rimraf",
        version="6.1.0",
        source="isaacs/rimraf@b6462ea7 src/retry-busy.ts",
        triggers=frozenset({32, 33}),
        kind="rimraf",
        params=(("rate", 1.2), ("max_backoff", 200.0), ("max_retries", 10)),
        operations="unlink and rmdir during tree removal",
        notes="EBUSY only; EPERM (5) gets chmod and one immediate retry, not modelled.",
    ),
    KnownPolicy(
        tool="Chromium ImportantFileWriter",
        version="crbug 1099284",
        source="chromium base/files/important_file_writer.cc WriteFileAtomicallyImpl",
        triggers=_ANY,
        any_error=True,
        kind="fixed",
        params=(("delay", 100.0), ("retries", 5)),
        operations="ReplaceFile of the temp file over the target",
    ),
    KnownPolicy(
        tool="Node.js fs.rm",
        version="node@02cee53c",
        source="nodejs/node lib/internal/fs/rimraf.js@02cee53c, defaultRmOptions",
        triggers=frozenset({5, 32, 33}),
        kind="none",
        operations="recursive removal",
        notes="maxRetries defaults to 0: no retry unless the caller sets it.",
    ),
)


def known_policy(tool: str) -> KnownPolicy:
    """Look a known policy up by its tool name (case-insensitive prefix match)."""
    wanted = tool.casefold()
    for p in KNOWN_POLICIES:
        if p.tool.casefold() == wanted:
            return p
    matches = [p for p in KNOWN_POLICIES if p.tool.casefold().startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.tool for p in KNOWN_POLICIES)
    raise UsageError(f"no single known policy named {tool!r} (known: {names})")
