"""Less padding per forward, same numbers: micro-batches of rows of similar length
(``batching.sort_micro_batches``) and forwards cut to the columns some row uses
(``trainer.logprobs.completion_logprobs``). References: the full-width forward, and the update
with sorting off."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import one_trainer_step
from trainer import update_plan
from trainer.config import BatchingConfig, Config, RolloutConfig
from trainer.logprobs import _completion_logprobs, completion_logprobs, content_span
from trainer.modeling import load_policy


def _batch(prompt_lens, completion_lens, P=6, T=5, vocab=50, seed=0):
    """Left-padded prompts, right-padded completions, random tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (len(prompt_lens), P + T), generator=g)
    am = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        am[i, P - p : P + c] = 1
    return ids * am, am, P


def test_content_span_keeps_the_last_prompt_column_and_one_completion_column():
    _, am, P = _batch([2, 3], [1, 3])
    assert content_span(am, P) == (P - 3, P + 3)
    _, am, P = _batch([6], [5])
    assert content_span(am, P) == (0, P + 5)  # nothing to cut
    assert content_span(torch.zeros(2, 11, dtype=torch.long), 6) == (0, 11)


@pytest.mark.parametrize("rows", [[0, 1], [2], [0, 1, 2, 3]])
def test_the_cut_forward_equals_the_full_width_forward(model_dir, rows):
    model = load_policy(model_dir, dtype=torch.float64).eval()
    ids, am, P = _batch([2, 3, 6, 1], [1, 3, 5, 2])
    ids, am = ids[rows], am[rows]
    with torch.no_grad():
        cut = completion_logprobs(model, ids, am, P, 0.7, with_entropy=True, with_hidden=True)
        full = _completion_logprobs(model, ids, am, P, 0.7, True, True)
    mask = am[:, P:].bool()
    for name, a, b in zip(cut._fields, cut, full):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a[mask], b[mask], rtol=0, atol=1e-12, msg=name)
        assert (a[:, content_span(am, P)[1] - P :] == 0).all(), name  # cut columns come back as zeros


def test_length_sorted_micro_batches_cover_each_row_once():
    cfg = Config()
    cfg.batching.micro_batch_size = 3
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(0, 20, (40,), generator=g)
    rows = torch.randperm(40, generator=g)[:17]
    micro = [m for m, _ in update_plan.micro_batches(cfg, rows, 0, 1, lengths)]
    flat = torch.cat(micro)
    assert sorted(flat.tolist()) == sorted(rows.tolist())
    assert (lengths[flat].diff() >= 0).all()  # shortest first, similar lengths together
    cfg.batching.sort_micro_batches = False
    assert torch.equal(torch.cat([m for m, _ in update_plan.micro_batches(cfg, rows, 0, 1, lengths)]), rows)
    cfg.batching.sort_micro_batches = True
    cfg.algorithm.loss = "dfpo"  # a loss that needs whole groups per micro-batch: no sorting
    assert torch.equal(torch.cat([m for m, _ in update_plan.micro_batches(cfg, rows, 0, 1, lengths)]), rows)


def test_with_several_ranks_each_sorts_its_own_shard():
    """Sorting before sharding would give one rank all the short rows: sort after."""
    cfg = Config()
    cfg.batching.micro_batch_size = 2
    lengths = torch.arange(20, 0, -1)
    rows = torch.arange(10)
    for rank in range(2):
        shard = torch.cat([m for m, w in update_plan.micro_batches(cfg, rows, rank, 2, lengths) if w > 0])
        assert sorted(shard.tolist()) == list(range(5 * rank, 5 * rank + 5))
        assert (lengths[shard].diff() >= 0).all()


def _step(model_dir, sort: bool):
    torch.set_num_threads(1)
    cfg = Config(seed=4)
    cfg.rollout = dataclasses.replace(RolloutConfig(), n=4, prompts_per_step=8, max_new_tokens=6)
    cfg.batching = BatchingConfig(mini_batch_size=16, micro_batch_size=4, sort_micro_batches=sort)
    cfg.optim.lr = 1e-3
    cfg.diagnostics.every = 0
    return one_trainer_step(model_dir, cfg)


def test_sorting_micro_batches_leaves_the_update_unchanged(model_dir):
    p_sorted, m_sorted = _step(model_dir, True)
    p_plain, m_plain = _step(model_dir, False)
    assert m_plain["train/mixed_group_frac"] > 0 and m_plain["train/optimizer_steps"] == 2.0
    torch.testing.assert_close(p_sorted, p_plain, rtol=0, atol=1e-12)
    for k in ("train/loss", "train/grad_norm", "train/clip_frac_low", "train/clip_frac_high"):
        assert m_sorted[k] == pytest.approx(m_plain[k], rel=1e-10, abs=1e-12), k
