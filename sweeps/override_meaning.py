"""What a command-line override must mean before anything runs: a key of the schema, and a key
that counts for the config it lands in.

Two mistakes Hydra lets through or explains badly:
- a typo. ``train.stpes=10`` is refused by Hydra with advice to write ``+train.stpes=10``, and
  that ``+`` form, like ``+algorithm.kl.cof=0``, composes and is then dropped without a word. Every
  override's key is checked against the schema first, in one line with a "did you mean".
- a knob of a feature that is off (``algorithm.nthr.eta=0.5`` with NTHR off, a K&K knob on the
  arithmetic task, a tiny-model size with ``model.path`` set): cells that differ by it train
  identically — a null ablation dressed as a sweep. ``trainer.identity`` already knows when each key
  counts; an override of a key that does not count is refused, naming why.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Optional, Sequence

from sweeps.hydra_adapter import parse_overrides
from trainer import registry
from trainer.config import Config
from trainer.identity import SELF_SWITCHES, classify


@functools.lru_cache(maxsize=1)
def _schema() -> tuple[frozenset, frozenset, frozenset]:
    """(leaf keys, section keys, free maps: dict-typed keys whose entries are the user's)."""
    leaves, sections, maps = set(), set(), set()

    def walk(cls, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                sections.add(key)
                walk(type(default), key + ".")
            elif isinstance(default, dict):
                maps.add(key)
            else:
                leaves.add(key)

    walk(Config, "")
    return frozenset(leaves), frozenset(sections), frozenset(maps)


def unknown_key(key: str) -> Optional[str]:
    """The one-line refusal of ``key`` when the schema has no such key, else None."""
    leaves, sections, maps = _schema()
    if key in leaves or key in sections or key in maps or any(key.startswith(m + ".") for m in maps):
        return None
    parent, _, last = key.rpartition(".")
    close = difflib.get_close_matches(key, sorted(leaves | sections), n=1, cutoff=0.75)
    if not close and parent in sections:
        siblings = sorted(k.rsplit(".", 1)[-1] for k in leaves | sections if k.rpartition(".")[0] == parent)
        near = difflib.get_close_matches(last, siblings, n=1, cutoff=0.5)
        close = [f"{parent}.{near[0]}"] if near else []
    hint = f"; did you mean {close[0]}?" if close else ""
    where = parent if parent in sections else "the root"
    valid = sorted(k.rsplit(".", 1)[-1] for k in leaves | sections | maps if k.rpartition(".")[0] == parent)
    return f"{key}: not a key of the config{hint} (keys under {where}: {', '.join(valid)})"


# Hydra's own settings, with what grpolab reads instead: it composes with Hydra's compose API, which
# never applies a ``hydra.*`` value, so accepting one would be accepting it to ignore it.
HYDRA_INSTEAD = {
    "hydra.run": "paths.output_root=DIR (a run goes to DIR/runs/<time>) or grpolab train --run-dir DIR",
    "hydra.sweep": "paths.output_root=DIR and sweep.id=ID (cells go to DIR/sweeps/ID/runs/<cell>)",
    "hydra.launcher": "launcher=local|slurm and launcher.* (grpolab sweep submits through submitit itself)",
    "hydra.sweeper": "key=a,b on grpolab sweep for a grid, tune.space on grpolab tune for a search",
    "hydra.job.chdir": "nothing: grpolab never changes directory (relative paths are from the current one)",
    "hydra.verbose": "nothing: grpolab does not log through Hydra",
    "hydra.job_logging": "nothing: grpolab does not log through Hydra",
    "hydra.hydra_logging": "nothing: grpolab does not log through Hydra",
}


def hydra_refusal(key: str) -> str:
    """The one-line refusal of a ``hydra.*`` override, naming what to use instead."""
    instead = next((v for k, v in HYDRA_INSTEAD.items() if key == k or key.startswith(k + ".")),
                   "the grpolab option of the same purpose (grpolab --help; grpolab config --info)")
    return f"{key}: a Hydra setting; grpolab composes with Hydra's compose API, which never applies hydra.* " \
           f"values, so it is refused rather than ignored; use {instead}"


def check_keys(overrides: Sequence[str], is_group) -> list[str]:
    """One refusal per override whose key is neither a config group nor a key of the schema, in any
    form (``key=``, ``+key=``, ``++key=``, ``~key``). ``is_group(key)`` says whether ``key`` names a
    config group (``algorithm``, ``algorithm/features``, ``variant``)."""
    errors = []
    for o in parse_overrides(overrides):
        key = o.key_or_group
        if key == "hydra" or key.startswith("hydra."):
            errors.append(hydra_refusal(key))
            continue
        if is_group(key):
            continue
        problem = unknown_key(key)
        if problem:
            errors.append(problem)
    return errors


def _why_not(pattern: str, cfg: Any) -> str:
    """Why keys of ``pattern`` do not count for ``cfg`` (for the refusal's text)."""
    for f in registry.FEATURES.values():
        if pattern == f"{f.key}.*":
            return f"{f.key} is off ({f.key}.enabled=false)"
    if pattern.startswith("algorithm.") and pattern.endswith(".*"):
        return f"algorithm.loss={cfg.algorithm.loss}"
    if pattern.startswith("task."):
        return f"task.name={getattr(cfg.task.name, 'value', cfg.task.name)}"
    if pattern == "model.*":
        return f"model.path={cfg.model.path} replaces the tiny model"
    if pattern.startswith("engine."):
        return f"engine.backend={getattr(cfg.engine.backend, 'value', cfg.engine.backend)}"
    if pattern == "algorithm.loss_agg_max_len":
        return f"algorithm.loss_agg={getattr(cfg.algorithm.loss_agg, 'value', cfg.algorithm.loss_agg)}"
    if pattern == "batching.seqlen_partitions":
        return f"batching.mode={cfg.batching.mode}"
    if pattern == "diagnostics.prob_bins":
        return "diagnostics.every=0"
    if pattern == "sft.*":
        return "the SFT warm start is off (sft.enabled=false or sft.steps=0)"
    return "it is not in use"


def check_effect(cfg: Any, overrides: Sequence[str], is_group) -> list[str]:
    """One refusal per value override whose key cannot change this config's run: it is classified
    as counting only when something is on, and that something is off. Switches (``*.enabled``) and
    keys that never count (seed, launcher, paths, …) are the user's to set, and so is a key that is its
    own switch (``trainer.identity.SELF_SWITCHES``: ``rollout.async_steps=0`` is a sweep's control cell)."""
    errors = []
    parsed = list(zip(overrides, parse_overrides(overrides)))
    last = {o.key_or_group: i for i, (_, o) in enumerate(parsed)}
    for i, (line, o) in enumerate(parsed):
        key = o.key_or_group
        if last[key] != i:
            continue  # a later override of the key replaces this one (Hydra applies them in order)
        if o.is_delete() or key == "hydra" or key.startswith("hydra.") or is_group(key) or key.endswith(".enabled") \
                or key in SELF_SWITCHES:
            continue
        try:
            pattern, counts = classify(key)
        except KeyError:
            continue  # a section or a free map's entry: checked by key, not by effect
        if counts is not None and not counts(cfg):
            errors.append(f"{line.lstrip('+')}: has no effect here, {_why_not(pattern, cfg)}")
    return errors
