"""What is wrong with a record file, in one line, so that readers can say it instead of raising.

``trainer.run_record``'s tolerant readers, ``grpolab status`` and a sweep's plan read ``summary.json``,
``meta.json``, ``sweep.json`` and ``jobs.json`` through :func:`read_checked`: any bytes at all (a bare
JSON string, a list, non-UTF-8 bytes, an empty file, a field of the wrong type) give "no record" plus
one line saying why, never a traceback. Stdlib only, like the run record.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Optional

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                                       "dict": (dict,), "list": (list,)}


class RecordWarning(UserWarning):
    """A record file that is not what grpolab writes: it is read as absent."""


def kind(value: Any) -> str:
    """The JSON name of a value's type (``a JSON string``, ``a list``)."""
    if isinstance(value, bool):
        return "a boolean"
    names = {str: "a string", list: "a list", dict: "an object", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def field_problems(cls, data: dict) -> list[str]:
    """The known keys of dataclass ``cls`` in ``data`` whose values have the wrong type."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        spec = str(f.type)
        optional = spec.startswith("Optional[")
        allowed = _TYPES.get(spec[len("Optional["):-1] if optional else spec)
        value = data[f.name]
        if allowed is None or (value is None and optional):
            continue  # a type of its own (RunStatus checks itself)
        if value is None or not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            out.append(f"{f.name} is {kind(value)}, not {spec.removeprefix('Optional[').rstrip(']')}")
    return out


def read_checked(path: str | Path, cls=None) -> tuple[Optional[dict], Optional[str]]:
    """(the JSON object in ``path``, None); (None, None) when it is absent; (None, what is wrong) when
    it is unreadable, not UTF-8, not JSON, not an object, or (``cls``: a dataclass) has a known key of
    the wrong type."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    if not raw.strip():
        return None, "empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    except ValueError as e:
        return None, f"not JSON ({e})"
    if not isinstance(data, dict):
        return None, f"{kind(data)}, not a JSON object"
    problems = field_problems(cls, data) if cls is not None else []
    return (None, "; ".join(problems)) if problems else (data, None)


def warn(path: str | Path, problem: str, then: str = "read as absent") -> None:
    """One line on what is wrong with ``path`` (the CLI prints warnings as ``warning: ...``)."""
    warnings.warn(f"{path}: {problem}; {then}", RecordWarning, stacklevel=3)
