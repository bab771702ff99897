"""Process Monitor's text exports: the CSV export (``csv_read``, and ``csv_write`` which
writes it), rows pasted from Procmon's window (``clipboard``) and the XML export
(``xml_read``), with what they share: ``columns`` (Procmon's column names), ``rows`` (raw
rows into the event schema), ``detail`` (the Detail column parsed), ``times`` (locale-
dependent times) and ``decode`` (encodings).
"""
