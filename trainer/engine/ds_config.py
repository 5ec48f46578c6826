"""DeepSpeed JSON from our structured config: a pure function, so the mapping is testable alone.

The choices below keep the DeepSpeed engine step-for-step equal to ``TorchEngine`` (AdamW, global
grad-norm clip) under OUR accumulation contract (trainer/grpo.py ``update``):

* every micro-batch loss is already divided by the whole mini-batch's normalizer, and the number of
  micro-batches per mini-batch can vary (dynamic sampling, reward-balanced batches, Lopti stages);
* exactly one optimizer step per mini-batch, when the trainer calls ``engine.step()``.

DeepSpeed's default instead counts micro-steps against a fixed ``gradient_accumulation_steps``,
divides each loss by it and steps on its own boundary. So:

``managed_gradient_accumulation: false``
    DeepSpeed 0.19's caller-owned boundary: ``backward`` only accumulates, ``step()`` is always the
    boundary (ZeRO 0/1 reduce there, ZeRO 2/3 reduce per backward and finalize there). This is what
    makes "one step per mini-batch, however many micro-batches" hold without predicting the last
    micro-batch (``set_gradient_accumulation_boundary`` would need that).
``gradient_accumulation_steps: 1``
    Nothing divides by a GAS count: ``DeepSpeedEngine.backward`` passes ``scale_wrt_gas=False``
    as well, and DeepSpeed's per-output backward hook (used when a loss did not go through
    ``engine.backward``) divides by this number too, so 1 is the only safe value.
    ``train_batch_size = micro_batch_per_gpu · world_size`` satisfies DeepSpeed's batch triple;
    the micro batch size is bookkeeping only (sample counters), it changes no math.
``optimizer: AdamW`` with ``torch_adam: true``
    ``torch.optim.AdamW`` with our lr / betas / weight decay (eps 1e-8, torch's default, as in
    ``TorchEngine``). DeepSpeed's own Adams are C++/CUDA ops that JIT-compile (FusedAdam needs nvcc,
    DeepSpeedCPUAdam g++ and ~1 min cold); torch's AdamW needs nothing, is the same math bit for bit
    as ``TorchEngine`` and checkpoints as a plain torch state. Declared in the config (not a client
    optimizer) so a user JSON can switch it, e.g. ``{"optimizer": {"params": {"torch_adam": false}}}``
    for DeepSpeedCPUAdam with optimizer offload on big GPU runs.
``gradient_clipping``
    ``optim.grad_clip`` (0 = off in both). DeepSpeed clips on the global pre-clip norm, like
    ``clip_grad_norm_``.
precision
    ``bf16`` when on GPU and ``engine.precision`` is auto or bf16 (fp32 master weights and optimizer
    states stay in the ZeRO optimizer); fp32 on CPU. bf16 on CPU is rejected rather than ignored.
offload
    ``offload_optimizer`` (ZeRO ≥ 1) / ``offload_params`` (ZeRO 3) to CPU; ``pin_memory`` only on
    GPU (pinning needs CUDA).

Not set here: cross-rank averaging. DeepSpeed averages gradients over data-parallel ranks
(``gradient_allreduce_op: mean``; ``sum`` is refused under ZeRO-3), while our per-rank losses
are shares of one global mean; ``DeepSpeedEngine.backward`` multiplies by the world size.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from trainer.config import EngineConfig, OptimConfig, Precision


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in recursively; override's keys win (inputs untouched)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _precision(engine_cfg: EngineConfig, on_gpu: bool) -> bool:
    precision = Precision(engine_cfg.precision)
    if precision == Precision.bf16 and not on_gpu:
        raise ValueError(
            "engine.precision=bf16: DeepSpeed on CPU trains in fp32 here; use engine.precision=auto or fp32, "
            "or run on a GPU (engine.device=cuda)"
        )
    return on_gpu and precision in (Precision.auto, Precision.bf16)


def _zero_section(engine_cfg: EngineConfig, on_gpu: bool) -> dict:
    stage = int(engine_cfg.zero_stage)
    if not 0 <= stage <= 3:
        raise ValueError(f"engine.zero_stage={stage}: must be 0, 1, 2 or 3")
    if engine_cfg.offload_optimizer and stage < 1:
        raise ValueError(
            "engine.offload_optimizer=true: optimizer offload needs ZeRO >= 1 (engine.zero_stage=1, 2 or 3)"
        )
    if engine_cfg.offload_params and stage != 3:
        raise ValueError("engine.offload_params=true: parameter offload needs engine.zero_stage=3")
    zero: dict[str, Any] = {"stage": stage}
    if engine_cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if engine_cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    if stage == 3:
        # export_hf gathers weights itself; this also lets DeepSpeed's save_16bit_model work.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return zero


def deepspeed_config(
    engine_cfg: EngineConfig,
    optim_cfg: OptimConfig,
    *,
    micro_batch_per_gpu: int,
    world_size: int,
    on_gpu: bool,
) -> dict:
    """The DeepSpeed config dict for ``engine_cfg``/``optim_cfg``, then ``engine_cfg.ds_config`` merged
    over it (the user's keys win; nested dicts merge key by key). Choices: see the module docstring."""
    if micro_batch_per_gpu < 1 or world_size < 1:
        raise ValueError(f"micro_batch_per_gpu={micro_batch_per_gpu}, world_size={world_size}: both must be >= 1")
    bf16 = _precision(engine_cfg, on_gpu)
    config = {
        "train_micro_batch_size_per_gpu": micro_batch_per_gpu,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro_batch_per_gpu * world_size,
        "managed_gradient_accumulation": False,
        "gradient_clipping": float(optim_cfg.grad_clip),
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": optim_cfg.lr,
                "betas": [optim_cfg.beta1, optim_cfg.beta2],
                "eps": 1e-8,
                "weight_decay": optim_cfg.weight_decay,
                "torch_adam": True,
            },
        },
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "zero_optimization": _zero_section(engine_cfg, on_gpu),
        "wall_clock_breakdown": False,
    }
    if engine_cfg.ds_config:
        path = Path(engine_cfg.ds_config)
        if not path.is_file():
            raise FileNotFoundError(f"engine.ds_config={str(path)!r}: no such JSON file")
        try:
            user = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"engine.ds_config={str(path)!r}: not valid JSON ({e})") from e
        if not isinstance(user, dict):
            raise ValueError(f"engine.ds_config={str(path)!r}: must hold a JSON object, got {type(user).__name__}")
        config = deep_merge(config, user)
    return config
