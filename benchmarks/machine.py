"""What every benchmark report states about where it ran.

Importing this module imports no torch (``sweep_overhead`` times imports, and ``python -m
benchmarks`` states the environment without loading torch): ``environment`` reads installed
versions from package metadata; ``torch_environment``, for the benchmarks that run torch, imports
it when called.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Iterable, Optional


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
    except Exception as e:  # any failure: provenance is informative only
        return f"unavailable ({type(e).__name__})"
    if not v.get("commit"):
        return "unavailable (not a git checkout)"
    return v["commit"][:12] + (" (dirty)" if v.get("dirty") else "")


def installed_version(dist: str) -> str:
    """A distribution's version from its metadata, without importing it."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> list[tuple[str, str]]:
    """Python, the versions of torch, transformers and submitit, the CPU and the commit; torch is not
    imported (``sweep_overhead`` and ``python -m benchmarks``)."""
    return [("python", platform.python_version()), ("torch", installed_version("torch")),
            ("transformers", installed_version("transformers")), ("submitit", installed_version("submitit")),
            ("CPU", cpu_text()), ("code", code_version_text())]


def torch_environment(threads: int, packages: Iterable[str] = ("transformers",),
                      threads_seen: Optional[set[int]] = None) -> list[tuple[str, str]]:
    """torch and each of ``packages`` (their ``__version__``), Python, the torch threads (now, or
    ``threads_seen`` during the steps, against the ``threads`` asked for), the CPU and the commit."""
    import torch

    def version(name: str) -> str:
        try:
            return importlib.import_module(name).__version__
        except ImportError:
            return "not installed"

    now = f"{sorted(threads_seen)} during the steps" if threads_seen is not None else f"{torch.get_num_threads()}"
    return [
        ("torch", torch.__version__),
        *[(name, version(name)) for name in packages],
        ("python", platform.python_version()),
        ("torch threads", f"{now} (asked {threads}), interop {torch.get_num_interop_threads()}"),
        ("CPU", cpu_text()),
        ("code", code_version_text()),
    ]


def load_fact(load_start: tuple[float, float, float]) -> tuple[str, str]:
    """The 1-minute load average at the start (``os.getloadavg()`` then) and now."""
    return "load average (1 min)", f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end"


def date_fact() -> tuple[str, str]:
    return "date", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
