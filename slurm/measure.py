"""Measure the SLURM launcher on the local test cluster (slurm/start.sh must be up):

1. time to submit an N-cell sweep with ``grpolab sweep --detach`` (whole command, python start
   included), then cancel the array;
2. per-job overhead from job start to the first training step, excluding model load, read from
   the ``timing`` block of each run record of a finished sweep (``--sweep-dir``).

    python slurm/measure.py --cells 100 [--sweep-dir outputs/sweeps/<id>]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import fast_overrides  # noqa: E402
from trainer.run_record import SUMMARY_FILE, SweepPaths, sweep_root  # noqa: E402


def submit_time(cells: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="grpolab-measure-"))
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", *fast_overrides(tmp, steps=2), "launcher=slurm_local",
           "sweep.id=measure", f"seed=range(0,{cells})", "--detach"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    jobs = json.loads(SweepPaths(sweep_root(tmp / "out", "measure")).jobs.read_text())
    arrays = sorted({ids[-1].split("_")[0] for ids in jobs.values()})
    subprocess.run(["scancel", *arrays], check=False)
    print(f"submit {cells} cells with --detach: {elapsed:.2f} s wall ({len(jobs)} jobs in array {', '.join(arrays)})")
    return elapsed


def overheads(sweep_dir: Path) -> None:
    rows = []
    for path in sorted(SweepPaths(sweep_dir).runs.glob(f"*/{SUMMARY_FILE}")):
        t = json.loads(path.read_text()).get("timing") or {}
        if "job_start_to_call_s" not in t:
            continue
        loads = t["model_load_s"] + t.get("warm_eval_s", 0.0) + t.get("checkpoint_load_s", 0.0)
        setup = t["run_to_first_step_s"] - loads
        rows.append((t["job_start_to_call_s"], t["job_imports_s"], setup))
    if not rows:
        print(f"no timing blocks in {sweep_dir}")
        return
    for label, idx in (("sbatch start -> job callable (srun, python, unpickle)", 0),
                       ("imports of torch/transformers/trainer", 1),
                       ("run setup excluding model load and warm-start eval", 2)):
        vals = [r[idx] for r in rows]
        print(f"  {label}: median {statistics.median(vals):.2f} s, max {max(vals):.2f} s")
    total = [sum(r) for r in rows]
    without_imports = [r[0] + r[2] for r in rows]
    print(f"job start -> first step, excluding model load: median {statistics.median(total):.2f} s "
          f"(max {max(total):.2f}); without the framework imports: median {statistics.median(without_imports):.2f} s "
          f"over {len(rows)} jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--sweep-dir", type=Path, default=None)
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        os.environ["SLURM_CONF"] = str(ROOT / ".cache" / "slurm" / "etc" / "slurm.conf")
    if args.cells:
        submit_time(args.cells)
    if args.sweep_dir:
        overheads(args.sweep_dir)


if __name__ == "__main__":
    main()
