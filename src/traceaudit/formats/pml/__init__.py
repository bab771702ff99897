"""Process Monitor's native log (``.PML``), read in bulk with numpy.

``reader`` reads a capture (:func:`read_pml`); ``layout`` declares the binary structures,
``tables`` the header and the tables at the end of the file, ``events`` finds the events
(from the index, or by walking a damaged or cut file), ``columns`` decodes them into the
event schema, ``detail`` and ``names`` decode operation details, ``render`` and
``render_process`` write Procmon's Detail text, and ``text`` decodes strings.
``batches`` reads a capture of any size in bounded memory, batch by batch.
"""

from traceaudit.formats.pml.reader import (
    FORMAT_NAME,
    batches,
    read,
    read_pml,
    read_pml_processes,
    sniff_pml,
)

__all__ = ["FORMAT_NAME", "batches", "read", "read_pml", "read_pml_processes", "sniff_pml"]
