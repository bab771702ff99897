"""``python -m traceaudit``: the same as the ``traceaudit`` command."""

from traceaudit.cli import main

main()
