"""NTHR (arXiv 2505.18830, Eq. 7-9, Algorithm 1; docs/algorithms.md §4).

Expected values are worked out by hand in the comments, or come from a plain-Python brute force
that sums Eq. 7 and Eq. 9 literally over every pair of tokens.
"""

import math

import pytest
import torch

from trainer.variants.nthr import NTHRConfig, nthr_advantages, nthr_batch, nthr_eta, nthr_scores


def _close(actual: torch.Tensor, expected, tol=1e-6):
    torch.testing.assert_close(actual.double(), torch.as_tensor(expected, dtype=torch.float64), rtol=0, atol=tol)


# ---------------------------------------------------------------- NTHR: brute force of Eq. 7 and 9
def _brute_nthr(hidden, logits, tokens, mask, correct, beta, vocab):
    """Eq. 7 and Eq. 9 as the literal double sum over token pairs, in Python floats."""
    n, t, _ = hidden.shape
    h, z, y, m, c = hidden.tolist(), logits.tolist(), tokens.tolist(), mask.bool().tolist(), correct.tolist()
    positions = [(i, k) for i in range(n) for k in range(t) if m[i][k]]
    if vocab == "group_union":
        vs = sorted({y[i][k] for i, k in positions})
    else:
        vs = list(range(len(z[0][0])))

    def g(i, k):
        top = max(z[i][k])
        e = [math.exp(v - top) for v in z[i][k]]
        total = sum(e)
        return [(1.0 if v == y[i][k] else 0.0) - e[v] / total for v in vs]

    def dot(a, b):
        return sum(p * q for p, q in zip(a, b))

    grads = {p: g(*p) for p in positions}
    anchors = [(i, k) for i, k in positions if c[i]]
    scores = [[0.0] * t for _ in range(n)]
    for j, kk in positions:  # every token against every positive token (Eq. 7; Eq. 9's inner sums)
        scores[j][kk] = sum(dot(grads[a], grads[(j, kk)]) * dot(h[a[0]][a[1]], h[j][kk]) for a in anchors)
    s_bar = [sum(scores[i][k] for k in range(t) if m[i][k]) / sum(m[i]) for i in range(n) if c[i] and sum(m[i])]
    tau = -math.inf if beta == -math.inf else beta * min(s_bar)
    return torch.tensor(scores, dtype=torch.float64), tau


def _group(seed, n=6, t=5, d=4, v=11, correct=(True, False, True, False, False, True), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, t, d, generator=gen, dtype=dtype)
    logits = 2 * torch.randn(n, t, v, generator=gen, dtype=dtype)
    tokens = torch.randint(0, v, (n, t), generator=gen)
    lengths = torch.randint(1, t + 1, (n,), generator=gen)  # ragged, every response non-empty
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(-1)
    tokens[~mask] = v - 1  # a padding id that must not enter V*
    return hidden, logits, tokens, mask, torch.tensor(correct)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("vocab", ["group_union", "full"])
def test_nthr_scores_match_the_double_sum(seed, vocab):
    hidden, logits, tokens, mask, correct = _group(seed)
    scores, tau = nthr_scores(hidden, logits, tokens, mask, correct, beta=1.0, vocab=vocab)
    ref_scores, ref_tau = _brute_nthr(hidden, logits, tokens, mask, correct, 1.0, vocab)
    _close(scores, ref_scores, tol=1e-9)
    assert abs(tau - ref_tau) < 1e-9
    assert bool((scores[~mask] == 0).all())


def test_nthr_hand_values_two_tokens():
    # positive y=0, logits [0, 0] → π = [.5, .5], g⁺ = [.5, −.5], h⁺ = 2
    # negative y=1, logits [0, ln 3] → π = [.25, .75], g⁻ = [−.25, .25], h⁻ = 1
    # s⁻ = ⟨g⁺,g⁻⟩·⟨h⁺,h⁻⟩ = (−.125 − .125)·2 = −0.5;  s̄⁺ = ‖g⁺‖²‖h⁺‖² = 0.5·4 = 2 = τ (β = 1)
    hidden = torch.tensor([[[2.0]], [[1.0]]], dtype=torch.float64)
    logits = torch.tensor([[[0.0, 0.0]], [[0.0, math.log(3)]]], dtype=torch.float64)
    rest = (torch.tensor([[0], [1]]), torch.ones(2, 1), torch.tensor([True, False]))
    scores, tau = nthr_scores(hidden, logits, *rest)
    _close(scores, [[2.0], [-0.5]], tol=1e-12)
    assert abs(tau - 2.0) < 1e-12
    _, tau_half = nthr_scores(hidden, logits, *rest, beta=0.5)
    assert abs(tau_half - 1.0) < 1e-12


def test_nthr_restricts_g_to_the_group_vocabulary_without_renormalizing():
    # V = 3, token 2 never sampled; uniform π = 1/3 everywhere; h = 1. Positive y=0, negative y=1.
    # V* = {0,1}: g⁺ = [2/3, −1/3], g⁻ = [−1/3, 2/3] → s⁻ = −4/9, s̄⁺ = 4/9 + 1/9 = 5/9
    # full: g⁺ = [2/3, −1/3, −1/3], g⁻ = [−1/3, 2/3, −1/3] → s⁻ = −1/3, s̄⁺ = 6/9
    args = (torch.ones(2, 1, 1, dtype=torch.float64), torch.zeros(2, 1, 3, dtype=torch.float64),
            torch.tensor([[0], [1]]), torch.ones(2, 1), torch.tensor([True, False]))
    union, tau_union = nthr_scores(*args, vocab="group_union")
    full, tau_full = nthr_scores(*args, vocab="full")
    _close(union, [[5 / 9], [-4 / 9]], tol=1e-12)
    _close(full, [[6 / 9], [-1 / 3]], tol=1e-12)
    assert abs(tau_union - 5 / 9) < 1e-12 and abs(tau_full - 6 / 9) < 1e-12


def test_nthr_group_union_differs_from_full_on_random_groups():
    hidden, logits, tokens, mask, correct = _group(0)
    assert tokens[mask].unique().numel() < logits.shape[-1]  # V* is a strict subset here
    union, _ = nthr_scores(hidden, logits, tokens, mask, correct, vocab="group_union")
    full, _ = nthr_scores(hidden, logits, tokens, mask, correct, vocab="full")
    assert (union - full).abs().max() > 1e-3


def test_nthr_padding_tokens_and_logits_do_not_matter():
    hidden, logits, tokens, mask, correct = _group(3)
    scores, tau = nthr_scores(hidden, logits, tokens, mask, correct)
    h2, z2, y2 = hidden.clone(), logits.clone(), tokens.clone()
    h2[~mask], z2[~mask], y2[~mask] = 100.0, -50.0, 0
    scores2, tau2 = nthr_scores(h2, z2, y2, mask, correct)
    _close(scores2, scores, tol=1e-12)
    assert abs(tau2 - tau) < 1e-12


def test_nthr_scores_scale_with_hidden_squared_and_ignore_logit_shifts():
    # s = gᵀ(Σ g⁺h⁺ᵀ)h is bilinear in h: h → c·h gives c²·s, and τ (β > 0) scales with it.
    # softmax is invariant to adding a constant per position, so g (and s) is too.
    hidden, logits, tokens, mask, correct = _group(4)
    scores, tau = nthr_scores(hidden, logits, tokens, mask, correct)
    scaled, tau_scaled = nthr_scores(3.0 * hidden, logits, tokens, mask, correct)
    _close(scaled, 9.0 * scores, tol=1e-9)
    assert abs(tau_scaled - 9.0 * tau) < 1e-9
    shift = torch.randn(*logits.shape[:2], 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    shifted, tau_shifted = nthr_scores(hidden, logits + 7.0 * shift, tokens, mask, correct)
    _close(shifted, scores, tol=1e-9)
    assert abs(tau_shifted - tau) < 1e-9


def test_nthr_scores_are_equivariant_to_reordering_responses():
    hidden, logits, tokens, mask, correct = _group(6)
    perm = torch.tensor([5, 3, 0, 4, 1, 2])
    scores, tau = nthr_scores(hidden, logits, tokens, mask, correct)
    permuted, tau_p = nthr_scores(hidden[perm], logits[perm], tokens[perm], mask[perm], correct[perm])
    _close(permuted, scores[perm], tol=1e-9)
    assert abs(tau_p - tau) < 1e-9


def test_nthr_float32_inputs_agree_with_the_float64_reference():
    hidden, logits, tokens, mask, correct = _group(7)
    scores, tau = nthr_scores(hidden.float(), logits.float(), tokens, mask, correct)
    ref_scores, ref_tau = _brute_nthr(hidden, logits, tokens, mask, correct, 1.0, "group_union")
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores.double(), ref_scores, rtol=1e-4, atol=1e-4)
    assert abs(tau - ref_tau) < 1e-4 * max(1.0, abs(ref_tau))


def test_nthr_beta_minus_inf_selects_every_negative_token():
    hidden, logits, tokens, mask, correct = _group(8)
    scores, tau = nthr_scores(hidden, logits, tokens, mask, correct, beta=-math.inf)
    assert tau == -math.inf
    adv = torch.where(correct, 1.0, -1.0)
    out, selected = nthr_advantages(adv, scores, tau, mask, correct, 0.25)
    negative_tokens = (~correct).unsqueeze(-1) & mask
    assert torch.equal(selected, negative_tokens)
    assert bool((out[negative_tokens] == -0.25).all())


@pytest.mark.parametrize("correct", [(True,) * 4, (False,) * 4])
def test_nthr_non_mixed_group_is_left_alone(correct):
    hidden, logits, tokens, mask, c = _group(9, n=4, correct=correct)
    scores, tau = nthr_scores(hidden, logits, tokens, mask, c)
    assert math.isnan(tau) and not bool(scores.any())
    adv = torch.tensor([0.5, -0.5, 1.0, -1.0])
    for t in (tau, -math.inf, 0.0):  # whatever τ a caller passes, nothing happens
        out, selected = nthr_advantages(adv, scores, t, mask, c, 0.0)
        assert torch.equal(out, adv.unsqueeze(-1).expand(4, 5)) and not bool(selected.any())


# ---------------------------------------------------------------- NTHR selection (Eq. 8) and η
def test_nthr_selection_is_strict_and_masked():
    # response 1 is negative: scores [0.5, 1.0, 2.0, 3.0], the last position padded; τ = 1.0
    # → only the 2.0 token is selected (1.0 = τ is not, the padded 3.0 is not)
    correct = torch.tensor([True, False])
    scores = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.5, 1.0, 2.0, 3.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    out, selected = nthr_advantages(torch.tensor([1.0, -2.0]), scores, 1.0, mask, correct, 0.1)
    assert selected.tolist() == [[False] * 4, [False, False, True, False]]
    _close(out, [[1.0] * 4, [-2.0, -2.0, -0.2, -2.0]])


def test_nthr_positive_responses_and_unselected_tokens_are_never_modified():
    hidden, logits, tokens, mask, correct = _group(10)
    adv = torch.randn(6, 5, generator=torch.Generator().manual_seed(11))
    for beta in (-math.inf, 0.0, 1.0):
        scores, tau = nthr_scores(hidden, logits, tokens, mask, correct, beta=beta)
        out, selected = nthr_advantages(adv, scores, tau, mask, correct, 0.0)
        assert torch.equal(out[correct], adv[correct])
        assert torch.equal(out[~selected], adv[~selected])
        assert bool((out[selected] == 0).all())


@pytest.mark.parametrize(
    "n, n_pos, schedule, expected",
    [
        (8, 1, "auto", 0.75),  # p = 1/8: 2|0.5 − 0.125| = 0.75
        (8, 7, "auto", 0.75),  # p = 7/8
        (4, 2, "auto", 0.0),  # p = 0.5
        (4, 1, "auto", 0.5),  # p = 0.25
        (4, 1, "p", 0.25),
        (4, 1, "one_minus_p", 0.75),
        (4, 1, 0.3, 0.3),  # a constant ignores p
    ],
)
def test_nthr_eta_schedules_scale_selected_tokens(n, n_pos, schedule, expected):
    correct = torch.arange(n) < n_pos
    mask = torch.ones(n, 2, dtype=torch.bool)
    adv = torch.where(correct, 1.0, -2.0)
    out, selected = nthr_advantages(adv, torch.zeros(n, 2), -math.inf, mask, correct, schedule)
    assert torch.equal(selected, (~correct).unsqueeze(-1).expand(n, 2))
    _close(out[~correct], torch.full((n - n_pos, 2), -2.0 * expected))
    assert nthr_eta(schedule, n_pos / n) == pytest.approx(expected)


def test_nthr_rejects_unknown_vocab():
    with pytest.raises(ValueError, match="per_response"):
        nthr_scores(*_group(0), vocab="per_response")


@pytest.mark.parametrize("bad", ["two_abs", 1.01, -0.1, True])
def test_the_config_refuses_bad_nthr_eta_even_with_nthr_off(bad):
    from trainer.config import Config
    from trainer.knobs import ConfigError
    from trainer.validation import validate

    cfg = Config()
    cfg.algorithm.nthr.eta = bad
    with pytest.raises(ConfigError, match=f"algorithm.nthr.eta={bad!r}: must be"):
        validate(cfg)


# ---------------------------------------------------------------- NTHR over a batch
def test_nthr_batch_equals_per_group_calls():
    # three interleaved groups of 4: group 7 mixed, group 2 all correct, group 5 mixed
    groups = [_group(20, n=4, correct=(True, False, False, True)),
              _group(21, n=4, correct=(True,) * 4),
              _group(22, n=4, correct=(False, True, False, False))]
    ids = torch.tensor([7, 2, 5] * 4)
    order = [[i for i in range(12) if ids[i] == gid] for gid in (7, 2, 5)]
    b_hidden, b_logits = torch.zeros(12, 5, 4, dtype=torch.float64), torch.zeros(12, 5, 11, dtype=torch.float64)
    b_tokens, b_mask = torch.zeros(12, 5, dtype=torch.long), torch.zeros(12, 5, dtype=torch.bool)
    b_correct, b_adv = torch.zeros(12, dtype=torch.bool), torch.randn(12, generator=torch.Generator().manual_seed(23))
    for rows, (h, z, y, m, c) in zip(order, groups):
        b_hidden[rows], b_logits[rows], b_tokens[rows], b_mask[rows], b_correct[rows] = h, z, y, m, c
    cfg = NTHRConfig(enabled=True, beta=0.1, eta="auto")
    out, stats = nthr_batch(b_hidden, b_logits, b_tokens, b_mask, b_correct, ids, b_adv, cfg)

    expected = b_adv.unsqueeze(-1).expand(12, 5).clone()
    selected_n, negative_n, taus = 0, 0, []
    for rows, (h, z, y, m, c) in zip(order, groups):
        if c.all():
            continue
        s, tau = nthr_scores(h, z, y, m, c, beta=0.1)
        adv_g, sel = nthr_advantages(b_adv[rows], s, tau, m, c, "auto")
        expected[rows] = adv_g
        selected_n += int(sel.sum())
        negative_n += int(((~c).unsqueeze(-1) & m).sum())
        taus.append(tau)
    assert torch.equal(out, expected)
    assert selected_n > 0
    assert stats["nthr/mixed_groups"] == 2.0
    assert stats["nthr/selected_frac"] == pytest.approx(selected_n / negative_n)
    assert stats["nthr/tau_mean"] == pytest.approx(sum(taus) / 2)


def test_nthr_batch_without_mixed_groups_changes_nothing():
    h, z, y, m, c = _group(30, n=4, correct=(False,) * 4)
    adv = torch.full((4, 5), -1.0)
    out, stats = nthr_batch(h, z, y, m, c, torch.zeros(4, dtype=torch.long), adv, NTHRConfig(enabled=True))
    assert torch.equal(out, adv)
    # the trainer's statistics: nothing selected out of no negatives of mixed groups, no τ to average
    assert stats == {"nthr/mixed_groups": 0.0, "nthr/selected_frac": 0.0}


def test_nthr_eta_one_is_neutral():
    """η = 1 scales selected tokens by 1: the neutral setting that reproduces plain GRPO."""
    N, T = 4, 3
    correct = torch.tensor([True, False, True, False])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    mask = torch.ones(N, T)
    out, selected = nthr_advantages(adv, torch.ones(N, T), -math.inf, mask, correct, 1.0)
    assert selected[~correct].all()
    assert torch.equal(out, adv.unsqueeze(-1).expand(N, T))


def test_trainer_scoring_in_chunks_equals_nthr_batch():
    """The trainer scores NTHR chunk by chunk during the π_old forward (trainer/nthr_scores.py);
    scores, selections and advantages equal nthr_batch over the whole batch."""
    from types import SimpleNamespace

    from trainer.variants.nthr import NTHRConfig, NTHRScores

    g = torch.Generator().manual_seed(7)
    B, T, d, V, G = 16, 5, 4, 9, 4
    hidden = torch.randn(B, T, d, generator=g, dtype=torch.float64)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, V, (B, T), generator=g)
    mask = (torch.rand(B, T, generator=g) > 0.2).double()
    group_ids = torch.arange(B // G).repeat_interleave(G)
    correct = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool)  # 2 mixed groups
    adv = torch.randn(B, dtype=torch.float64)
    cfg = NTHRConfig(enabled=True, beta=0.5, eta="auto")
    want, want_stats = nthr_batch(hidden, logits, tokens, mask, correct, group_ids, adv, cfg)
    stats = SimpleNamespace(logp=torch.zeros(B, T, dtype=torch.float64), hidden=hidden, logits=logits)
    parts = [NTHRScores.of(SimpleNamespace(logp=stats.logp[s], hidden=hidden[s], logits=logits[s]), tokens[s], mask[s],
                           correct[s], group_ids[s], cfg) for s in (slice(0, 8), slice(8, 16))]
    got, got_stats = NTHRScores.concat(parts).apply(adv.unsqueeze(-1).expand(B, T).clone())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert got_stats["nthr/mixed_groups"] == 2.0
    assert got_stats["nthr/selected_frac"] == pytest.approx(want_stats["nthr/selected_frac"])
