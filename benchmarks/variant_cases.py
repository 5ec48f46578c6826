"""What ``variant_overhead`` measures: each variant, the baseline it is compared with, and its goal.

Every case is the overrides a user would type (``variant=nthr``, ``batching.mode=query_preserved``,
…), composed with ``sweeps.compose.compose``, plus the batch layout the comparison needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Goal:
    """The variant's ``phase`` ("step" or "update") may cost at most ``max_ratio`` × its baseline's."""

    phase: str
    max_ratio: float

    def text(self) -> str:
        return f"{self.phase} ≤ {self.max_ratio:g}×"


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]
    baseline: Optional[str] = None  # the case it is compared with; None: it is a baseline
    goal: Optional[Goal] = None


def cases(prompts: int, n: int, micro: int, default_minibatches: int) -> list[Case]:
    """The variants and their baselines. Each baseline has the same number of mini-batches
    (= optimizer steps per rollout batch) as the variants compared with it: the default layout
    (``default_minibatches``, 2 at 64 prompts × 8) or 4 mini-batches for the batching modes."""
    batch = prompts * n

    def layout(k: int, diagnostics_every: int = 0) -> tuple[str, ...]:
        mini = batch // k
        return (
            f"rollout.prompts_per_step={prompts}",
            f"batching.mini_batch_size={mini}",
            f"batching.micro_batch_size={math.gcd(mini, micro)}",
            f"diagnostics.every={diagnostics_every}",
        )

    d, q = default_minibatches, 4
    step102, step105, update21 = Goal("step", 1.02), Goal("step", 1.05), Goal("update", 2.1)
    return [
        Case("grpo", ("variant=grpo",) + layout(d)),
        Case("grpo_again", ("variant=grpo",) + layout(d), "grpo"),  # A/A control: the noise floor
        Case("ar", ("variant=ar",) + layout(d), "grpo", step102),
        Case("nthr", ("variant=nthr",) + layout(d), "grpo", step105),
        Case("lopti", ("variant=lopti",) + layout(d), "grpo", update21),
        Case("grpo_fix", ("variant=grpo_fix",) + layout(d), "grpo"),
        Case("reward_balanced", (
            "batching.reward_balanced.enabled=true", "batching.reward_balanced.zero_adv_groups=count",
        ) + layout(d), "grpo"),
        Case("diagnostics", ("variant=grpo",) + layout(d, diagnostics_every=1), "grpo"),
        Case("grpo_mb4", ("variant=grpo",) + layout(q)),
        Case("seqlen_balanced", ("batching.mode=seqlen_balanced",) + layout(q), "grpo_mb4", step102),
        Case("query_preserved", ("batching.mode=query_preserved",) + layout(q), "grpo_mb4", step102),
        Case("sign_segregated", ("batching.mode=sign_segregated",) + layout(q), "grpo_mb4", step102),
        Case("gspo_qb_mb4", ("variant=gspo", "batching=query_preserved") + layout(q)),
        Case("dfpo_min_replace", ("variant=dfpo_min_replace", "batching=query_preserved") + layout(q), "gspo_qb_mb4"),
    ]


def select(all_cases: list[Case], names: set[str]) -> list[Case]:
    """``names`` and their baselines, in the table's order."""
    known = {c.name for c in all_cases}
    unknown = sorted(names - known)
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: choose from {sorted(known)}")
    names = names | {c.baseline for c in all_cases if c.name in names and c.baseline}
    return [c for c in all_cases if c.name in names]
