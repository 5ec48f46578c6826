"""A SLURM task of a several-task cell takes its rank layout from SLURM, whatever rank variables the
submitting shell left in the environment (sbatch passes it on): a torchrun shell's, or
LOCAL_WORLD_SIZE=1, which an in-process vLLM engine sets."""

from __future__ import annotations

import os

import pytest

from sweeps.job import export_rank_env

SLURM_TASK_1_OF_4 = {  # rank 1 of a 2-node × 2-task job, on the first node
    "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "77", "SLURM_NTASKS": "4", "SLURM_NNODES": "2",
    "SLURM_JOB_NUM_NODES": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0",
    "SLURM_JOB_NODELIST": "grpolab-n[1-2]", "SLURM_STEP_NODELIST": "grpolab-n[1-2]",
}


@pytest.mark.parametrize("inherited", [{}, {"LOCAL_WORLD_SIZE": "1"},
                                       {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}],
                         ids=["clean", "vllm-left-local-world-size", "a-torchrun-shell"])
def test_the_rank_layout_is_slurms_not_the_submitting_shells(monkeypatch, inherited):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(k, "")  # recorded, so what export_rank_env sets is undone after the test
        monkeypatch.delenv(k)
    for k, v in {**SLURM_TASK_1_OF_4, **inherited}.items():
        monkeypatch.setenv(k, v)
    assert export_rank_env() == 1
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"], os.environ["LOCAL_WORLD_SIZE"]) \
        == ("1", "4", "1", "2")
    assert os.environ["MASTER_ADDR"] == "grpolab-n1"  # the allocation's first node, by name


def test_the_layout_it_exported_is_gone_after_the_test():
    """The test above must not leave rank variables to the tests after it (they would see 4 ranks)."""
    assert "WORLD_SIZE" not in os.environ or os.environ["WORLD_SIZE"] != "4"
