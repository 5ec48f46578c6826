"""Config validation: every bound, every cross-key rule, every warning, before anything runs.

``validate`` lists every bad key at once (not just the first), each naming the full key, the
value and what is valid; ``config_warnings`` lists valid configs that probably do not do what the
user wants (printed once per distinct message before a sweep launches). Rules about variants are
asked of the registry: what the selected loss and the enabled features need (``Needs``), and each
one's own ``check`` and ``warn``; nothing here names a paper's variant.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from trainer import registry
from trainer.batching import MINIBATCHERS
from trainer.config import Config, OldLogpSource, RolloutBackend, TaskName
from trainer.knobs import ConfigError
from trainer.safe_text import config_strings, env_name_error, shown, text_error
from trainer.tasks import verifier

_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_OK = {
    "ge": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "le": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
}


def validate(cfg: Config) -> Config:
    """Raise ``ConfigError`` listing every bad key (not just the first), one line each; return ``cfg`` if fine."""
    errors = _range_errors(cfg, "")
    errors += _text_errors(cfg, {e.split("=", 1)[0] for e in errors})
    try:
        cross = _cross_errors(cfg)
        if cfg.algorithm.loss in registry.LOSSES:  # the variant rules start from the selected loss
            cross += _variant_errors(cfg)
    except ArithmeticError:  # a size the range rules refused (0 heads, a 0 batch) divides a cross-key rule
        if not errors:
            raise
        cross = []
    errors += cross
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg


def _range_errors(obj: Any, prefix: str) -> list[str]:
    errors = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            errors += _range_errors(value, key + ".")
            continue
        valid = f.metadata.get("valid")
        if valid is not None and valid(value) is not None:
            errors.append(f"{key}={shown(value)}: {valid(value)}")
            continue
        if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if isinstance(value, float) and math.isnan(value):
            errors.append(f"{key}={value}: must be a number, not NaN")
            continue
        if isinstance(value, float) and math.isinf(value) and not f.metadata.get("allow_inf"):
            errors.append(f"{key}={value}: must be a finite number")
            continue
        for bound, limit in f.metadata.items():
            if bound in _BOUND_OK and not _BOUND_OK[bound](value, limit):
                errors.append(f"{key}={value}: must be {_BOUND_TEXT[bound]} {limit}")
    return errors


# ---------------------------------------------------------------- strings that reach a script or a file name
def _text_errors(cfg: Config, reported: set[str]) -> list[str]:
    """Control characters, over-long paths and bad environment names (``trainer.safe_text``); keys in
    ``reported`` have an error already."""
    errors = [e for key, text in config_strings(cfg) if key not in reported and (e := text_error(key, text))]
    return errors + [e for name in cfg.launcher.env if (e := env_name_error("launcher.env", name))]


def _cross_errors(cfg: Config) -> list[str]:
    errors = []
    m = cfg.model
    if m.path is None and m.num_heads % m.num_kv_heads:
        errors.append(f"model.num_kv_heads={m.num_kv_heads}: must divide model.num_heads={m.num_heads}")
    if m.path is None and m.hidden_size % m.num_heads:
        errors.append(f"model.hidden_size={m.hidden_size}: must be a multiple of model.num_heads={m.num_heads}")
    a, b, r = cfg.algorithm, cfg.batching, cfg.rollout
    if a.loss not in registry.LOSSES:
        errors.append(f"algorithm.loss={a.loss!r}: must be one of {', '.join(registry.LOSSES)}")
    if b.mode not in MINIBATCHERS:
        errors.append(f"batching.mode={b.mode!r}: must be one of {', '.join(MINIBATCHERS)}")
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
    if b.mode == "query_preserved" and b.mini_batch_size % r.n:
        errors.append(
            f"batching.mini_batch_size={b.mini_batch_size}: batching.mode=query_preserved keeps whole groups, "
            f"so it must be a multiple of rollout.n={r.n}"
        )
    t = cfg.task
    if t.name == TaskName.jsonl and not t.jsonl.path:
        errors.append("task.jsonl.path=null: task=jsonl needs a local JSONL/Parquet file")
    asked = getattr(t.verifier, "value", t.verifier)
    if asked not in (None, "exact") and not verifier.math_verify_installed():
        errors.append(f"task.verifier={asked}: math-verify is not installed; {verifier.INSTALL} "
                      "(or task.verifier=exact)")
    if t.name == TaskName.arithmetic and t.arithmetic.max_operand < t.arithmetic.min_operand:
        errors.append(
            f"task.arithmetic.max_operand={t.arithmetic.max_operand}: "
            f"must be >= task.arithmetic.min_operand={t.arithmetic.min_operand}"
        )
    bad_ops = [op for op in t.arithmetic.ops if op not in ("+", "-", "*")]
    if bad_ops or not t.arithmetic.ops:
        errors.append(f"task.arithmetic.ops={list(t.arithmetic.ops)}: one or more of +, -, *")
    if m.path is None and r.max_new_tokens >= m.max_position_embeddings:
        errors.append(
            f"rollout.max_new_tokens={r.max_new_tokens}: the tiny model sees at most "
            f"model.max_position_embeddings={m.max_position_embeddings} positions, prompt and completion together; "
            "raise model.max_position_embeddings or lower the completion length")
    kk = t.knights_knaves
    if kk.style not in ("compact", "natural"):
        errors.append(f"task.knights_knaves.style={kk.style!r}: must be compact or natural")
    if kk.max_people < kk.min_people:
        errors.append(f"task.knights_knaves.max_people={kk.max_people}: must be >= min_people={kk.min_people}")
    if r.eval_temperature == 0 and r.eval_n != 1:
        errors.append(
            f"rollout.eval_n={r.eval_n}: greedy eval (rollout.eval_temperature=0) gives one answer per prompt; "
            "set eval_n=1"
        )
    if cfg.engine.device not in ("cpu", "cuda", "auto") and not cfg.engine.device.startswith("cuda:"):
        errors.append(f"engine.device={cfg.engine.device!r}: must be cpu, cuda, cuda:N or auto")
    if (
        r.backend == RolloutBackend.vllm
        and m.path is None
        and cfg.engine.device == "cpu"
        and m.hidden_size // m.num_heads < 16
    ):
        errors.append(
            f"model.hidden_size={m.hidden_size}: vLLM's CPU attention needs a head size >= 16 "
            f"(hidden_size / num_heads = {m.hidden_size // m.num_heads}); widen the tiny model or use rollout=hf"
        )
    bins = list(cfg.diagnostics.prob_bins)
    if any(x >= y for x, y in zip(bins, bins[1:])) or any(not 0.0 < e < 1.0 for e in bins):
        errors.append(f"diagnostics.prob_bins={bins}: must be strictly increasing, each in (0, 1)")
    transforms = [n for n, f in registry.FEATURES.items() if isinstance(f.role, registry.TokenTransform)]
    order = list(a.transform_order)
    unknown = [n for n in order if n not in transforms]
    if unknown or len(set(order)) != len(order):
        errors.append(
            f"algorithm.transform_order={order}: each must be one registered token transform "
            f"({', '.join(transforms)}), at most once"
        )
    return errors + _async_errors(cfg)


def _async_errors(cfg: Config) -> list[str]:
    """What a lagged sampler (``rollout.async_steps`` > 0, ``trainer.rollout.lagged``) can run with."""
    r, e, launcher = cfg.rollout, cfg.engine, cfg.launcher
    k = f"rollout.async_steps={r.async_steps}"
    if r.async_steps == 0:
        return []
    errors = []
    if launcher.nodes * launcher.tasks_per_node > 1:
        errors.append(f"{k}: one process per run (launcher.nodes·tasks_per_node = "
                      f"{launcher.nodes * launcher.tasks_per_node}); several ranks sample synchronously")
    if r.async_worker.value == "process" and e.device != "cpu" and r.backend == RolloutBackend.vllm:
        errors.append(f"{k}: rollout.async_worker=process starts a second vLLM engine, on CPU only; with "
                      f"engine.device={e.device} use rollout.async_worker=inline")
    if e.backend.value == "deepspeed" and e.zero_stage == 3:
        errors.append(f"{k}: ZeRO-3 partitions the weights the sampler copies; use engine.zero_stage <= 2")
    if cfg.algorithm.old_logp_source == OldLogpSource.rollout:
        errors.append(f"{k}: the sampler's log-probs are the behaviour policy's, k steps old, not π_old; use "
                      "algorithm.old_logp_source=recompute")
    return errors


# ---------------------------------------------------------------- variants, through the registry
def _components_on(cfg: Config) -> list[tuple[str, Any]]:
    """(how a user switched it on, its registry entry) for the loss and every enabled feature."""
    loss = registry.loss_of(cfg)
    return [(f"algorithm.loss={loss.name}", loss), *((f"{f.key}.enabled=true", f) for f in registry.features_on(cfg))]


def _variant_errors(cfg: Config) -> list[str]:
    """What the selected components need of the update, and each one's own rules."""
    errors = []
    a, b, r, launcher = cfg.algorithm, cfg.batching, cfg.rollout, cfg.launcher
    on = _components_on(cfg)
    for role in (registry.StagePlan, registry.Surrogate, registry.UpdateBuffer):
        several = [f.key for f in registry.features_on(cfg, role)]
        if len(several) > 1:
            errors.append(f"{several[1]}.enabled=true: only one {role.__name__} at a time, and {several[0]} is on too")
    order = list(a.transform_order)
    if order:
        on_names = [f.name for f in registry.features_on(cfg, registry.TokenTransform)]
        if sorted(order) != sorted(on_names):
            errors.append(
                f"algorithm.transform_order={order}: must list exactly the enabled token transforms "
                f"({', '.join(on_names) or 'none'})"
            )
    for who, entry in on:
        needs = entry.needs
        if needs.whole_groups:
            if b.mode != "query_preserved":
                errors.append(
                    f"batching.mode={b.mode}: {who} works on whole prompt groups, so it needs "
                    "batching.mode=query_preserved"
                )
            if b.micro_batch_size % r.n:
                errors.append(
                    f"batching.micro_batch_size={b.micro_batch_size}: {who} needs whole groups per "
                    f"micro-batch, so a multiple of rollout.n={r.n}"
                )
            if launcher.nodes * launcher.tasks_per_node > 1:
                errors.append(
                    f"launcher.tasks_per_node={launcher.tasks_per_node}: {who} needs whole groups per "
                    "micro-batch, which sharding a mini-batch over ranks breaks; run it in one process per cell"
                )
        if needs.old_forward and a.old_logp_source == OldLogpSource.rollout:
            errors.append(
                f"algorithm.old_logp_source=rollout: {who} reads the π_old forward's hidden states and "
                "logits; use algorithm.old_logp_source=recompute with it"
            )
        if entry.check is not None:
            errors += entry.check(cfg)
    return errors


def config_warnings(cfg: Config) -> list[str]:
    """Valid configs that probably do not do what the user wants (printed before launch)."""
    warnings = []
    a, b, r = cfg.algorithm, cfg.batching, cfg.rollout
    if a.old_logp_source == OldLogpSource.rollout and r.backend == RolloutBackend.vllm and (r.top_k > 0 or r.top_p < 1):
        warnings.append(
            f"algorithm.old_logp_source=rollout with rollout.top_k={r.top_k}, top_p={r.top_p}: "
            "vLLM's log-probs are of the "
            "truncated, renormalized distribution, the trainer's π is not; ratios start away from 1"
        )
    if cfg.task.name == TaskName.jsonl and cfg.task.verifier is None and not verifier.math_verify_installed():
        warnings.append(f"task.verifier=null falls back to exact: math-verify is not installed ({verifier.INSTALL})")
    needs = registry.needs(cfg)
    one_minibatch = b.mini_batch_size >= r.prompts_per_step * r.n
    on_policy = one_minibatch and a.ppo_epochs == 1 and not needs.off_policy and r.backend == RolloutBackend.hf
    for who, entry in _components_on(cfg):
        if on_policy and entry.needs.inert_on_policy:
            warnings.append(
                f"{who} has no effect here: with one mini-batch per rollout batch, ppo_epochs=1 and trainer "
                "log-probs equal to the rollout's, every ratio is 1 at the update (docs/algorithms.md §6.9); lower "
                "batching.mini_batch_size or raise algorithm.ppo_epochs"
            )
        if entry.warn is not None:
            warnings += entry.warn(cfg)
    return warnings
