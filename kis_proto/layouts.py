"""The TR registry: every real-time TR, its layouts by era, and the types of its fields.

`TRS` (by TR id and era class name), `ERAS`, `tr_spec` (paper-trading notice ids included), and
the types describing them (`TRSpec`, `Layout`, `FieldSpec`, `FieldType`, `Market`, `TRKind`).
The record classes themselves are in `kis_proto.records`; docs/layouts.md tells the eras.
"""

from __future__ import annotations

from ._fields import EmptyFieldError, FieldSpec, FieldType, FieldValue, Layout, Market, TRKind, TRSpec
from .records import ERAS, RECORD_CLASSES, TRS

__all__ = [
    "ERAS",
    "RECORD_CLASSES",
    "TRS",
    "EmptyFieldError",
    "FieldSpec",
    "FieldType",
    "FieldValue",
    "Layout",
    "Market",
    "TRKind",
    "TRSpec",
    "tr_spec",
]


def tr_spec(tr_id: str) -> TRSpec | None:
    """What kis_proto knows about `tr_id` (paper-trading notice ids included), or None."""
    cls = RECORD_CLASSES.get(tr_id)
    return TRS[cls.__name__] if cls is not None else None
