"""The pieces every benchmark's Markdown report is made of, and writing it out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence


def command_line(prog: str, argv: Optional[Sequence[str]]) -> str:
    """The command as typed: ``prog`` and its arguments (``sys.argv``'s when ``argv`` is None)."""
    return " ".join([prog, *(sys.argv[1:] if argv is None else argv)])


def bullets(facts: Iterable[tuple[str, str]]) -> list[str]:
    """``- key: value`` lines."""
    return [f"- {k}: {v}" for k, v in facts]


def cell(text: str) -> str:
    """Text that stays inside one table cell: pipes escaped, line breaks made spaces."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table, every cell through ``cell``; ``align`` has one letter per column, ``l`` (left)
    or ``r`` (right)."""
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align={align!r}: one of l or r per column ({len(header)})")

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {cell(c)} " for c in cells) + "|"

    return "\n".join([line(header), "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
                      *(line(r) for r in rows)])


def write_text(path: Path, text: str, tag: str = "[bench]") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"{tag} wrote {path}")


def write_json(path: Path, obj, tag: str = "[bench]") -> None:
    write_text(path, json.dumps(obj, indent=1) + "\n", tag)
