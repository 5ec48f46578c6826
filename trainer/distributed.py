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
    if on_gpu:  # all of the node's GPUs visible: the local rank's; one bound per task (srun): that one
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    dist.init_process_group(backend="nccl" if on_gpu else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks (identity on one process); returns it, on its own device.

    NCCL reduces CUDA tensors only: a CPU tensor makes the round trip through the GPU.
    """
    if is_multi():
        on = _collective_device(tensor)
        out = tensor.to(on)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        tensor.copy_(out)
    return tensor


def _collective_device(tensor: torch.Tensor) -> torch.device:
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


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


def is_multi() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_multi():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (identity on one process); picklable objects only."""
    if not is_multi():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` on one process)."""
    if not is_multi():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any (ranks must agree on stopping, or the others
    block in the next collective)."""
    if not is_multi():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    t = t.to(_collective_device(t))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
