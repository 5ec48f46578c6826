"""Mini-batch layouts (docs/algorithms.md §5).

Expected values are independent of the implementation: coverage and group/sign integrity are
checked on the output, verl's balance against brute force and a provable bound.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.batching import MINIBATCHERS, balanced_partitions, minibatch_indices

MODES = ["shuffled", "seqlen_balanced", "query_preserved", "sign_segregated"]
FULL_EXCEPT_LAST = ["shuffled", "seqlen_balanced", "query_preserved"]
SETTINGS = settings(max_examples=60, deadline=None)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spread(lengths, parts) -> int:
    sums = [sum(lengths[i] for i in p) for p in parts]
    return max(sums) - min(sums)


@st.composite
def batches(draw):
    """A rollout batch as the trainer sees it: contiguous groups of G, some dropped (dynamic
    sampling), zero-advantage groups, random lengths; mini_batch_size a multiple of G."""
    g = draw(st.integers(1, 6))
    n_groups = draw(st.integers(1, 12))
    kept = draw(st.lists(st.integers(0, n_groups - 1), min_size=1, max_size=n_groups, unique=True))
    kept.sort()
    group_ids = torch.tensor(kept).repeat_interleave(g)
    adv = []
    for _ in kept:
        if draw(st.booleans()):
            adv += [0.0] * g  # all correct / all wrong
        else:
            adv += draw(st.lists(st.sampled_from([-1.5, -0.5, 0.0, 0.5, 1.5]), min_size=g, max_size=g))
    lengths = torch.tensor(draw(st.lists(st.integers(1, 60), min_size=len(adv), max_size=len(adv))))
    mbs = g * draw(st.integers(1, 5))
    partitions = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    return group_ids, torch.tensor(adv), lengths, mbs, partitions, seed


def run(mode, group_ids, adv, lengths, mbs, partitions, seed):
    return minibatch_indices(group_ids, adv, mode, mbs, gen(seed), lengths=lengths, partitions=partitions)


# ------------------------------------------------------------------ every mode
def test_registry_has_the_four_modes_and_the_config_refuses_others(tmp_path):
    from sweeps.compose import compose
    from trainer.knobs import ConfigError

    assert set(MINIBATCHERS) == {"shuffled", "seqlen_balanced", "query_preserved", "sign_segregated"}
    with pytest.raises(ConfigError, match="batching.mode='by_length': must be one of shuffled, seqlen_balanced"):
        compose(["batching.mode=by_length"])


@SETTINGS
@given(batches())
def test_every_mode_covers_each_response_exactly_once(batch):
    group_ids, adv, lengths, mbs, partitions, seed = batch
    for mode in MODES:
        mbs_list = run(mode, group_ids, adv, lengths, mbs, partitions, seed)
        assert sorted(torch.cat(mbs_list).tolist()) == list(range(group_ids.numel())), mode
        assert all(0 < m.numel() <= mbs for m in mbs_list), mode
        assert all(m.dtype == torch.long for m in mbs_list), mode


@SETTINGS
@given(batches())
def test_batch_not_a_multiple_gives_full_mini_batches_then_a_smaller_last(batch):
    group_ids, adv, lengths, mbs, partitions, seed = batch
    n = group_ids.numel()
    for mode in FULL_EXCEPT_LAST:
        sizes = [m.numel() for m in run(mode, group_ids, adv, lengths, mbs, partitions, seed)]
        assert len(sizes) == math.ceil(n / mbs), mode
        assert sizes[:-1] == [mbs] * (len(sizes) - 1), mode


@pytest.mark.parametrize("mode", MODES)
def test_same_generator_seed_gives_the_same_mini_batches(mode):
    group_ids = torch.arange(8).repeat_interleave(4)
    adv = torch.randn(32, generator=gen(1))
    lengths = torch.randint(1, 100, (32,), generator=gen(2))
    a = minibatch_indices(group_ids, adv, mode, 8, gen(7), lengths=lengths, partitions=4)
    b = minibatch_indices(group_ids, adv, mode, 8, gen(7), lengths=lengths, partitions=4)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_random_modes_depend_on_the_seed():
    group_ids = torch.arange(8).repeat_interleave(4)
    adv = torch.tensor([1.0, -1.0] * 16)
    for mode in ("shuffled", "query_preserved", "sign_segregated"):
        layouts = {
            tuple(tuple(x.tolist()) for x in minibatch_indices(group_ids, adv, mode, 8, gen(s))) for s in range(5)
        }
        assert len(layouts) > 1, mode


def test_unknown_mode_names_the_key_and_the_registered_modes():
    with pytest.raises(ValueError, match=r"batching.mode='random'.*query_preserved"):
        minibatch_indices(torch.zeros(4, dtype=torch.long), torch.zeros(4), "random", 2, gen())


def test_mode_may_be_the_config_enum():
    group_ids = torch.arange(4).repeat_interleave(2)
    a = minibatch_indices(group_ids, torch.zeros(8), "query_preserved", 4, gen(3))
    b = minibatch_indices(group_ids, torch.zeros(8), "query_preserved", 4, gen(3))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_has_no_mini_batches(mode):
    empty = torch.zeros(0, dtype=torch.long)
    assert minibatch_indices(empty, torch.zeros(0), mode, 4, gen(), lengths=empty) == []


# ------------------------------------------------------------------ query_preserved
@SETTINGS
@given(batches())
def test_query_preserved_keeps_every_group_in_one_mini_batch(batch):
    group_ids, adv, lengths, mbs, partitions, seed = batch
    for mb in run("query_preserved", group_ids, adv, lengths, mbs, partitions, seed):
        for g in group_ids[mb].unique():
            assert (group_ids[mb] == g).sum() == (group_ids == g).sum()


def test_query_preserved_packs_unequal_groups_whole():
    group_ids = torch.tensor([0] * 3 + [1] * 5 + [2] * 2 + [3] * 4)
    for seed in range(10):
        mbs = minibatch_indices(group_ids, torch.zeros(14), "query_preserved", 6, gen(seed))
        assert sorted(torch.cat(mbs).tolist()) == list(range(14))
        for mb in mbs:
            assert mb.numel() <= 6
            for g in group_ids[mb].unique():
                assert (group_ids[mb] == g).sum() == (group_ids == g).sum()


def test_query_preserved_shuffles_whole_groups_then_cuts_as_before():
    # the layout of earlier runs: a random permutation of the groups, rows in order, chunks of m
    group_ids = torch.arange(6).repeat_interleave(4)
    g = gen(11)
    perm = torch.randperm(6, generator=g)
    expected = torch.cat([torch.nonzero(group_ids == p).flatten() for p in perm]).split(8)
    got = minibatch_indices(group_ids, torch.zeros(24), "query_preserved", 8, gen(11))
    assert [x.tolist() for x in got] == [x.tolist() for x in expected]


def test_query_preserved_chunks_are_whole_groups_when_groups_were_dropped():
    group_ids = torch.tensor([0, 2, 3, 5, 7]).repeat_interleave(4)  # 20 responses, m = 8
    sizes = [m.numel() for m in minibatch_indices(group_ids, torch.zeros(20), "query_preserved", 8, gen())]
    assert sizes == [8, 8, 4]


@pytest.mark.parametrize("mbs", [6, 3])
def test_query_preserved_rejects_a_mini_batch_that_is_not_a_multiple_of_the_group(mbs):
    group_ids = torch.arange(4).repeat_interleave(4)
    with pytest.raises(ValueError, match=rf"batching.mini_batch_size={mbs}.*multiple of the group size"):
        minibatch_indices(group_ids, torch.zeros(16), "query_preserved", mbs, gen())


# ------------------------------------------------------------------ sign_segregated
@SETTINGS
@given(batches())
def test_sign_segregated_never_mixes_signs(batch):
    group_ids, adv, lengths, mbs, partitions, seed = batch
    for mb in run("sign_segregated", group_ids, adv, lengths, mbs, partitions, seed):
        a = adv[mb]
        assert not ((a > 0).any() and (a < 0).any())


@SETTINGS
@given(batches())
def test_sign_segregated_uses_the_fewest_steps_that_keep_signs_apart(batch):
    group_ids, adv, lengths, mbs, partitions, seed = batch
    n, n_pos, n_neg = adv.numel(), int((adv > 0).sum()), int((adv < 0).sum())
    expected = max(math.ceil(n / mbs), math.ceil(n_pos / mbs) + math.ceil(n_neg / mbs))
    assert len(run("sign_segregated", group_ids, adv, lengths, mbs, partitions, seed)) == expected


def test_sign_segregated_spreads_zero_advantage_rollouts_over_signed_steps():
    # 10 positive, 10 negative, 236 zero, m = 64: 4 steps, each with some signed rollouts
    adv = torch.tensor([1.0] * 10 + [-1.0] * 10 + [0.0] * 236)
    group_ids = torch.arange(32).repeat_interleave(8)
    mbs = minibatch_indices(group_ids, adv, "sign_segregated", 64, gen(5))
    assert len(mbs) == 4 and all(m.numel() == 64 for m in mbs)
    assert sorted(int((adv[m] > 0).sum()) for m in mbs) == [0, 0, 5, 5]
    assert sorted(int((adv[m] < 0).sum()) for m in mbs) == [0, 0, 5, 5]


def test_sign_segregated_zero_only_steps_only_when_there_are_too_few_signed_rollouts():
    adv = torch.tensor([1.0, -1.0] + [0.0] * 198)  # 200 responses, m = 64 → 4 steps, 2 signed
    mbs = minibatch_indices(torch.arange(200), adv, "sign_segregated", 64, gen())
    signed = [bool((adv[m] != 0).any()) for m in mbs]
    assert len(mbs) == 4 and sorted(signed) == [False, False, True, True]
    assert all(m.numel() <= 64 for m in mbs)


def test_sign_segregated_adds_a_step_when_signs_cannot_share_ceil_b_over_m():
    adv = torch.tensor([1.0] * 5 + [-1.0] * 5)  # B = 10, m = 8: 2 steps anyway, but 5/5 needs 2
    assert len(minibatch_indices(torch.arange(10), adv, "sign_segregated", 8, gen())) == 2
    adv = torch.tensor([1.0] * 9 + [-1.0] * 7)  # B = 16, m = 8: 2 steps would mix; needs 2 + 1
    assert len(minibatch_indices(torch.arange(16), adv, "sign_segregated", 8, gen())) == 3


def test_sign_segregated_order_of_steps_is_shuffled():
    adv = torch.tensor([1.0] * 8 + [-1.0] * 8)
    first = {
        float(adv[minibatch_indices(torch.arange(16), adv, "sign_segregated", 8, gen(s))[0][0]]) for s in range(20)
    }
    assert first == {1.0, -1.0}


# ------------------------------------------------------------------ seqlen_balanced: the partition
@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=4, max_size=4))
def test_balanced_partitions_is_optimal_for_four_items_on_two_ranks(lengths):
    best = min(spread(lengths, [p, [i for i in range(4) if i not in p]]) for p in itertools.combinations(range(4), 2))
    assert spread(lengths, balanced_partitions(lengths, 2)) == best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=6, max_size=6), st.sampled_from([2, 3]))
def test_balanced_partitions_is_within_the_largest_item_of_the_brute_force_optimum(lengths, k):
    size = 6 // k

    def equal_splits(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for others in itertools.combinations(rest, size - 1):
            left = [i for i in rest if i not in others]
            for tail in equal_splits(left):
                yield [[first, *others], *tail]

    best = min(spread(lengths, p) for p in equal_splits(list(range(6))))
    got = spread(lengths, balanced_partitions(lengths, k))
    assert best <= got <= best + max(lengths)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.data())
def test_balanced_partitions_spread_is_bounded_by_the_widest_sorted_run(k, runs, data):
    # a merge never widens the wider of its two inputs, so spread ≤ max over runs of k sorted items
    lengths = data.draw(st.lists(st.integers(0, 500), min_size=k * runs, max_size=k * runs))
    parts = balanced_partitions(lengths, k)
    s = sorted(lengths)
    bound = max(s[r * k + k - 1] - s[r * k] for r in range(runs))
    assert spread(lengths, parts) <= bound
    assert all(len(p) == runs for p in parts)
    assert sorted(i for p in parts for i in p) == list(range(k * runs))
    assert all(p == sorted(p) for p in parts)


@pytest.mark.parametrize(
    "name,lengths",
    [
        ("ascending", list(range(1, 65))),
        ("descending", [1000 - 10 * i for i in range(64)]),
        ("long groups first", [900] * 16 + [100] * 48),
        ("one long group per rank run", ([800] * 8 + [50] * 24) * 2),
        ("alternating", [1, 1000] * 32),
    ],
)
def test_balanced_partitions_beats_verls_unbalanced_contiguous_split(name, lengths):
    k = 8
    per = len(lengths) // k
    contiguous = [list(range(r * per, (r + 1) * per)) for r in range(k)]
    assert spread(lengths, balanced_partitions(lengths, k)) <= spread(lengths, contiguous)
    assert spread(lengths, balanced_partitions(lengths, k)) <= max(lengths) - min(lengths)


def test_balanced_partitions_rejects_unequal_split():
    with pytest.raises(ValueError, match="7 items cannot be split into 2 equal partitions"):
        balanced_partitions([1] * 7, 2)


# ------------------------------------------------------------------ seqlen_balanced: the layout
def test_seqlen_balanced_step_j_is_every_ranks_jth_chunk():
    lengths = torch.randint(10, 500, (64,), generator=gen(4))
    parts = balanced_partitions(lengths.tolist(), 4)
    mbs = minibatch_indices(
        torch.arange(8).repeat_interleave(8),
        torch.zeros(64),
        "seqlen_balanced",
        16,
        gen(),
        lengths=lengths,
        partitions=4,
    )
    assert len(mbs) == 4
    for j, mb in enumerate(mbs):
        assert mb.tolist() == [i for p in parts for i in p[4 * j : 4 * j + 4]]


def test_seqlen_balanced_needs_lengths():
    with pytest.raises(ValueError, match="seqlen_balanced needs per-response lengths"):
        minibatch_indices(torch.arange(8), torch.zeros(8), "seqlen_balanced", 4, gen())


def test_seqlen_balanced_ignores_the_generator():
    lengths = torch.randint(1, 300, (48,), generator=gen(9))
    a = minibatch_indices(torch.arange(48), torch.zeros(48), "seqlen_balanced", 16, gen(1), lengths=lengths)
    b = minibatch_indices(torch.arange(48), torch.zeros(48), "seqlen_balanced", 16, gen(2), lengths=lengths)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_seqlen_balanced_balances_each_emulated_rank_within_the_longest_response():
    lengths = torch.randint(1, 2000, (256,), generator=gen(3))
    parts = balanced_partitions(lengths.tolist(), 8)
    sums = [int(lengths[p].sum()) for p in parts]
    assert max(sums) - min(sums) <= int(lengths.max())


def test_seqlen_balanced_falls_back_to_gcd_ranks_when_ranks_do_not_divide_the_mini_batch():
    # m = 12 with 8 ranks: 4 ranks of 3 responses per step
    lengths = torch.randint(1, 300, (48,), generator=gen(6))
    mbs = minibatch_indices(
        torch.arange(48), torch.zeros(48), "seqlen_balanced", 12, gen(), lengths=lengths, partitions=8
    )
    parts = balanced_partitions(lengths.tolist(), 4)
    assert [m.tolist() for m in mbs] == [[i for p in parts for i in p[3 * j : 3 * j + 3]] for j in range(4)]


def test_seqlen_balanced_scatters_groups_across_optimizer_steps():
    # the paper's baseline: a prompt's rollouts end up in different optimizer steps
    group_ids = torch.arange(32).repeat_interleave(8)
    fractions = []
    for seed in range(5):
        lengths = torch.randint(50, 2000, (256,), generator=gen(seed))
        mbs = minibatch_indices(
            group_ids, torch.zeros(256), "seqlen_balanced", 64, gen(), lengths=lengths, partitions=8
        )
        step_of = torch.empty(256, dtype=torch.long)
        for j, mb in enumerate(mbs):
            step_of[mb] = j
        fractions.append(sum(step_of[group_ids == g].unique().numel() > 1 for g in range(32)) / 32)
    assert sum(fractions) / len(fractions) >= 0.3
