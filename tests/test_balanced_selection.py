"""Choosing a reward-balanced update batch (cancellation paper, arXiv 2605.08666, Sec. 4;
docs/algorithms.md §5.6): ``select_balanced`` against brute force over every subset of units."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.balanced_selection import required_per_sign, select_balanced

RHOS = [0.1, 0.2, 0.25, 0.3, 1 / 3, 0.4, 0.5]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def balanced(pos, neg, idx, rho) -> bool:
    n = idx.numel()
    return min(int(pos[idx].sum()), int(neg[idx].sum())) >= rho * n - 1e-9


def brute_force(pos, neg, unit_ids, rho, target):
    """The lexicographically greatest feasible selection, units ranked by first appearance
    (largest size first when target is None); None if there is none."""
    units = [torch.nonzero(unit_ids == u).flatten().tolist() for u in dict.fromkeys(unit_ids.tolist())]
    best = None
    for take in itertools.product([1, 0], repeat=len(units)):  # lexicographically descending
        sel = sorted(i for t, members in zip(take, units) if t for i in members)
        if not sel or (target is not None and len(sel) != target):
            continue
        if balanced(pos, neg, torch.tensor(sel), rho) and (best is None or len(sel) > len(best)):
            if target is not None:
                return sel
            best = sel
    return best


@st.composite
def instances(draw, max_units=7, sizes=(1, 2, 3)):
    n_units = draw(st.integers(1, max_units))
    unit_sizes = [draw(st.sampled_from(sizes)) for _ in range(n_units)]
    order = draw(st.permutations(range(sum(unit_sizes))))  # units need not be contiguous
    unit_ids = torch.empty(sum(unit_sizes), dtype=torch.long)
    unit_ids[list(order)] = torch.tensor([u * 7 + 3 for u, s in enumerate(unit_sizes) for _ in range(s)])
    labels = torch.tensor(
        draw(st.lists(st.sampled_from([0, 1, 2]), min_size=unit_ids.numel(), max_size=unit_ids.numel()))
    )
    rho = draw(st.sampled_from(RHOS))
    target = draw(st.one_of(st.none(), st.integers(1, unit_ids.numel() + 1)))
    return labels == 1, labels == 2, unit_ids, rho, target


# ------------------------------------------------------------------ select_balanced
@settings(max_examples=150, deadline=None)
@given(instances())
def test_selection_is_the_fifo_first_feasible_one_found_by_brute_force(inst):
    pos, neg, unit_ids, rho, target = inst
    got = select_balanced(pos, neg, unit_ids, rho, target, gen())
    assert (None if got is None else got.tolist()) == brute_force(pos, neg, unit_ids, rho, target)


@settings(max_examples=100, deadline=None)
@given(instances(max_units=10, sizes=(1,)))
def test_rollout_units_match_brute_force(inst):
    pos, neg, unit_ids, rho, target = inst
    got = select_balanced(pos, neg, unit_ids, rho, target, gen())
    assert (None if got is None else got.tolist()) == brute_force(pos, neg, unit_ids, rho, target)


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 40), st.sampled_from([1, 4, 8]), st.sampled_from(RHOS), st.booleans(), st.integers(0, 99))
def test_every_returned_selection_is_balanced_whole_units_of_the_target_size(n_units, g, rho, fixed, seed):
    torch.manual_seed(seed)
    unit_ids = torch.arange(n_units).repeat_interleave(g)
    labels = torch.randint(0, 3, (unit_ids.numel(),))
    pos, neg = labels == 1, labels == 2
    target = g * max(1, n_units // 2) if fixed else None
    steps = torch.randint(0, 3, (n_units,)).repeat_interleave(g)
    got = select_balanced(pos, neg, unit_ids, rho, target, gen(seed), steps=steps)
    if got is None:
        return
    assert balanced(pos, neg, got, rho)
    assert got.tolist() == sorted(set(got.tolist()))
    for u in unit_ids[got].unique():
        assert (unit_ids[got] == u).sum() == g
    if fixed:
        assert got.numel() == target


def test_hand_example_oldest_groups_first():
    # groups of 4 in buffer order: A all correct, B 2/2, C 1/3, D all wrong; ρ = 0.25, |B| = 8
    pos = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]).bool()
    neg = ~pos
    unit_ids = torch.arange(4).repeat_interleave(4)
    # A+B: N+ = 6, N− = 2 → 2/8 = 0.25 ✓ (the oldest pair)
    assert select_balanced(pos, neg, unit_ids, 0.25, 8).tolist() == list(range(8))
    # ρ = 0.3 needs N± ≥ 3: A+B ✗, A+C (5/3) ✓
    assert select_balanced(pos, neg, unit_ids, 0.3, 8).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    # ρ = 0.5: only B+C... (3/5) ✗, B+D (2/6) ✗, A+D (4/4) ✓
    assert select_balanced(pos, neg, unit_ids, 0.5, 8).tolist() == [0, 1, 2, 3, 12, 13, 14, 15]
    # variable: all 16 has 7/9 → 7/16 ≥ 0.4 ✓; ρ = 0.5 → the largest is 12 (A+C+D: 5/7 ✗, A+B+D: 6/6 ✓)
    assert select_balanced(pos, neg, unit_ids, 0.4, None).numel() == 16
    assert select_balanced(pos, neg, unit_ids, 0.5, None).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15]


def test_impossible_selections_return_none():
    unit_ids = torch.arange(4).repeat_interleave(2)
    all_pos = torch.ones(8, dtype=torch.bool)
    assert select_balanced(all_pos, ~all_pos, unit_ids, 0.1, 4) is None
    assert select_balanced(all_pos, ~all_pos, unit_ids, 0.1, None) is None
    mixed = torch.tensor([1, 0] * 4).bool()
    assert select_balanced(mixed, ~mixed, unit_ids, 0.5, 3) is None  # not a multiple of the group
    assert select_balanced(mixed, ~mixed, unit_ids, 0.5, 10) is None  # more than the buffer holds
    assert select_balanced(mixed[:0], mixed[:0], unit_ids[:0], 0.5, None) is None


def test_excluded_rollouts_count_in_the_batch_size_but_not_in_either_sign():
    # one 1/1 group and one excluded zero-advantage group of 2: 1/4 < 0.3, 1/2 ≥ 0.3
    pos = torch.tensor([True, False, False, False])
    neg = torch.tensor([False, True, False, False])
    unit_ids = torch.tensor([0, 0, 1, 1])
    assert select_balanced(pos, neg, unit_ids, 0.3, 4) is None
    assert select_balanced(pos, neg, unit_ids, 0.3, None).tolist() == [0, 1]
    assert select_balanced(pos, neg, unit_ids, 0.25, 4).tolist() == [0, 1, 2, 3]


def test_older_steps_are_preferred_over_buffer_position():
    # two interchangeable 2/2 groups; the one sampled earlier wins although it sits later
    pos = torch.tensor([1, 1, 0, 0] * 2).bool()
    unit_ids = torch.arange(2).repeat_interleave(4)
    steps = torch.tensor([5] * 4 + [4] * 4)
    assert select_balanced(pos, ~pos, unit_ids, 0.5, 4, gen(), steps=steps).tolist() == [4, 5, 6, 7]


def test_ties_within_a_step_are_broken_by_the_generator_deterministically():
    pos = torch.tensor([1, 0] * 8).bool()
    unit_ids = torch.arange(8).repeat_interleave(2)
    steps = torch.zeros(16, dtype=torch.long)
    picks = [tuple(select_balanced(pos, ~pos, unit_ids, 0.5, 4, gen(s), steps=steps).tolist()) for s in range(10)]
    assert len(set(picks)) > 1
    assert picks[3] == tuple(select_balanced(pos, ~pos, unit_ids, 0.5, 4, gen(3), steps=steps).tolist())


def test_min_frac_is_checked_with_a_float_tolerance():
    assert required_per_sign(0.3, 10) == 3  # 0.3 · 10 = 3.0000000000000004 in floats
    assert required_per_sign(1 / 3, 9) == 3
    assert required_per_sign(0.25, 10) == 3


@pytest.mark.parametrize("rho", [0.0, 0.6, -0.1])
def test_min_frac_out_of_range_names_the_key(rho):
    with pytest.raises(ValueError, match=rf"min_frac={rho} \(batching.reward_balanced.min_frac\) must be in"):
        select_balanced(torch.ones(2).bool(), torch.zeros(2).bool(), torch.arange(2), rho, 2)


def test_a_rollout_cannot_be_both_signs():
    with pytest.raises(ValueError, match="both positive and negative"):
        select_balanced(torch.ones(2).bool(), torch.ones(2).bool(), torch.arange(2), 0.5, 2)
