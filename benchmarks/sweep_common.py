"""What every part of ``sweep_overhead`` uses: its sizes, a report row, the tests' fast config,
``grpolab`` as a fresh process, and the ``timing`` block of the run records a sweep leaves.

No torch import here: ``sweep_local``'s submission child times its own imports.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from trainer.run_record import SUMMARY_FILE, RunStatus, SweepPaths

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "grpolab"  # the default paths.cache_dir: fast-config warm starts are built once, then reused


@dataclass(frozen=True)
class Sizes:
    cells: int  # cells of the submitted sweep
    local_cells: int  # tiny cells run through the local launcher for the timing block
    slurm_cells: int  # same, through SLURM
    table_repeats: int


QUICK = Sizes(cells=100, local_cells=2, slurm_cells=2, table_repeats=3)
FULL = Sizes(cells=100, local_cells=4, slurm_cells=4, table_repeats=5)


@dataclass
class Row:
    what: str
    result: str
    goal: str = "—"
    notes: str = ""
    failed: bool = False


def fast(tmp: Path, steps: int = 2) -> list[str]:
    """The tests' seconds-long config (tests/conftest.py), with its SFT warm start in the shared cache."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import fast_overrides

    return [*fast_overrides(tmp, steps=steps), f"paths.cache_dir={CACHE}"]


def grpolab(*args: str, env: Optional[dict] = None, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    """``grpolab ARGS`` as a fresh process (``python -m sweeps.cli``); (result, wall seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    return out, time.perf_counter() - t0


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def check(out: subprocess.CompletedProcess, what: str) -> None:
    if out.returncode != 0:
        raise RuntimeError(f"{what}: exit {out.returncode}: {last_line(out.stderr or out.stdout)}")


def med_max(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"


# ---------------------------------------------------------------- run records' timing block
def read_timings(sweep_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(SweepPaths(sweep_dir).runs.glob(f"*/{SUMMARY_FILE}")):
        s = json.loads(path.read_text())
        if s.get("status") == RunStatus.completed and s.get("timing"):
            rows.append({**s["timing"], "wall_time_s": s.get("wall_time_s", 0.0)})
    return rows


def setup_s(t: dict) -> float:
    """Run start to first step, without model load, the warm-start eval and a checkpoint load."""
    return t["run_to_first_step_s"] - t["model_load_s"] - t.get("warm_eval_s", 0.0) - t.get("checkpoint_load_s", 0.0)


