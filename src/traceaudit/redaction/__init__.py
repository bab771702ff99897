"""Sharing a trace safely: keyed pseudonyms in the trace's own format, and a leak check.

``redactor`` runs it (:func:`redact`; :func:`redact_capture` for the files of a
rolled-over Process Monitor capture, together); ``keys`` (HMAC pseudonyms), ``vocab``
(well-known names kept), ``shapes`` (generated names keep their shape), ``paths``,
``fields`` and ``rows`` (what is replaced where), ``context`` (one run's state), ``handlers`` (one per
input format: CSV, pasted rows, XML in ``xml_handler``), ``check`` (the leak check).
"""

from traceaudit._lazy import attach

__all__ = [
    "CLASSES",
    "CaptureRedactionResult",
    "RedactionLeakError",
    "RedactionResult",
    "read_secret_file",
    "redact",
    "redact_capture",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "redact": "traceaudit.redaction.redactor",
        "redact_capture": "traceaudit.redaction.redactor",
        "CaptureRedactionResult": "traceaudit.redaction.redactor",
        "RedactionResult": "traceaudit.redaction.redactor",
        "read_secret_file": "traceaudit.redaction.redactor",
        "CLASSES": "traceaudit.redaction.redactor",
        "RedactionLeakError": "traceaudit.errors",
    },
)
