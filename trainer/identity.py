"""Who a run is: its config as plain data, the hash that identifies its cell, its label, its ``Meta``.

Identity is derived, never typed. The hash covers exactly what can change a run's trajectory or a
value it records — the chosen task's section, the backends in use, the knobs of the variants that
are on — and nothing else, so runs of one cell with different seeds (or threads, or launchers)
share it. ``result_keys()`` classifies every leaf of the schema in one place (a test walks the
schema and perturbs each leaf); ``HASH_VERSION`` is written to ``meta.json`` so a record written
under another classification is recognised as such. The label (``grpo+nthr``, ``gspo+dfpo_min_replace``)
comes from the loss and the features that are on.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import trainer.variants  # noqa: F401  registers every variant: their knobs are classified below
from trainer import registry
from trainer.run_record import IDENTITY_VERSION, Meta
from trainer.secrets import redact_overrides, redact_value

# 1: every section but seed, launcher, tracker, sweep, tune, paths; 2: result_keys() below
HASH_VERSION = IDENTITY_VERSION

Counts = Optional[Callable[[Any], bool]]  # when a key is part of a run's identity; None: never


def _sft_used(c) -> bool:
    return c.sft.enabled and c.sft.steps > 0


def _variant_keys() -> list[tuple[str, Counts]]:
    """A variant's knobs count only when it is on: a feature's when enabled, a loss's when selected."""
    out: list[tuple[str, Counts]] = []
    for f in registry.FEATURES.values():
        out.append((f"{f.key}.*", lambda c, f=f: registry.is_on(c, f)))
    for loss in registry.LOSSES.values():
        if loss.config is not None:
            out.append((f"{loss.key}.*", lambda c, name=loss.name: c.algorithm.loss == name))
    return out


def result_keys() -> tuple[tuple[str, Counts], ...]:
    always: Counts = lambda c: True  # noqa: E731
    return (
        # ---- never: how and where a run is executed, tracked, named
        ("seed", None),  # runs of one cell differ by seed; it is in the run's name
        ("launcher.*", None),
        ("tracker.*", None),
        ("sweep.*", None),
        ("tune.*", None),
        ("paths.*", None),
        ("engine.threads", None),  # intra-op threads: the same numbers, sooner or later
        ("train.checkpoint_every", None),  # a resumed run equals an uninterrupted one
        ("rollout.vllm_gpu_memory_utilization", None),  # memory budgets
        ("rollout.vllm_cpu_kv_cache_gib", None),
        ("rollout.async_worker", None),  # a worker process and the inline reference draw the same batches
        ("rollout.async_threads", None),
        # ---- when in use
        ("model.path", always),
        ("model.*", lambda c: c.model.path is None),  # the tiny model's shape and init
        ("task.arithmetic.*", lambda c: c.task.name == "arithmetic"),
        ("task.knights_knaves.*", lambda c: c.task.name == "knights_knaves"),
        ("task.jsonl.*", lambda c: c.task.name == "jsonl"),
        # the answer checker: only task=jsonl has one to choose; workers change speed, not rewards
        ("task.verifier_workers", None),
        ("task.verifier", lambda c: c.task.name == "jsonl"),
        ("task.verifier_timeout_s", lambda c: c.task.name == "jsonl" and _verifier(c) != "exact"),
        ("engine.zero_stage", lambda c: c.engine.backend == "deepspeed"),
        ("engine.offload_*", lambda c: c.engine.backend == "deepspeed"),
        ("engine.ds_config", lambda c: c.engine.backend == "deepspeed"),
        ("algorithm.loss_agg_max_len", lambda c: c.algorithm.loss_agg == "seq_mean_token_sum_norm"),
        ("batching.seqlen_partitions", lambda c: c.batching.mode == "seqlen_balanced"),
        # the reference codes' accumulation: counts when chosen, so every cell recorded before the knob existed
        # keeps its hash
        ("batching.normalizer", lambda c: getattr(c.batching.normalizer, "value", c.batching.normalizer)
         != "mini_batch"),
        ("diagnostics.prob_bins", lambda c: c.diagnostics.every > 0),
        ("rollout.async_steps", lambda c: c.rollout.async_steps > 0),  # counts when on: older cells keep their hash
        ("sft.enabled", always),
        ("sft.steps", lambda c: c.sft.enabled),  # a switch too: sft.steps=0 turns the warm start off
        ("sft.*", _sft_used),
        *_variant_keys(),
        # ---- always: everything else of what a run computes and records
        ("task.*", always),
        ("algorithm.*", always),
        ("batching.*", always),
        ("rollout.*", always),
        ("engine.*", always),
        ("optim.*", always),
        ("train.*", always),
        ("diagnostics.*", always),
    )


# Keys that count only at some of their own values (a switch with a default that changes nothing): setting one
# to its off value is the user's choice (a sweep's control cell), never an override without effect.
SELF_SWITCHES = frozenset({"batching.normalizer", "rollout.async_steps"})


def classify(key: str) -> tuple[str, Counts]:
    """(pattern, when it counts) of a dotted schema key; KeyError for a key no pattern covers."""
    for pattern, counts in result_keys():
        if fnmatch.fnmatchcase(key, pattern):
            return pattern, counts
    raise KeyError(f"{key}: not classified in trainer.identity (result or not?)")


def leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a nested dict (an empty dict is a leaf)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and not k.startswith("_"):
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _verifier(cfg) -> str:
    """The answer checker a task=jsonl run uses: ``task.verifier``, its null resolved by what is installed."""
    from trainer.tasks import verifier

    return verifier.resolve(getattr(cfg.task.verifier, "value", cfg.task.verifier))


def identity_view(cfg) -> dict[str, Any]:
    """The leaves that identify ``cfg``'s cell: every key that counts for this config. A null
    ``task.verifier`` counts as the checker it resolves to here (math-verify installed or not)."""
    out = {}
    for key, value in leaves(to_dict(cfg)).items():
        _, counts = classify(key)
        if counts is not None and counts(cfg):
            out[key] = _verifier(cfg) if key == "task.verifier" else value
    return out


def to_dict(obj: Any) -> Any:
    """JSON-able nested dict of a config dataclass (enums as their values)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def stable_hash(obj: Any, length: int = 12) -> str:
    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def config_hash(cfg) -> str:
    """Identity of a cell: what can change results, seed aside (runs of one cell share it)."""
    return stable_hash({"hash_version": HASH_VERSION, "keys": identity_view(cfg)})


# A batching mode other than shuffled is part of the label (the cancellation paper's variants are modes).
_MODE_LABELS = {"seqlen_balanced": "seqlen", "query_preserved": "qb", "sign_segregated": "sign_segregated"}


def variant_label(cfg) -> str:
    """The run's label from what is on: the loss's part, the batching mode's unless it is the default
    shuffle, then each enabled feature's (``grpo+ar+lopti``, ``gspo+dfpo_min_replace+qb``)."""
    parts = [registry.loss_of(cfg).label_of(cfg)]
    if cfg.batching.mode in _MODE_LABELS:
        parts.append(_MODE_LABELS[cfg.batching.mode])
    return "+".join([*parts, *(f.label for f in registry.features_on(cfg))])


def run_meta(cfg, run_id: str | Path, *, sweep_id: Optional[str] = None, swept: Optional[dict] = None,
             overrides: Optional[list] = None, plan_index: Optional[int] = None, tune: Optional[dict] = None,
             code_version: Optional[dict] = None) -> Meta:
    """The ``Meta`` of a run of ``cfg``: identity from the config, labels from whoever launches it.
    ``created``, ``code_version`` (unless given: SLURM takes it at submit) and ``world_size`` are
    filled by the run itself when it starts afresh. Secrets in ``overrides`` and ``swept`` are redacted
    (``trainer.secrets``): a ``Meta`` is written to ``meta.json`` and pickled into a launcher's job."""
    chash = config_hash(cfg)
    swept = {k: redact_value(k, v) for k, v in (swept or {}).items()}
    return Meta(run_id=Path(run_id).name, config_hash=chash, cell_id=chash, seed=cfg.seed, label=variant_label(cfg),
                hash_version=HASH_VERSION, sweep_id=sweep_id, swept=swept, overrides=redact_overrides(overrides or []),
                plan_index=plan_index, tune=tune, code_version=dict(code_version or {}))
