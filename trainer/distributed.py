"""Process-group helpers: one code path for 1 process (laptop, CI) and N ranks (torchrun, SLURM, spawn).

The rank layout comes from the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
which torchrun, ``srun`` wrappers and DeepSpeed's launcher all set; a bare ``python`` run gets the
single-process defaults. DeepSpeed needs a process group even for one process (without these
variables it falls back to mpi4py discovery and fails).
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def free_port() -> int:
    """A TCP port that was free a moment ago (good enough for a single-host rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_from_env(device: str = "cpu") -> None:
    """Fill in single-process defaults for unset rank variables and start the process group.

    gloo on CPU, nccl on CUDA. A no-op when a group already exists (e.g. the launcher made one).
    """
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    if dist.is_initialized():
        return
    on_gpu = str(device).startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if on_gpu else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity on one process); returns it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous slice of a mini-batch's indices (sizes differ by at most one).

    The loss normalizer must still be the whole mini-batch's (computed before sharding), so the
    per-rank gradients sum to the single-process gradient. Under ZeRO-2/3 every rank must call
    ``backward`` (and, for ZeRO-3, forward) the same number of times per step: collectives run
    per call, so split each shard into the same number of micro-batches on every rank.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank={rank}: must be in [0, world={world})")
    return indices.tensor_split(world)[rank]
