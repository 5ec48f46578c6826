"""The prepared GPU scripts run end to end on CPU at a tiny size, so a session with a GPU (minutes of
device time) does not spend them on a broken harness. The figures themselves need the GPU."""

from __future__ import annotations

import pytest

TINY_ON_CPU = ["engine=torch", "engine.device=cpu", "engine.precision=fp32", "model.hidden_size=32",
               "model.intermediate_size=64", "model.num_layers=2", "model.num_heads=4", "model.num_kv_heads=2",
               "rollout.prompts_per_step=4", "rollout.max_new_tokens=4", "batching.mini_batch_size=32",
               "batching.micro_batch_size=16", "train.steps=3"]


@pytest.mark.slow
def test_gpu_async_measures_each_arm_and_writes_its_table(tmp_path):
    from benchmarks.gpu_async import ARMS, main

    out = tmp_path / "gpu_async.md"
    assert main(["--out", str(out), "--timeout", "300", *TINY_ON_CPU]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "failed" not in line]
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == list(ARMS)  # header, then one row per arm
    process_row = rows[-1].split(" | ")
    assert process_row[-1].strip(" |") != "—"  # the worker's idle share came back from the run record
