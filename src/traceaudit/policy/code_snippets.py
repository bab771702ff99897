"""Code that implements a :class:`~traceaudit.policy.RetryPolicy`, in four ecosystems.

Each snippet reproduces the policy's delays exactly (no jitter):

- Rust, backon: ``ExponentialBuilder`` sleeps ``min_delay``, then × ``factor``, capped at
  ``max_delay``, for ``max_times`` retries. Its ``max_delay`` defaults to 60 s, so an
  uncapped policy says ``without_max_delay()``. Fixed delays use ``ConstantBuilder``.
- Python, tenacity: ``wait_exponential(multiplier=m, exp_base=b)`` sleeps
  ``m · b^(attempt − 1)`` seconds after failed attempt number *attempt* (1-based), so
  ``m`` is the first delay in seconds and ``b`` the policy's multiplier (left at its
  default only when it is 2). ``stop_after_attempt`` counts the first attempt.
- Go: a plain loop over ``time.Sleep`` with ``errors.Is`` on ``x/sys/windows`` errnos.
- .NET, Polly v8: ``DelayBackoffType.Exponential`` always doubles (``Delay · 2^n``), so
  other multipliers use a ``DelayGenerator`` (``AttemptNumber`` is zero-based).
  ``MaxRetryAttempts`` counts retries, not attempts.

With ``jitter=True`` the Python, Go and .NET snippets multiply each delay by U[1, 2), as
the replay does; backon's own jitter adds a different random term (it varies between
backon versions), which the Rust snippet says in a comment.
"""

from __future__ import annotations

import math

from traceaudit.policy.suggestion import RetryPolicy

__all__ = ["snippets"]

_HRESULT = {5: "0x80070005", 32: "0x80070020", 33: "0x80070021"}
_GO_NAMES = {
    2: "ERROR_FILE_NOT_FOUND",
    5: "ERROR_ACCESS_DENIED",
    32: "ERROR_SHARING_VIOLATION",
    33: "ERROR_LOCK_VIOLATION",
}


def _num(x: float) -> str:
    """A number as source code: ``10``, ``12.5``, ``0.001`` (shortest exact repr)."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _secs(ms: float) -> str:
    """Milliseconds as a Python literal in seconds."""
    return repr(round(ms / 1000.0, 12))


def _rust_duration(ms: float) -> str:
    if float(ms).is_integer():
        return f"Duration::from_millis({int(ms)})"
    return f"Duration::from_secs_f64({_secs(ms)})"


def _rust_f32(x: float) -> str:
    s = repr(float(x))
    return s if "." in s or "e" in s else s + ".0"


def _go_duration(ms: float) -> str:
    if float(ms).is_integer():
        return f"{int(ms)} * time.Millisecond"
    return f"time.Duration({_num(ms)} * float64(time.Millisecond))"


def _header(policy: RetryPolicy, comment: str) -> str:
    return f"{comment} Retry policy from traceaudit: {policy.describe()}."


def _no_retry(policy: RetryPolicy) -> dict[str, str]:
    text = "no retry: the data gave no reason to retry (max_attempts = 1)."
    return {
        "rust": f"// {text}",
        "python": f"# {text}",
        "go": f"// {text}",
        "dotnet": f"// {text}",
    }


def _rust(p: RetryPolicy) -> str:
    checks = []
    if 5 in p.error_codes:
        checks.append("e.kind() == ErrorKind::PermissionDenied")
    raw = [c for c in p.error_codes if c != 5]
    if raw:
        checks.append(f"matches!(e.raw_os_error(), Some({' | '.join(str(c) for c in raw)}))")
    predicate = "\n        || ".join(checks) or "false"
    if p.multiplier == 1:
        builder = (
            "ConstantBuilder::default()\n"
            f"        .with_delay({_rust_duration(p.initial_delay_ms)})\n"
            f"        .with_max_times({p.retries})"
        )
        use = "use backon::{BlockingRetryable, ConstantBuilder};"
    else:
        cap = (
            f".with_max_delay({_rust_duration(p.max_delay_ms)})"
            if p.max_delay_ms is not None
            else ".without_max_delay() // backon caps at 60 s by default"
        )
        builder = (
            "ExponentialBuilder::default()\n"
            f"        .with_min_delay({_rust_duration(p.initial_delay_ms)})\n"
            f"        .with_factor({_rust_f32(p.multiplier)})\n"
            f"        {cap}\n"
            f"        .with_max_times({p.retries})"
        )
        use = "use backon::{BlockingRetryable, ExponentialBuilder};"
    if p.jitter:
        builder += (
            "\n        // backon's jitter adds its own random term (version-dependent); traceaudit"
            "\n        // replayed each delay × U[1, 2).\n        .with_jitter()"
        )
    io_use = "use std::io::{self, ErrorKind};" if 5 in p.error_codes else "use std::io;"
    return f"""{_header(p, "//")}
// Cargo.toml: backon = "1.3"
{io_use}
use std::path::Path;
use std::time::Duration;

{use}

/// The transient Windows lock errors: 5 ERROR_ACCESS_DENIED is ErrorKind::PermissionDenied;
/// std maps 32 ERROR_SHARING_VIOLATION and 33 ERROR_LOCK_VIOLATION to Uncategorized, so
/// those are matched by their raw code.
fn is_transient_lock(e: &io::Error) -> bool {{
    {predicate}
}}

/// Rename, retrying while another process (a scanner, an indexer) holds the file.
fn rename_with_retry(from: &Path, to: &Path) -> io::Result<()> {{
    let backoff = {builder};
    (|| std::fs::rename(from, to))
        .retry(backoff)
        .sleep(std::thread::sleep)
        .when(is_transient_lock)
        .call()
}}
"""


def _python(p: RetryPolicy) -> str:
    imports = ["retry", "retry_if_exception", "stop_after_attempt", "stop_after_delay"]
    extra_import = ""
    if p.jitter:
        cap = f"{_secs(p.max_delay_ms)}, " if p.max_delay_ms is not None else ""
        base = f"{_secs(p.initial_delay_ms)} * {_num(p.multiplier)} ** (state.attempt_number - 1)"
        nominal = f"min({cap}{base})" if cap else base
        wait = f"lambda state: {nominal} * (1 + random.random())"
        extra_import = "import random\n"
    elif p.multiplier == 1:
        imports.append("wait_fixed")
        wait = f"wait_fixed({_secs(p.initial_delay_ms)})"
    else:
        imports.append("wait_exponential")
        args = [f"multiplier={_secs(p.initial_delay_ms)}"]
        if p.multiplier != 2:
            args.append(f"exp_base={_num(p.multiplier)}")
        args.append(f"min={_secs(p.initial_delay_ms)}")
        if p.max_delay_ms is not None:
            args.append(f"max={_secs(p.max_delay_ms)}")
        wait = f"wait_exponential({', '.join(args)})"
    codes = ", ".join(str(c) for c in p.error_codes)
    codes_tuple = f"({codes},)" if len(p.error_codes) == 1 else f"({codes})"
    if p.jitter:  # jitter can stretch each delay up to 2x: bound by attempts only
        imports.remove("stop_after_delay")
        stop = f"stop_after_attempt({p.max_attempts})"
        stop_comment = "# jitter stretches delays up to 2x, so only the attempts are bounded"
    else:
        stop = (
            f"stop_after_attempt({p.max_attempts}) | stop_after_delay({_secs(p.total_budget_ms)})"
        )
        stop_comment = (
            "# stop_after_delay bounds the wall-clock time, the operations' own time included"
        )
    names = ", ".join(sorted(imports))
    if len(names) > 80:
        names = "(\n" + "".join(f"    {n},\n" for n in sorted(imports)) + ")"
    return f"""{_header(p, "#")}
# pip install tenacity
import os
{extra_import}
from tenacity import {names}


@retry(
    {stop_comment}
    stop={stop},
    wait={wait},
    retry=retry_if_exception(
        lambda e: isinstance(e, OSError) and getattr(e, "winerror", None) in {codes_tuple}
    ),
    reraise=True,
)
def replace_with_retry(src: str, dst: str) -> None:
    os.replace(src, dst)
"""


def _go(p: RetryPolicy) -> str:
    names = [_GO_NAMES.get(c) for c in p.error_codes]
    checks = [f"errors.Is(err, windows.{n})" for n in names if n]
    checks += [
        f"errors.Is(err, syscall.Errno({c}))"
        for c, n in zip(p.error_codes, names, strict=True)
        if not n
    ]
    predicate = " ||\n\t\t".join(checks) or "false"
    imports = ['"errors"', '"time"']
    if p.jitter:
        imports.append('"math/rand"')
    if any(not n for n in names):
        imports.append('"syscall"')
    consts = [f"\tconst maxAttempts = {p.max_attempts}"]
    grow: list[str] = []
    if p.multiplier != 1:
        grow.append(f"\t\tdelay = time.Duration(float64(delay) * {_num(p.multiplier)})")
        if p.max_delay_ms is not None:
            consts.append(f"\tconst maxDelay = {_go_duration(p.max_delay_ms)}")
            grow += ["\t\tif delay > maxDelay {", "\t\t\tdelay = maxDelay", "\t\t}"]
    sleep = (
        "time.Sleep(time.Duration(float64(delay) * (1 + rand.Float64())))"
        if p.jitter
        else "time.Sleep(delay)"
    )
    body = "\n".join(grow)
    return f"""{_header(p, "//")}
package fsretry

import (
{chr(10).join("	" + i for i in sorted(imports))}

	"golang.org/x/sys/windows"
)

// isTransientLock reports whether err is a Windows lock error that a scanner or
// indexer's open handle causes and that goes away by itself.
func isTransientLock(err error) bool {{
	return {predicate}
}}

// Retry runs op until it succeeds, fails with another error, or uses up its attempts.
func Retry(op func() error) error {{
{chr(10).join(consts)}
	delay := {_go_duration(p.initial_delay_ms)}
	for attempt := 1; ; attempt++ {{
		err := op()
		if err == nil || !isTransientLock(err) || attempt == maxAttempts {{
			return err
		}}
		{sleep}
{body}
	}}
}}
"""


def _dotnet(p: RetryPolicy) -> str:
    io_codes = [c for c in p.error_codes if c in _HRESULT]
    handle = ""
    if io_codes:
        tests = "\n                || ".join(
            f"e.HResult == unchecked((int){_HRESULT[c]})" for c in io_codes
        )
        handle += f"\n            .Handle<IOException>(e => {tests})"
    if 5 in p.error_codes:
        handle += "\n            .Handle<UnauthorizedAccessException>()"
    options: list[str] = []
    uses_generator = p.jitter or p.multiplier not in (1, 2)
    if uses_generator:
        nominal = f"{_num(p.initial_delay_ms)} * Math.Pow({_num(p.multiplier)}, args.AttemptNumber)"
        if p.max_delay_ms is not None:
            nominal = f"Math.Min({_num(p.max_delay_ms)}, {nominal})"
        if p.jitter:
            nominal = f"{nominal} * (1 + Random.Shared.NextDouble())"
        why = (
            "jitter × U[1, 2), as traceaudit replayed it"
            if p.jitter
            else f"Polly's Exponential always doubles; this grows ×{_num(p.multiplier)}"
        )
        options += [
            f"// {why} (AttemptNumber is zero-based)",
            "DelayGenerator = static args => ValueTask.FromResult<TimeSpan?>(",
            f"    TimeSpan.FromMilliseconds({nominal})),",
        ]
    elif p.multiplier == 1:
        options += [
            "BackoffType = DelayBackoffType.Constant,",
            f"Delay = TimeSpan.FromMilliseconds({_num(p.initial_delay_ms)}),",
        ]
    else:
        options += [
            "BackoffType = DelayBackoffType.Exponential,",
            f"Delay = TimeSpan.FromMilliseconds({_num(p.initial_delay_ms)}),",
        ]
        if p.max_delay_ms is not None:
            options.append(f"MaxDelay = TimeSpan.FromMilliseconds({_num(p.max_delay_ms)}),")
    options += [f"MaxRetryAttempts = {p.retries},", "UseJitter = false,"]
    body = "\n".join("        " + o for o in options)
    return f"""{_header(p, "//")}
// dotnet add package Polly.Core
using System;
using System.IO;
using System.Threading.Tasks;
using Polly;
using Polly.Retry;

var retryOnFileLock = new ResiliencePipelineBuilder()
    .AddRetry(new RetryStrategyOptions
    {{
        // 0x80070020 ERROR_SHARING_VIOLATION (32), 0x80070021 ERROR_LOCK_VIOLATION (33);
        // ERROR_ACCESS_DENIED (5) mostly surfaces as UnauthorizedAccessException.
        ShouldHandle = new PredicateBuilder(){handle},
{body}
    }})
    .Build();

retryOnFileLock.Execute(() => File.Move(source, destination));
"""


def snippets(policy: RetryPolicy) -> dict[str, str]:
    """Source code implementing ``policy`` for ``rust``, ``python``, ``go`` and ``dotnet``.

    The delays, cap, attempt counts and error codes in each snippet are the policy's own
    (see the module docstring for how each library counts them).
    """
    if policy.retries == 0:
        return _no_retry(policy)
    if not all(math.isfinite(x) for x in (policy.initial_delay_ms, policy.multiplier)):
        raise ValueError("policy delays must be finite")
    return {
        "rust": _rust(policy),
        "python": _python(policy),
        "go": _go(policy),
        "dotnet": _dotnet(policy),
    }
