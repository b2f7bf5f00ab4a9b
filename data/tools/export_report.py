"""Export support ticket reports for Northwind Devices.

This module writes a list of ticket records to disk so that they can be
shared with the service team. Two output formats are supported: ``csv``
(the default, one row per ticket) and ``json`` (a list of objects).

Example::

    export_report("tickets.json", fmt="json", records=[{"id": 1, "status": "open"}])
"""

import csv
import json
from pathlib import Path

SUPPORTED_FORMATS = ("csv", "json")


def export_report(path, fmt="csv", records=None):
    """Write *records* (a list of dicts) to *path* as CSV or JSON.

    Supports the ``csv`` and ``json`` formats. Raises ``ValueError`` for
    any other format. Returns the path of the written file.
    """
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported format {fmt!r}; use one of {SUPPORTED_FORMATS}")
    records = list(records or [])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    if fmt == "json":
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    else:
        fieldnames = sorted({key for record in records for key in record})
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(records)
    return path
