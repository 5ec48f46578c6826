"""Render the config schema as Markdown (docs/configuration.md is generated from it, and a test
keeps the two in sync): ``python -m trainer.config_docs > docs/configuration.md``."""

from __future__ import annotations

import dataclasses
from enum import Enum

from trainer.config import Config

_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def _rows(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _rows(value, f"{prefix}{f.name}.")
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if isinstance(value, Enum):
            kind = " \\| ".join(m.value for m in type(value))
            value = value.value
        bounds = ", ".join(f"{_BOUNDS[k]} {v}" for k, v in f.metadata.items() if k in _BOUNDS)
        yield f"| `{prefix}{f.name}` | `{value!r}` | {kind} | {bounds} | {f.metadata.get('help', '')} |"


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the schema (`trainer/config.py`, and each variant's own section in `trainer/variants/`)",
        "by `python -m trainer.config_docs`; do not edit by hand.",
        "Defaults are the schema's; the files in `conf/` (the defaults list in `conf/config.yaml`) set",
        "the values a plain `grpolab` command starts from. Unknown keys, wrong types and values",
        "outside the bounds are rejected before anything runs, and so is a control character (newline, CR,",
        "tab, NUL, ESC, C1, U+2028/U+2029) in any string but `task.jsonl.prompt_template` (`trainer/safe_text.py`).",
        "Secret-looking keys and values and every `launcher.env` value are `<redacted>` in records,",
        "console lines and W&B ([run-record.md](run-record.md#secrets-and-file-modes)).",
        "",
        "| key | schema default | type / choices | bounds | meaning |",
        "|---|---|---|---|---|",
        *_rows(Config()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
