"""Times in queries, and the share-masked statistics per camera and time bucket (``GET /v1/stats``)."""

from __future__ import annotations

import datetime as dt
import math

from ..detections import share_masked
from .errors import invalid


def time_param(name: str, value: str | None) -> float | None:
    """ISO-8601 (``2024-05-01T12:00:00Z``; no zone = UTC) or unix seconds -> unix seconds."""
    if value is None or value == "":
        return None
    try:
        t = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(t):
            raise invalid("query", name, f"'{value}' is not a time: give ISO-8601 or unix seconds", value)
        return t
    try:
        when = dt.datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise invalid("query", name, f"'{value}' is not a time: give ISO-8601 (2024-05-01T12:00:00Z) or unix seconds",
                       value) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def share(counts: dict[str, int]) -> float | None:
    """:func:`maskwatch.detections.share_masked`, to 4 decimals."""
    s = share_masked(counts)
    return None if s is None else round(s, 4)


