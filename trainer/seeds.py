"""Deterministic seeds: every random stream of a run is a function of (run seed, step, purpose)."""

from __future__ import annotations


def mix(*xs: int) -> int:
    """A deterministic 63-bit seed from integers (independent streams per purpose and step)."""
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (x & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def sampling_seed(seed: int, step: int) -> int:
    """The seed the rollout of ``step`` samples with, wherever it is sampled (inline or a worker)."""
    return mix(seed, step, 1)
