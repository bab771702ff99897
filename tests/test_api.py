"""The public API: what ``traceaudit`` and its packages export, and how light importing is."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

import traceaudit

PUBLIC = [
    "EVENT_SCHEMA",
    "DamagedRowError",
    "MissingColumnsError",
    "RedactionLeakError",
    "RedactionResult",
    "Report",
    "Trace",
    "TraceFormatError",
    "TraceauditError",
    "UnknownFormatError",
    "UsageError",
    "__version__",
    "analyze",
    "blocking_handles",
    "conflicts",
    "find_conflicts",
    "fleet",
    "handles",
    "lock_failures",
    "read_trace",
    "redact",
    "retry_chains",
    "scan_trace",
    "simulate",
    "simulate_mix",
    "timeline",
    "window_table",
]

PACKAGES = [
    "traceaudit",
    "traceaudit.analysis",
    "traceaudit.formats",
    "traceaudit.formats.pml",
    "traceaudit.formats.etl",
    "traceaudit.policy",
    "traceaudit.report",
    "traceaudit.redaction",
    "traceaudit.simulation",
]


def test_the_public_names_are_pinned():
    assert sorted(traceaudit.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(traceaudit, name) is not None, name


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_shares_its_name_with_an_exported_function(package):
    module = importlib.import_module(package)
    # A package that is itself callable (traceaudit.fleet) may share its function's name:
    # whichever of the two the attribute ends up bound to, calling it works.
    clashes = [
        name
        for name in module.__all__
        if callable(getattr(module, name))
        and importlib.util.find_spec(f"{package}.{name}")
        and not callable(importlib.import_module(f"{package}.{name}"))
    ]
    assert clashes == [], f"{package}: {clashes} are both a submodule and an exported name"


def test_import_traceaudit_loads_no_heavy_library():
    code = (
        "import sys, traceaudit; "
        "heavy = [m for m in ('polars', 'pyarrow', 'pandas', 'matplotlib', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_comes_from_one_place_and_loads_nothing_heavy():
    from traceaudit._version import __version__

    code = (
        "import sys; from traceaudit.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('polars', 'pyarrow', 'pandas', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"traceaudit, version {__version__}", "[]"]
    assert traceaudit.__version__ == __version__
    assert importlib.metadata.version("traceaudit") == __version__


def test_a_face_never_imports_the_report_model_or_the_package_root():
    import ast
    from pathlib import Path

    source = Path(traceaudit.__file__).parent
    offenders = []
    for path in source.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                if node.module == "traceaudit" and path.name != "__init__.py":
                    names = [a.name for a in node.names]
                    offenders.append(f"{path.relative_to(source)} imports {names} from the root")
                face = path.parent.name == "report" and path.name not in ("model.py", "__init__.py")
                if node.module == "traceaudit.report.model" and face:
                    offenders.append(f"{path.relative_to(source)} imports the report model")
    assert offenders == []
