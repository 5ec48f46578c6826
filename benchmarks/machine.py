"""What every benchmark report states about where it ran (no torch import: sweep_overhead times imports)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_text() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical cores"


def code_version_text() -> str:
    from trainer.provenance import code_version

    try:
        v = code_version()
    except Exception as e:  # noqa: BLE001 - provenance is informative only
        return f"unavailable ({type(e).__name__})"
    if not v.get("commit"):
        return "unavailable (not a git checkout)"
    return v["commit"][:12] + (" (dirty)" if v.get("dirty") else "")
