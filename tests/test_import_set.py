"""A tiny HF/torch job imports only what it uses.

The job is pickled as a launcher pickles it and run in a fresh interpreter by
``tests/import_probe.py``, which notes who first asked for each watched module. Not a timed test: a
module on the list costs job start its import time on every cell of every sweep
(``benchmarks.sweep_overhead`` measures that).

Two kinds of watched modules:
- never imported by such a run: the engines, trackers and analysis libraries it does not use;
- heavy torch subsystems (Dynamo, Inductor, Triton, DTensor, SymPy) and SciPy: transformers' own
  modules import them unconditionally (``masking_utils``, ``activations`` → ``hub_kernels``,
  ``distributed.sharding_utils``, ``loss``), which grpolab cannot avoid short of patching
  transformers. They are allowed only when the importer is transformers, so grpolab's code never adds
  one (a ``torch.compile`` at import, a ``from scipy import stats`` in the trainer, ...).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.compose import compose
from sweeps.job import CellJob
from tests.conftest import fast_overrides

ROOT = Path(__file__).resolve().parents[1]
NEVER = ("deepspeed", "vllm", "wandb", "matplotlib", "optuna", "pandas", "statsmodels", "rliable",
         "math_verify", "sklearn", "numba", "accelerate", "datasets", "pyarrow")
ONLY_VIA_TRANSFORMERS = ("torch._dynamo", "torch._inductor", "triton", "torch.distributed.tensor", "sympy",
                         "scipy")


def probe(tmp_path: Path, overrides: list[str], also: str | None = None) -> dict:
    cfg = compose(fast_overrides(tmp_path, steps=1) + overrides)
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps(CellJob(cfg, str(tmp_path / "run"))))
    report = tmp_path / "imports.json"
    cmd = [sys.executable, str(ROOT / "tests" / "import_probe.py"), str(job), str(report)]
    if also:
        cmd += ["--also", also]
    proc = subprocess.run(cmd, cwd=ROOT, input=json.dumps(NEVER + ONLY_VIA_TRANSFORMERS), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


def offenders(report: dict) -> dict[str, str]:
    """Watched modules a run should not have loaded, with the module that imported each."""
    bad = {m: by for m, by in report["importer"].items() if m in NEVER}
    bad.update({m: by for m, by in report["importer"].items()
                if m in ONLY_VIA_TRANSFORMERS and by.split(".")[0] != "transformers"})
    return bad


@pytest.mark.parametrize("overrides", [[], ["rollout.async_steps=1", "rollout.async_worker=inline"]],
                         ids=["default", "lagged-rollout"])
def test_a_tiny_job_imports_only_what_it_uses(tmp_path, overrides):
    report = probe(tmp_path, overrides)
    assert offenders(report) == {}
    assert {"torch", "transformers"} <= set(report["top_level"])  # the probe saw a real run


def test_the_probe_names_an_import_grpolab_adds(tmp_path):
    """Positive control: the same probe, with the job process importing Dynamo and pandas itself."""
    report = probe(tmp_path, [], also="torch._dynamo")
    bad = offenders(report)
    assert bad["torch._dynamo"] == "__main__"
    assert set(bad.values()) == {"__main__"}  # what Dynamo pulls in (SymPy, Triton, ...) is charged to it
    report = probe(tmp_path, [], also="pandas")
    assert offenders(report)["pandas"] == "__main__"
