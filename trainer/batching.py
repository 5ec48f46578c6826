"""How a rollout batch is cut into optimizer mini-batches (docs/algorithms.md §5).

A registry of pure index functions selected by ``batching.mode``; the cancellation paper shows
this choice changes results, so it is a first-class, logged knob rather than an accident.

Every mode returns index tensors that cover each of the B responses exactly once; each holds at
most ``mini_batch_size`` responses. B need not be a multiple of ``mini_batch_size`` (dynamic
sampling drops groups, reward-balanced buffering picks variable sizes): then the last mini-batch
is smaller (``sign_segregated`` instead spreads the slack, see there).

| mode            | groups                               | randomness                      |
|-----------------|--------------------------------------|---------------------------------|
| shuffled        | scattered (sample-level permutation) | generator                       |
| seqlen_balanced | scattered (verl's default)           | none: a function of the lengths |
| query_preserved | whole groups per mini-batch          | generator (group order)         |
| sign_segregated | split by sign (anti-control)         | generator                       |
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Optional, Sequence

import torch

MINIBATCHERS: dict[str, Callable[..., list[torch.Tensor]]] = {}


def register_minibatcher(name: str):
    """Register ``fn(group_ids, advantages, mini_batch_size, generator, *, lengths, partitions)``."""

    def wrap(fn):
        MINIBATCHERS[name] = fn
        return fn

    return wrap


def _chunks(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(order.split(size))


@register_minibatcher("shuffled")
def shuffled(group_ids, advantages, mini_batch_size, generator, *, lengths=None, partitions=8) -> list[torch.Tensor]:
    """Sample-level permutation that ignores groups (TRL's behaviour)."""
    return _chunks(torch.randperm(group_ids.numel(), generator=generator), mini_batch_size)


# ------------------------------------------------------------------ seqlen_balanced (verl default)
def balanced_partitions(lengths: Sequence[int], k: int) -> list[list[int]]:
    """Split items into ``k`` partitions of equal count with near-equal total length.

    Equal-size Karmarkar–Karp (largest differencing), the algorithm behind verl's
    ``get_seqlen_balanced_partitions(..., equal_size=True)``: sort the lengths, cut the sorted list
    into runs of ``k`` items (one item per partition), then repeatedly merge the two partial
    solutions with the largest spread (max − min partition sum), pairing the heaviest partition of
    one with the lightest of the other. A merge never increases the larger of the two spreads, so
    the final spread is at most the largest (max − min) inside one sorted run of ``k`` lengths.
    Each partition's indices are returned in ascending order (as verl does). Needs len % k == 0.
    """
    n = len(lengths)
    if k < 1 or n % k:
        raise ValueError(f"balanced_partitions: {n} items cannot be split into {k} equal partitions")
    if n == 0:
        return [[] for _ in range(k)]
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    heap: list[tuple[int, int, list[tuple[int, list[int]]]]] = []
    for c in range(n // k):
        sets = sorted(((lengths[i], [i]) for i in order[c * k:(c + 1) * k]), key=lambda s: -s[0])
        heap.append((-(sets[0][0] - sets[-1][0]), c, sets))
    heapq.heapify(heap)
    tick = len(heap)
    while len(heap) > 1:
        _, _, a = heapq.heappop(heap)
        _, _, b = heapq.heappop(heap)
        merged = sorted(((a[i][0] + b[k - 1 - i][0], a[i][1] + b[k - 1 - i][1]) for i in range(k)), key=lambda s: -s[0])
        heapq.heappush(heap, (-(merged[0][0] - merged[-1][0]), tick, merged))
        tick += 1
    return [sorted(members) for _, members in heap[0][2]]


@register_minibatcher("seqlen_balanced")
def seqlen_balanced(
    group_ids, advantages, mini_batch_size, generator, *, lengths=None, partitions=8
) -> list[torch.Tensor]:
    """verl's default layout, emulated on one process (docs/algorithms.md §5.2).

    ``RayPPOTrainer._balance_batch`` reorders the batch with an equal-size balanced partition of
    sequence lengths (prompt + response tokens) into one partition per data-parallel rank; rank r
    gets partition r as a contiguous shard (indices ascending) and splits it sequentially into
    chunks of mini_batch_size / ranks; optimizer step j all-reduces every rank's j-th chunk, so
    global mini-batch j = ⋃_r chunk_j(shard_r). The layout follows the lengths and the original
    index order, not the groups: a prompt's rollouts land on different ranks at different chunk
    positions, i.e. in different optimizer steps — the scattering the paper's QB fixes.

    Deterministic (the generator is not consumed), as in verl. Where verl would refuse:
      * mini_batch_size not a multiple of ``partitions``: emulate gcd(partitions, mini_batch_size)
        ranks instead (the largest rank count for which every rank holds an equal chunk);
      * B not a multiple of the rank count: pad with zero-length dummies (each on its own rank)
        before balancing and drop them after, so shards differ by at most one response and only
        the last mini-batch is smaller.
    """
    if lengths is None:
        raise ValueError("batching.mode=seqlen_balanced needs per-response lengths (lengths=[B] token counts)")
    n = group_ids.numel()
    if lengths.shape != (n,):
        raise ValueError(f"seqlen_balanced: lengths has shape {tuple(lengths.shape)}, expected ({n},)")
    if partitions < 1:
        raise ValueError(f"batching.seqlen_partitions={partitions}: must be >= 1")
    if n == 0:
        return []
    ranks = math.gcd(partitions, mini_batch_size)
    per_rank = mini_batch_size // ranks
    pad = (-n) % ranks
    # zero-length dummies at indices 0..pad-1 sort first (ties break by index), so they all sit in
    # the first run of `ranks` items and end up on distinct ranks
    lens = [0] * pad + [int(x) for x in lengths.tolist()]
    shards = [[i - pad for i in part if i >= pad] for part in balanced_partitions(lens, ranks)]
    steps = max(math.ceil(len(s) / per_rank) for s in shards)
    out = []
    for j in range(steps):
        idx = [i for s in shards for i in s[j * per_rank:(j + 1) * per_rank]]
        if idx:
            out.append(torch.tensor(idx, dtype=torch.long))
    return out


# ------------------------------------------------------------------ query_preserved (QB)
@register_minibatcher("query_preserved")
def query_preserved(
    group_ids, advantages, mini_batch_size, generator, *, lengths=None, partitions=8
) -> list[torch.Tensor]:
    """Whole groups are shuffled and packed, so every rollout of a prompt shares a mini-batch.

    Groups are taken in a random order and packed greedily: a mini-batch is closed when the next
    group would not fit. With equal group sizes G | mini_batch_size every mini-batch holds exactly
    mini_batch_size/G groups except possibly the last (B not a multiple of mini_batch_size).
    """
    if group_ids.numel() == 0:
        return []
    groups, inverse, sizes = torch.unique(group_ids, return_inverse=True, return_counts=True)
    if int(sizes.max()) > mini_batch_size or ((sizes == sizes[0]).all() and mini_batch_size % int(sizes[0])):
        raise ValueError(
            f"batching.mini_batch_size={mini_batch_size}: query_preserved needs a multiple of the group size "
            f"(group sizes {sorted(set(sizes.tolist()))})"
        )
    out, cur, fill = [], [], 0
    for g in torch.randperm(groups.numel(), generator=generator).tolist():
        members = torch.nonzero(inverse == g).flatten()
        if fill + members.numel() > mini_batch_size:
            out.append(torch.cat(cur))
            cur, fill = [], 0
        cur.append(members)
        fill += members.numel()
    out.append(torch.cat(cur))
    return out


# ------------------------------------------------------------------ sign_segregated (anti-control)
@register_minibatcher("sign_segregated")
def sign_segregated(
    group_ids, advantages, mini_batch_size, generator, *, lengths=None, partitions=8
) -> list[torch.Tensor]:
    """A>0 and A<0 rollouts never share a mini-batch (cancellation §4.2, the anti-control).

    The paper "partition[s] each sampling batch by advantage sign, placing positive and negative
    rollouts into separate mini-batches"; it does not say where A = 0 rollouts (all-correct /
    all-wrong groups) go. They carry no policy gradient but enter the token-mean normalizer, so
    here they are neutral filler spread over the signed mini-batches, never a mini-batch of their
    own unless there are fewer signed rollouts than mini-batches. This keeps the number of
    optimizer steps and the dilution as in the other modes; only the sign mixing changes:

      M = max(⌈B/m⌉, ⌈N+/m⌉ + ⌈N−/m⌉) mini-batches (at most one more than the other modes);
      the signed ones are shared between the signs in proportion to N+ and N− (each sign's
      rollouts dealt evenly over its own); the zeros then fill the emptiest mini-batch first.

    Each sign's rollouts and the zeros are shuffled with the generator, and so is the order of the
    mini-batches, so positive steps do not always come first.
    """
    if advantages.dim() != 1 or advantages.numel() != group_ids.numel():
        raise ValueError(f"sign_segregated: advantages must be per response [B], got shape {tuple(advantages.shape)}")
    n = advantages.numel()
    if n == 0:
        return []
    m = mini_batch_size

    def shuffled_where(mask: torch.Tensor) -> torch.Tensor:
        idx = torch.nonzero(mask).flatten()
        return idx[torch.randperm(idx.numel(), generator=generator)]

    pos, neg, zero = shuffled_where(advantages > 0), shuffled_where(advantages < 0), shuffled_where(advantages == 0)
    n_pos, n_neg = pos.numel(), neg.numel()
    k_pos, k_neg = -(-n_pos // m), -(-n_neg // m)
    total = max(-(-n // m), k_pos + k_neg)
    # spare steps go to the more crowded sign (never more steps than rollouts of that sign)
    for _ in range(min(total, n_pos + n_neg) - k_pos - k_neg):
        if k_pos < n_pos and (k_neg >= n_neg or n_pos * k_neg >= n_neg * k_pos):
            k_pos += 1
        else:
            k_neg += 1
    batches = [list(c) for c in pos.tensor_split(k_pos)] if k_pos else []
    batches += [list(c) for c in neg.tensor_split(k_neg)] if k_neg else []
    batches += [[] for _ in range(total - len(batches))]
    heap = [(len(b), i) for i, b in enumerate(batches)]
    heapq.heapify(heap)
    for z in zero.tolist():
        size, i = heapq.heappop(heap)
        batches[i].append(z)
        heapq.heappush(heap, (size + 1, i))
    order = torch.randperm(total, generator=generator).tolist()
    return [torch.tensor([int(x) for x in batches[i]], dtype=torch.long) for i in order]


# ------------------------------------------------------------------ entry point
def minibatch_indices(
    group_ids: torch.Tensor,
    advantages: torch.Tensor,
    mode: str,
    mini_batch_size: int,
    generator: Optional[torch.Generator],
    *,
    lengths: Optional[torch.Tensor] = None,
    partitions: int = 8,
) -> list[torch.Tensor]:
    """Index tensors of each mini-batch, covering every response exactly once.

    ``group_ids``/``advantages``/``lengths`` are per response [B]; ``lengths`` (token counts) is
    only read by ``seqlen_balanced``, ``partitions`` (= ``batching.seqlen_partitions``) likewise.
    """
    mode = getattr(mode, "value", mode)
    if mode not in MINIBATCHERS:
        raise ValueError(f"batching.mode={mode!r}: registered modes are {', '.join(sorted(MINIBATCHERS))}")
    if mini_batch_size < 1:
        raise ValueError(f"batching.mini_batch_size={mini_batch_size}: must be >= 1")
    if group_ids.dim() != 1:
        raise ValueError(f"minibatch_indices: group_ids must be [B], got shape {tuple(group_ids.shape)}")
    if group_ids.numel() == 0:
        return []
    return MINIBATCHERS[mode](
        group_ids, advantages, mini_batch_size, generator, lengths=lengths, partitions=partitions
    )
