"""``sweep_overhead`` on the local SLURM test cluster: submitting a sweep with
``launcher=slurm_local --detach`` (``slurm/measure.py``'s ``submit_time``), and job start to first
step of a few tiny cells. The cluster is used when ``sinfo`` answers, else started with
``bash slurm/start.sh`` (root only, as ``tests/test_slurm.py`` does) and stopped afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.sweep_common import ROOT, Row, Sizes, check, fast, grpolab, last_line, med_max, read_timings, setup_s
from trainer.run_record import sweep_root

SLURM_START_HINT = "bash slurm/start.sh"


def slurm_env() -> dict:
    """The environment of the test cluster, as tests/test_slurm.py finds it (slurm/env.sh decides where it lives)."""
    out = subprocess.run(["bash", "-c", f"source {ROOT / 'slurm' / 'env.sh'}; echo $GRPOLAB_SLURM_DIR"],
                         capture_output=True, text=True, check=True)
    d = Path(out.stdout.strip())
    return {**os.environ, "GRPOLAB_SLURM_DIR": str(d), "SLURM_CONF": str(d / "etc" / "slurm.conf")}


def cluster_up(env: dict) -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in out.stdout.split())


def start_cluster(env: dict) -> tuple[bool, str]:
    """(started here, why not) after trying ``slurm/start.sh`` as the tests do."""
    if os.geteuid() != 0:
        return False, "slurm/start.sh needs root"
    if not shutil.which("slurmctld"):
        return False, "SLURM packages missing (slurm/install.sh)"
    try:
        out = subprocess.run(["bash", str(ROOT / "slurm" / "start.sh")], env=env, capture_output=True, text=True,
                             timeout=300)
    except subprocess.TimeoutExpired:
        return False, "slurm/start.sh timed out after 300 s"
    if out.returncode != 0 or not cluster_up(env):
        return False, f"slurm/start.sh: {last_line(out.stderr or out.stdout)}"
    return True, ""


def slurm_measure_module():
    """``slurm/measure.py`` (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location("grpolab_slurm_measure", ROOT / "slurm" / "measure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def slurm_submission(tmp: Path, cells: int) -> Row:
    tmp.mkdir(parents=True, exist_ok=True)
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp)  # submit_time's mkdtemp: inside our tmp, removed after
    try:
        elapsed = slurm_measure_module().submit_time(cells)
    except SystemExit as e:  # measure.py exits with the command's stderr
        raise RuntimeError(f"grpolab sweep --detach launcher=slurm_local: {last_line(str(e.code))}") from None
    finally:
        tempfile.tempdir = saved
    return Row(f"{cells}-cell sweep, `launcher=slurm_local --detach` (whole command, then `scancel`)",
               f"{elapsed:.2f} s", "< 10 s", "one job array; `slurm/measure.py`'s `submit_time`")


def slurm_cells(tmp: Path, k: int, env: dict, timeout_s: int) -> Row:
    sweep = sweep_root(tmp / "out", "start")
    out, _ = grpolab("sweep", *fast(tmp), "launcher=slurm_local", "sweep.id=start", f"seed=range(0,{k})", "--detach",
                     env=env)
    check(out, "grpolab sweep --detach launcher=slurm_local")
    out, _ = grpolab("collect", str(sweep), "--poll", "1", "--timeout", str(timeout_s), env=env, timeout=timeout_s + 60)
    ts = [t for t in read_timings(sweep) if "job_start_to_call_s" in t]
    if out.returncode != 0 or len(ts) != k:
        logs = sorted(sweep.glob("logs/*/*.err"))
        tail = f"; {logs[-1].parent.name}'s stderr: {last_line(logs[-1].read_text())}" if logs else ""
        raise RuntimeError(f"SLURM sweep: {len(ts)} of {k} cells completed with job timings "
                           f"(collect exit {out.returncode}: {last_line(out.stderr or out.stdout)}){tail}")
    total = [t["job_start_to_call_s"] + t["job_imports_s"] + setup_s(t) for t in ts]

    def of(key: str) -> str:
        return med_max([t[key] for t in ts])

    return Row(f"job start → first step, SLURM ({k} tiny cells, `slurm_local`: 2 at a time on the 2 cores)",
               med_max(total), "< 3 s",
               f"from the sbatch script's first line; excluding model load ({of('model_load_s')}) "
               f"and the warm-start eval; of it: srun + Python start + unpickling {of('job_start_to_call_s')}, "
               f"imports {of('job_imports_s')}, run setup {med_max([setup_s(t) for t in ts])} "
               "(`slurm/measure.py`'s split)")


def slurm_rows(tmp: Path, sizes: Sizes, quick: bool) -> list[Row]:
    env = slurm_env()
    started = False
    if not cluster_up(env):
        started, why = start_cluster(env)
        if not started:
            return [Row("SLURM: submission and job start", f"skipped: SLURM cluster not up ({SLURM_START_HINT})",
                        notes=why)]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # submit_time's subprocess inherits it
    try:
        rows = []
        parts = (lambda: slurm_submission(tmp / "submit", sizes.cells),
                 lambda: slurm_cells(tmp, sizes.slurm_cells, env, timeout_s=120 if quick else 300))
        for part in parts:
            try:
                rows.append(part())
            except Exception as e:  # any failure: one failed part must not hide the others
                rows.append(Row("SLURM", f"failed: {e}", failed=True))
        if started:
            rows[-1].notes += f" (cluster started for this run{' in --quick' if quick else ''} and stopped after)"
        return rows
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if started:
            subprocess.run(["bash", str(ROOT / "slurm" / "stop.sh")], env=env, capture_output=True, timeout=120)


