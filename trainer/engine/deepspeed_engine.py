"""DeepSpeed engine (ZeRO 0-3, optional CPU offload) behind TorchEngine's API.

Contract, shared with ``TorchEngine``: the trainer runs forwards on ``engine.module``, calls
``backward(loss)`` once per micro-batch with the loss already divided by the mini-batch's normalizer
(for N ranks: this rank's share of the global mini-batch loss, normalized globally), then ``step()``
once per mini-batch, which returns the pre-clip global grad norm. The result equals a single-process
``TorchEngine`` step on the whole mini-batch (tests/test_deepspeed_engine.py checks it).

Import cost: ``deepspeed`` is imported on first construction, after ``DS_ACCELERATOR`` and
``TORCH_EXTENSIONS_DIR`` are set, since DeepSpeed resolves its accelerator at import and JIT-compiles
ops (on CPU its shared-memory all-reduce, ~90 s once) into the extensions dir.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch

from trainer import distributed
from trainer.config import EngineConfig, OptimConfig
from trainer.engine.ds_config import deepspeed_config
from trainer.provenance import TORCH_EXTENSIONS_DIR

CHECKPOINT_TAG = "engine"  # one fixed tag: a checkpoint dir holds exactly one engine state
CLIENT_KEY = "grpolab_client_state"


def _on_gpu(device: str) -> bool:
    if device == "auto":
        return torch.cuda.is_available()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"engine.device={device!r}: no CUDA device is visible; use engine.device=cpu")
        return True
    if device == "cpu":
        return False
    raise ValueError(f"engine.device={device!r}: must be cpu, cuda, cuda:N or auto")


def import_deepspeed(on_gpu: bool):
    """Import DeepSpeed with the accelerator and op cache chosen first (both are read once, lazily)."""
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(TORCH_EXTENSIONS_DIR))
    try:
        import deepspeed
        from deepspeed.accelerator import get_accelerator, set_accelerator
    except ImportError as e:
        raise ImportError(
            "engine.backend=deepspeed needs DeepSpeed: "
            "DS_BUILD_OPS=0 pip install -c constraints/cpu.txt -e '.[deepspeed]'"
        ) from e
    # DS_ACCELERATOR only counts if it is set before DeepSpeed first resolves its accelerator, and
    # transformers may import DeepSpeed earlier (loading a model checks for ZeRO-3); on a GPU host
    # that auto-detects CUDA even for engine.device=cpu. Force the CPU one explicitly.
    if not on_gpu and get_accelerator().device_name() != "cpu":
        from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

        set_accelerator(CPU_Accelerator())
    if on_gpu and get_accelerator().device_name() == "cpu":
        raise ValueError(
            "engine.device=cuda, but DeepSpeed's accelerator is cpu "
            f"(DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')!r}); "
            "unset DS_ACCELERATOR or use engine.device=cpu"
        )
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    return deepspeed


class DeepSpeedEngine:
    def __init__(
        self,
        model: torch.nn.Module,
        optim_cfg: OptimConfig,
        engine_cfg: Optional[EngineConfig] = None,
        *,
        micro_batch_per_gpu: int = 1,
    ):
        engine_cfg = engine_cfg if engine_cfg is not None else EngineConfig()
        on_gpu = _on_gpu(str(engine_cfg.device))
        self._deepspeed = deepspeed = import_deepspeed(on_gpu)
        distributed.init_from_env("cuda" if on_gpu else "cpu")
        deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
        self.config = deepspeed_config(
            engine_cfg, optim_cfg, micro_batch_per_gpu=micro_batch_per_gpu, world_size=self.world_size, on_gpu=on_gpu
        )
        self.zero_stage = int(self.config["zero_optimization"]["stage"])
        self.ds, *_ = deepspeed.initialize(
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=self.config,
        )
        self.device = torch.device(self.ds.device)
        # DeepSpeed averages gradients over ranks (gradient_allreduce_op=mean); our per-rank losses are
        # shares of one global mean, so scale by the world size to make the update the sum of shares.
        self._loss_factor = float(self.world_size) if self.ds.gradient_average else 1.0
        # Without ZeRO or bf16, DeepSpeed steps the bare torch optimizer and clips via
        # clip_fp32_gradients, discarding the norm; do the clip ourselves (after its all-reduce,
        # right before the update) so the pre-clip norm can be reported.
        self._plain_norm: Optional[float] = None
        if self.ds.optimizer is self.ds.basic_optimizer:
            self.ds.clip_fp32_gradients = lambda: None
            self.ds.optimizer.register_step_pre_hook(self._clip_plain)

    # ------------------------------------------------------------------ the step API
    @property
    def module(self) -> torch.nn.Module:
        """The model to run forwards on: DeepSpeed's wrapper (its forward hooks prepare ZeRO's backward;
        attribute access such as ``.generate`` or ``.config`` falls through to the HF model)."""
        return self.ds

    @property
    def model(self) -> torch.nn.Module:
        """The wrapped HF model itself (under ZeRO-3 its parameters are partitioned placeholders).

        Never run training forwards on it: under ZeRO-3 the gradients then come out silently wrong
        (measured: grad norm 43% off); ZeRO 0-2 happen to tolerate it. Use ``module``."""
        return self.ds.module

    def backward(self, loss: torch.Tensor) -> None:
        self.ds.backward(loss * self._loss_factor, scale_wrt_gas=False)

    def step(self) -> float:
        """Reduce, clip, AdamW-step, zero grads; return the pre-clip global grad norm."""
        self._plain_norm = None
        self.ds.step()
        norm = self._plain_norm if self._plain_norm is not None else self.ds.get_global_grad_norm()
        if norm is None:
            raise RuntimeError(
                "DeepSpeed reported no gradient norm (zero_optimization.compute_grad_norm=false in engine.ds_config?); "
                "DeepSpeedEngine.step() returns it, so keep it true"
            )
        return float(norm)

    def _clip_plain(self, optimizer, args, kwargs) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        clip = self.ds.gradient_clipping()
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        self._plain_norm = float(norm)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        raise NotImplementedError(
            "DeepSpeedEngine keeps sharded, rank-local state; use save_checkpoint(dir) / load_checkpoint(dir)"
        )

    def load_state_dict(self, state: dict) -> None:
        self.state_dict()

    def save_checkpoint(self, ckpt_dir: str | Path, client_state: Optional[dict] = None) -> None:
        """DeepSpeed's own (per-rank, sharded) checkpoint of weights and optimizer; collective."""
        # Under one key: DeepSpeed hands back its own bookkeeping (ds_config, buffer_names, ...) beside it.
        self.ds.save_checkpoint(str(ckpt_dir), tag=CHECKPOINT_TAG, client_state={CLIENT_KEY: client_state or {}})

    def load_checkpoint(self, ckpt_dir: str | Path) -> dict:
        """Restore weights and optimizer saved by ``save_checkpoint``; returns its ``client_state``."""
        path, client_state = self.ds.load_checkpoint(str(ckpt_dir), tag=CHECKPOINT_TAG)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint (tag {CHECKPOINT_TAG!r}) under {ckpt_dir}")
        return (client_state or {}).get(CLIENT_KEY, {})

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's ``state_dict`` with every parameter gathered whole (ZeRO-3: one at a time), on CPU.

        Collective: every rank must call it; all ranks get the full dict."""
        model = self.ds.module
        keys = model.state_dict().keys()  # persistent entries, tied aliases included
        out = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            with self._deepspeed.zero.GatheredParameters([p], enabled=self.zero_stage == 3):
                out[name] = p.detach().to("cpu", copy=True)
        for name, b in model.named_buffers():
            if name in keys:
                out[name] = b.detach().to("cpu", copy=True)
        return out

    def export_hf(self, model_dir: str | Path, tokenizer: Any = None) -> Path:
        """Write the current policy as a Hugging Face checkpoint (``model.path`` loads it); collective,
        rank 0 writes. Weights are saved in the module's dtype (fp32 on CPU, bf16 under bf16)."""
        model_dir = Path(model_dir)
        state = self.full_state_dict()
        if self.rank == 0:
            model_dir.mkdir(parents=True, exist_ok=True)
            self.ds.module.save_pretrained(model_dir, state_dict=state)
            if tokenizer is not None:
                tokenizer.save_pretrained(model_dir)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        return model_dir
