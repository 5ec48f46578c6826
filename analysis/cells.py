"""A table's or a plot's cells: the value combinations of the swept keys that group runs, in order.

Swept values may be NaN (key absent in some runs) or of mixed types, and the order must be
deterministic: the plan's order (``sweep.json``, e.g. ``variant=grpo,ar,lopti``) where known,
then numeric (``2`` before ``10``), then text, then the absent-key group. ``analysis.table``
and ``analysis.plots`` both group and sort with these, so rows and curves come in one order.
"""
from __future__ import annotations

import json
import math

from analysis import render

NA = render.NA  # the group of runs that lack a key, as shown


def group_value(v):
    """Hashable group value of a swept value; NaN/None become the NA sentinel so they form a group."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


def same_value(a, b) -> bool:
    """Swept values equal as shown (``0`` matches ``0.0``; ``"0.01"`` from the CLI matches 0.01)."""
    if a == b or render.fmt_key(a) == render.fmt_key(b):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def value_sort_key(v, order=()):
    """Plan order first, then numbers (numerically), then strings, then the NA group last."""
    for i, o in enumerate(order):
        if same_value(v, o):
            return (-1, float(i), "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (2, 0.0, "") if v == NA else (1, 0.0, str(v))


def cell_sort_key(keys, value_order):
    """Sort key of cell tuples (one value per key in ``keys``); ``value_order``: {key: plan order}."""
    return lambda t: tuple(value_sort_key(v, value_order.get(k, ())) for k, v in zip(keys, t))
