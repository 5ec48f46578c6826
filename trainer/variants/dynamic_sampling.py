"""Dynamic sampling (DAPO, arXiv 2503.14476): drop the groups whose responses all got the same
reward before the update; they carry no group-relative signal (docs/algorithms.md §1.10).
Groups are dropped, not refilled: a step whose groups are all uniform makes no update."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.batch_stats import mixed_rows
from trainer.knobs import knob
from trainer.registry import BatchFilter, Feature, register_feature


@dataclass
class DynamicSamplingConfig:
    enabled: bool = knob(False, "Drop zero-variance groups (all correct / all wrong) before the update (DAPO).")


def _keep(rewards, group_ids, section):
    keep = torch.nonzero(mixed_rows(rewards, group_ids)).flatten()
    return keep, {"dynamic_sampling_kept_frac": keep.numel() / max(rewards.numel(), 1)}


register_feature(
    Feature(
        "dynamic_sampling",
        DynamicSamplingConfig,
        BatchFilter(_keep),
        "Dynamic sampling: drop groups without reward variance (DAPO).",
        short="ds",
    )
)
