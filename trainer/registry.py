"""The variant registries: policy losses, and the features a config switches on.

A variant is a registered pure function plus a small config section that declares what it needs
(``Needs``). Losses are chosen by ``algorithm.loss``; a feature is on when its section's
``enabled`` is true (the one on/off convention) and plays one role in the step:

=================  =========================================================================
role               what the trainer does with it
=================  =========================================================================
``BatchFilter``    drops responses from a freshly scored batch (dynamic sampling)
``TokenTransform`` rewrites the per-token advantages, in ``algorithm.transform_order``
                   (or registered order); may look at each chunk of the π_old forward (NTHR)
``UpdateBuffer``   holds scored batches back and releases update batches (reward balancing)
``StagePlan``      splits one update into passes over token subsets (Lopti)
``Surrogate``      replaces the per-token clipped surrogate of the loss (GRPO-fix)
=================  =========================================================================

The trainer, the update plan and the loss only ask this module which components the config
selects and what they need; none of them tests which variant is on. Variant modules live in
``trainer/variants/`` (importing that package registers every one of them); each may add config
checks (``check``) and warnings (``warn``), which ``trainer.validation`` runs when it is on.
This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union


@dataclass(frozen=True)
class Needs:
    """What a variant requires of the update around it."""

    whole_groups: bool = False  # every prompt group whole in each mini- and micro-batch, one rank
    sequence_ratio: bool = False  # the importance ratio is taken per response, not per token
    old_forward: bool = False  # hidden states and logits of the π_old forward (not the sampler's log-probs)
    inert_on_policy: bool = False  # changes nothing while every ratio is 1 (one mini-batch, μ = 1)
    off_policy: bool = False  # makes ratios differ from 1 even with one mini-batch and μ = 1
    behaviour_logp: bool = False  # the sampler's own log-probs of what it sampled (TokenContext.behaviour_logp)

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(*(a or b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


# ---------------------------------------------------------------- what roles receive
@dataclass
class OldForwardChunk:
    """One chunk of whole prompt groups of the π_old forward, for transforms that read its internals."""

    stats: Any  # trainer.logprobs.TokenStats of the chunk: logp, hidden (post-norm), logits (tempered)
    tokens: Any  # [b,T] completion ids
    mask: Any  # [b,T] loss mask
    correct: Any  # [b] bool
    group_ids: Any  # [b] prompt group of each response (contiguous)


@dataclass
class TokenContext:
    """What a token transform may read besides the advantages it rewrites (one rollout batch)."""

    old_logp: Any  # [B,T] π_old log-probs of the sampled tokens (tempered)
    mask: Any  # [B,T] loss mask
    correct: Any  # [B] bool: task reward ≥ task.correct_threshold
    group_ids: Any  # [B]
    seq_advantages: Any  # [B] group-relative advantages before any token transform
    observed: Any = None  # what this transform's ``observe`` collected in the π_old forward
    behaviour_logp: Any = None  # [B,T] the sampler's log-probs (behaviour policy μ), when the backend gave them


# ---------------------------------------------------------------- roles
@dataclass(frozen=True)
class BatchFilter:
    keep: Callable  # (rewards [B], group_ids [B], section) -> (kept row indices, stats)


@dataclass(frozen=True)
class TokenTransform:
    apply: Callable  # (advantages [B,T], TokenContext, section) -> (advantages [B,T], stats)
    observe: Optional[Callable] = None  # (OldForwardChunk, section) -> part, during the π_old forward
    combine: Optional[Callable] = None  # (parts) -> what ``apply`` finds in ``TokenContext.observed``
    order: int = 100  # position among token transforms when algorithm.transform_order is empty


@dataclass(frozen=True)
class UpdateBuffer:
    build: Callable  # (cfg) -> object with add(step, scored), pop(step) -> (scored | None, stats),
    #                  state_dict(), load_state_dict(state)


@dataclass(frozen=True)
class StagePlan:
    stages: Callable  # (old_logp [B,T], loss_mask [B,T], section) -> list[trainer.update_plan.Stage]


@dataclass(frozen=True)
class Surrogate:
    fn: Callable  # (log_ratio [B,T], advantages [B,T], algorithm config) -> trainer.token_loss.TokenLoss


Role = Union[BatchFilter, TokenTransform, UpdateBuffer, StagePlan, Surrogate]


@dataclass(frozen=True)
class Feature:
    """A switchable variant: its section ``<parent>.<name>`` (a dataclass with ``enabled``) and role."""

    name: str
    config: type
    role: Role
    help: str
    parent: str = "algorithm"
    needs: Needs = Needs()
    check: Optional[Callable[[Any], list]] = None  # (cfg) -> error lines, run when it is on
    warn: Optional[Callable[[Any], list]] = None  # (cfg) -> warning lines, run when it is on
    short: Optional[str] = None  # its part of a run's label (``grpo+ar``); default: its name

    @property
    def key(self) -> str:
        return f"{self.parent}.{self.name}"

    @property
    def label(self) -> str:
        return self.short or self.name


@dataclass(frozen=True)
class Loss:
    """A policy loss: ``fn(logp, old_logp, adv[B,T], mask, algorithm cfg, *, group_ids, surrogate)``
    -> ``TokenLoss``. ``config``, when set, is its knobs' section ``algorithm.<name>``."""

    name: str
    fn: Callable
    help: str
    needs: Needs = Needs()
    config: Optional[type] = None
    check: Optional[Callable[[Any], list]] = None
    warn: Optional[Callable[[Any], list]] = None
    label: Any = None  # its part of a run's label: a string, or a function of the config; default: its name

    @property
    def key(self) -> str:
        return f"algorithm.{self.name}"

    def label_of(self, cfg: Any) -> str:
        if callable(self.label):
            return self.label(cfg)
        return self.label or self.name


LOSSES: dict[str, Loss] = {}
FEATURES: dict[str, Feature] = {}


def register_loss(loss: Loss) -> Loss:
    if loss.name in LOSSES or loss.name in FEATURES:
        raise ValueError(f"variant {loss.name!r} is registered twice")
    LOSSES[loss.name] = loss
    return loss


def register_feature(feature: Feature) -> Feature:
    if feature.name in FEATURES or feature.name in LOSSES:
        raise ValueError(f"variant {feature.name!r} is registered twice")
    if not any(f.name == "enabled" for f in dataclasses.fields(feature.config)):
        raise ValueError(f"feature {feature.key}: its config section needs an `enabled` field")
    FEATURES[feature.name] = feature
    return feature


# ---------------------------------------------------------------- lookups
def sections(parent: str) -> list[tuple[str, type, str]]:
    """(name, dataclass, help) of every registered config section under ``parent``, in registration order."""
    out = [(f.name, f.config, f.help) for f in FEATURES.values() if f.parent == parent]
    if parent == "algorithm":
        out += [(loss.name, loss.config, loss.help) for loss in LOSSES.values() if loss.config is not None]
    return out


def section_of(cfg: Any, feature: Feature) -> Any:
    """The feature's section, from the whole config or from its parent section (an AlgorithmConfig)."""
    return getattr(getattr(cfg, feature.parent, cfg), feature.name)


def is_on(cfg: Any, feature: Feature) -> bool:
    return bool(section_of(cfg, feature).enabled)


def features_on(cfg: Any, role: Optional[type] = None) -> list[Feature]:
    """The enabled features (of one role), in registration order."""
    return [f for f in FEATURES.values() if (role is None or isinstance(f.role, role)) and is_on(cfg, f)]


def loss_of(cfg: Any) -> Loss:
    """The loss ``algorithm.loss`` names (``cfg``: the whole config or its algorithm section)."""
    name = getattr(getattr(cfg, "algorithm", cfg), "loss")
    name = getattr(name, "value", name)
    if name not in LOSSES:
        raise ValueError(f"algorithm.loss={name!r}: registered losses are {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def one(cfg: Any, role: type) -> Optional[Feature]:
    """The one enabled feature of a role that admits one (validation refuses two), or None."""
    on = features_on(cfg, role)
    return on[0] if on else None


def token_transforms(cfg: Any) -> list[Feature]:
    """The enabled token transforms in the order they apply."""
    on = features_on(cfg, TokenTransform)
    order = list(cfg.algorithm.transform_order)
    if order:
        return sorted(on, key=lambda f: order.index(f.name))
    return sorted(on, key=lambda f: f.role.order)


def needs(cfg: Any) -> Needs:
    """What the selected loss and every enabled feature need, together."""
    out = loss_of(cfg).needs
    for f in features_on(cfg):
        out = out | f.needs
    return out
