"""Config validation: every bound, every cross-key rule, every warning, before anything runs.

``validate`` lists every bad key at once (not just the first), each naming the full key, the
value and what is valid; ``config_warnings`` lists valid configs that probably do not do what the
user wants (printed once per distinct message before a sweep launches).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from trainer.config import (
    NTHR_ETA_SCHEDULES,
    BatchingMode,
    Config,
    DFPOTransform,
    LoptiOrder,
    OldLogpSource,
    PolicyLoss,
    RBUnit,
    RolloutBackend,
    TaskName,
)
from trainer.knobs import ConfigError

_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_OK = {
    "ge": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "le": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
}


def _range_errors(obj: Any, prefix: str) -> list[str]:
    errors = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            errors += _range_errors(value, key + ".")
            continue
        if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if isinstance(value, float) and math.isnan(value):
            errors.append(f"{key}={value}: must be a number, not NaN")
            continue
        for bound, limit in f.metadata.items():
            if bound in _BOUND_OK and not _BOUND_OK[bound](value, limit):
                errors.append(f"{key}={value}: must be {_BOUND_TEXT[bound]} {limit}")
    return errors


def _cross_errors(cfg: Config) -> list[str]:
    errors = []
    m = cfg.model
    if m.path is None and m.num_heads % m.num_kv_heads:
        errors.append(f"model.num_kv_heads={m.num_kv_heads}: must divide model.num_heads={m.num_heads}")
    if m.path is None and m.hidden_size % m.num_heads:
        errors.append(f"model.hidden_size={m.hidden_size}: must be a multiple of model.num_heads={m.num_heads}")
    b, r = cfg.batching, cfg.rollout
    batch = r.prompts_per_step * r.n
    if b.mini_batch_size > batch or batch % b.mini_batch_size:
        errors.append(
            f"batching.mini_batch_size={b.mini_batch_size}: must divide the rollout batch "
            f"rollout.prompts_per_step·rollout.n = {r.prompts_per_step}·{r.n} = {batch}"
        )
    if b.mini_batch_size % b.micro_batch_size:
        errors.append(
            f"batching.micro_batch_size={b.micro_batch_size}: must divide batching.mini_batch_size={b.mini_batch_size}"
        )
    if b.mode == BatchingMode.query_preserved and b.mini_batch_size % r.n:
        errors.append(
            f"batching.mini_batch_size={b.mini_batch_size}: batching.mode=query_preserved keeps whole groups, "
            f"so it must be a multiple of rollout.n={r.n}"
        )
    t = cfg.task
    if t.name == TaskName.jsonl and not t.jsonl.path:
        errors.append("task.jsonl.path=null: task=jsonl needs a local JSONL/Parquet file")
    if t.name == TaskName.arithmetic and t.arithmetic.max_operand < t.arithmetic.min_operand:
        errors.append(
            f"task.arithmetic.max_operand={t.arithmetic.max_operand}: must be >= task.arithmetic.min_operand={t.arithmetic.min_operand}"
        )
    bad_ops = [op for op in t.arithmetic.ops if op not in ("+", "-", "*")]
    if bad_ops:
        errors.append(f"task.arithmetic.ops={t.arithmetic.ops}: each must be one of +, -, *")
    kk = t.knights_knaves
    if kk.style not in ("compact", "natural"):
        errors.append(f"task.knights_knaves.style={kk.style!r}: must be compact or natural")
    if kk.max_people < kk.min_people:
        errors.append(f"task.knights_knaves.max_people={kk.max_people}: must be >= min_people={kk.min_people}")
    if r.eval_temperature == 0 and r.eval_n != 1:
        errors.append(f"rollout.eval_n={r.eval_n}: greedy eval (rollout.eval_temperature=0) gives one answer per prompt; set eval_n=1")
    if cfg.engine.device not in ("cpu", "cuda", "auto") and not cfg.engine.device.startswith("cuda:"):
        errors.append(f"engine.device={cfg.engine.device!r}: must be cpu, cuda, cuda:N or auto")
    if r.backend == RolloutBackend.vllm and m.path is None and cfg.engine.device == "cpu" and m.hidden_size // m.num_heads < 16:
        errors.append(
            f"model.hidden_size={m.hidden_size}: vLLM's CPU attention needs a head size >= 16 "
            f"(hidden_size / num_heads = {m.hidden_size // m.num_heads}); widen the tiny model or use rollout=hf"
        )
    bins = list(cfg.diagnostics.prob_bins)
    if any(a >= b for a, b in zip(bins, bins[1:])) or any(not 0.0 < e < 1.0 for e in bins):
        errors.append(f"diagnostics.prob_bins={bins}: must be strictly increasing, each in (0, 1)")
    return errors + _variant_errors(cfg)


def _variant_errors(cfg: Config) -> list[str]:
    """Combinations of the paper variants that are undefined or would silently do something else."""
    errors = []
    a, b, r = cfg.algorithm, cfg.batching, cfg.rollout
    nthr = a.nthr
    if isinstance(nthr.eta, str):
        if nthr.eta not in NTHR_ETA_SCHEDULES:
            errors.append(f"algorithm.nthr.eta={nthr.eta!r}: must be a number in [0, 1) or one of {list(NTHR_ETA_SCHEDULES)}")
    elif isinstance(nthr.eta, bool) or not isinstance(nthr.eta, (int, float)) or not 0.0 <= nthr.eta <= 1.0:
        errors.append(
            f"algorithm.nthr.eta={nthr.eta!r}: must be in [0, 1] (η < 1 reduces the penalty, 1 = plain GRPO) "
            f"or a schedule {list(NTHR_ETA_SCHEDULES)}"
        )
    if math.isnan(nthr.beta) or nthr.beta == math.inf:
        errors.append(f"algorithm.nthr.beta={nthr.beta}: must be a finite number or -inf")
    if nthr.enabled and a.old_logp_source == OldLogpSource.rollout:
        errors.append("algorithm.old_logp_source=rollout: NTHR scores come from the π_old forward's hidden states; "
                      "use algorithm.old_logp_source=recompute with NTHR")
    if nthr.enabled and cfg.task.format_reward > 0 and nthr.correct_threshold is None:
        errors.append(
            f"algorithm.nthr.correct_threshold=null: task.format_reward={cfg.task.format_reward} makes rewards non-binary, "
            "and NTHR needs to know which responses are correct; set a reward threshold (e.g. 1.0)"
        )
    if a.lopti.enabled and a.ppo_epochs > 1:
        errors.append(
            f"algorithm.ppo_epochs={a.ppo_epochs}: Lopti already makes two passes over each rollout batch "
            "(stage 1 on one token set, stage 2 on the other, each over every mini-batch); ppo_epochs > 1 would repeat "
            "each stage, which no paper ran. Use ppo_epochs=1 with Lopti"
        )
    if a.dfpo.transform != DFPOTransform.none:
        if a.loss != PolicyLoss.gspo:
            errors.append(f"algorithm.dfpo.transform={a.dfpo.transform.value}: DFPO transforms GSPO's sequence weights; set algorithm.loss=gspo")
        if b.mode != BatchingMode.query_preserved:
            errors.append(
                f"batching.mode={b.mode.value}: DFPO's transform is taken over each whole group, so it needs "
                "batching.mode=query_preserved"
            )
        if b.micro_batch_size % r.n:
            errors.append(
                f"batching.micro_batch_size={b.micro_batch_size}: DFPO needs whole groups per micro-batch, "
                f"so a multiple of rollout.n={r.n}"
            )
        if a.grpo_fix.enabled:
            errors.append("algorithm.grpo_fix.enabled=true: GRPO-fix replaces the clip that DFPO transforms; use one of them")
        if a.clip.dual is not None:
            errors.append(f"algorithm.clip.dual={a.clip.dual}: DFPO's sign-aware clip (Eq. 47) has no dual clip; set it to null")
    if a.grpo_fix.enabled and a.clip.dual is not None:
        errors.append(f"algorithm.clip.dual={a.clip.dual}: GRPO-fix's symmetric clip has no dual clip; set it to null")
    rb = b.reward_balanced
    if rb.enabled and rb.unit == RBUnit.rollout and b.mode == BatchingMode.query_preserved:
        errors.append(
            "batching.reward_balanced.unit=rollout: selecting single rollouts splits groups, "
            "which batching.mode=query_preserved forbids; use unit=group"
        )
    if rb.enabled and rb.unit == RBUnit.rollout and a.dfpo.transform != DFPOTransform.none:
        errors.append("batching.reward_balanced.unit=rollout: DFPO needs whole groups; use unit=group")
    return errors


def config_warnings(cfg: Config) -> list[str]:
    """Valid configs that probably do not do what the user wants (printed before launch)."""
    warnings = []
    a, b, r = cfg.algorithm, cfg.batching, cfg.rollout
    one_minibatch = b.mini_batch_size >= r.prompts_per_step * r.n
    on_policy = one_minibatch and a.ppo_epochs == 1 and not a.lopti.enabled and not b.reward_balanced.enabled
    if a.old_logp_source == OldLogpSource.rollout and r.backend == RolloutBackend.vllm and (r.top_k > 0 or r.top_p < 1):
        warnings.append(
            f"algorithm.old_logp_source=rollout with rollout.top_k={r.top_k}, top_p={r.top_p}: vLLM's log-probs are of the "
            "truncated, renormalized distribution, the trainer's π is not; ratios start away from 1")
    if on_policy and r.backend == RolloutBackend.hf:
        for on, what in ((a.dfpo.transform != DFPOTransform.none, f"algorithm.dfpo.transform={a.dfpo.transform.value}"),
                         (a.grpo_fix.enabled, "algorithm.grpo_fix.enabled=true")):
            if on:
                warnings.append(
                    f"{what} has no effect here: with one mini-batch per rollout batch, ppo_epochs=1 and trainer "
                    "log-probs equal to the rollout's, every ratio is 1 at the update (DFPO §3.4); lower "
                    "batching.mini_batch_size or raise algorithm.ppo_epochs"
                )
    if a.nthr.enabled and a.nthr.beta == -math.inf and a.nthr.eta == 0:
        warnings.append("algorithm.nthr.beta=-inf with eta=0 zeroes every negative advantage (the Pos-Only baseline)")
    if a.lopti.enabled and a.lopti.order == LoptiOrder.high_first:
        warnings.append("algorithm.lopti.order=high_first is the paper's collapse ablation, not a recommended setting")
    return warnings


def validate(cfg: Config) -> Config:
    """Raise ``ConfigError`` listing every bad key (not just the first); return ``cfg`` if fine."""
    errors = _range_errors(cfg, "") + _cross_errors(cfg)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return cfg

