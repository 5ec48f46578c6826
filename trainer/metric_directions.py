"""Which way each metric of the run record is better: what a table bolds, what a tuner maximises.

The first matching pattern of ``METRIC_DIRECTIONS`` decides; a key no pattern matches has no better
direction. Part of the run record's contract (``trainer.run_record`` re-exports these names).
"""

from __future__ import annotations

import fnmatch
from enum import Enum


class Direction(str, Enum):
    higher = "max"
    lower = "min"
    none = "none"  # no better direction (a count, a setting, a diagnostic): never marked best


# First match wins (fnmatch patterns over summary keys and metrics.jsonl keys). Every key the
# trainer logs matches one (a test runs every variant and checks); unknown keys have no direction.
METRIC_DIRECTIONS: tuple[tuple[str, Direction], ...] = (
    ("final_eval_accuracy", Direction.higher),
    ("best_eval_accuracy", Direction.higher),
    ("final_reward", Direction.higher),
    ("warmstart_eval_accuracy", Direction.none),  # the same warm start in every cell of a sweep
    ("final_response_length", Direction.none),
    ("wall_time_s", Direction.lower),
    ("steps_completed", Direction.none),
    ("attempt", Direction.none),
    ("resumed_from_step", Direction.none),
    ("step", Direction.none),
    ("eval/accuracy", Direction.higher),
    ("eval/pass@*", Direction.higher),
    ("train/reward", Direction.higher),
    ("train/accuracy", Direction.higher),
    ("train/mixed_group_frac", Direction.higher),
    ("train/truncated_frac", Direction.lower),
    ("train/logp_mismatch", Direction.lower),
    ("train/loss", Direction.lower),
    ("train/kl", Direction.lower),
    ("train/reward_timeouts", Direction.lower),  # math-verify calls past task.verifier_timeout_s
    ("train/reward_errors", Direction.lower),
    ("train/*", Direction.none),  # losses' parts, clip fractions, ratios, variant statistics
    ("diag/lld_mean*", Direction.higher),  # correct responses' likelihood rises (NTHR paper Eq. 2)
    ("diag/lld_lazy_frac*", Direction.lower),
    ("diag/flip_against_sign_frac", Direction.lower),
    ("diag/*", Direction.none),
    ("time/*", Direction.none),
    ("perf/*", Direction.none),
    ("*jitter*", Direction.lower),
)


def direction(metric: str) -> Direction:
    """The better direction of a summary or metrics key (``none`` when unknown)."""
    for pattern, better in METRIC_DIRECTIONS:
        if fnmatch.fnmatchcase(metric, pattern):
            return better
    return Direction.none


def is_declared(metric: str) -> bool:
    return any(fnmatch.fnmatchcase(metric, pattern) for pattern, _ in METRIC_DIRECTIONS)
