"""cProfile listings of a step: cumulative time of the code being compared (where the step's time
goes), then the functions anywhere with the most own time (the hot ops)."""

from __future__ import annotations

import cProfile
import os
import pstats
from pathlib import Path
from typing import Callable

from trainer.provenance import REPO_ROOT

ROOT = str(REPO_ROOT) + os.sep
SITE = f"{os.sep}site-packages{os.sep}"
FRAMEWORKS = ("trl", "transformers", "accelerate")

Key = tuple[str, int, str]  # pstats' (file, line, function)


def stats_of(prof: cProfile.Profile) -> dict:
    """(file, line, fn) -> (primitive calls, calls, own s, cumulative s, callers)."""
    return pstats.Stats(prof).stats


def listing(stats: dict, keep: Callable[[str], bool], where: Callable[[Key], str], label: str,
            top: int, own_top: int) -> list[str]:
    """The ``top`` functions whose file ``keep`` accepts by cumulative time (headed ``label``),
    then the ``own_top`` functions anywhere by own time; ``where`` names a function."""
    cum = sorted(((v[3], v[1], k) for k, v in stats.items() if keep(k[0])), reverse=True)
    own = sorted(((v[2], v[1], k) for k, v in stats.items()), reverse=True)
    lines = [f"   cumulative s   calls  {label}"]
    lines += [f"   {t:12.3f} {n:7d}  {where(k)}" for t, n, k in cum[:top]]
    lines += ["   own s          calls  function (anywhere)"]
    lines += [f"   {t:12.3f} {n:7d}  {where(k)}" for t, n, k in own[:own_top]]
    return lines


def framework_text(name: str, prof: cProfile.Profile, top: int = 18) -> str:
    """Cumulative time of the frameworks' own functions (grpolab outside benchmarks/, TRL,
    transformers, accelerate), then the functions anywhere with the most own time."""

    def where(key: Key) -> str:
        file, line, fn = key
        if SITE in file:
            file = file.split(SITE, 1)[1]
        return f"{file.removeprefix(ROOT)}:{line}({fn})"

    def framework(file: str) -> bool:
        if SITE in file:
            return file.split(SITE, 1)[1].split(os.sep)[0] in FRAMEWORKS
        return file.startswith(ROOT) and f"{os.sep}benchmarks{os.sep}" not in file

    stats = stats_of(prof)
    total = max((v[3] for v in stats.values()), default=0.0)
    lines = [f"== {name} under cProfile: {total:.3f}s"]
    lines += listing(stats, framework, where, "framework function", top, own_top=14)
    return "\n".join(lines) + "\n"


def project_listing(prof: cProfile.Profile, top: int = 22) -> list[str]:
    """Cumulative time of the project's own functions (not the venv's), then the hot functions
    anywhere; files outside the checkout by their base name."""

    def where(key: Key) -> str:
        file, line, name = key
        shown = file.removeprefix(ROOT) if file.startswith(ROOT) else Path(file).name
        return f"{shown}:{line}({name})"

    def ours(file: str) -> bool:
        return file.startswith(ROOT) and f"{os.sep}.venv{os.sep}" not in file

    return listing(stats_of(prof), ours, where, "project function", top, own_top=12)
