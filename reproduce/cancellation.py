"""The cancellation hypothesis (arXiv 2605.08666): token flipping (Fig. 1c/d), token coupling (Eq. 5–10)
and the batching interventions (Table 2) on the built-in arithmetic task."""
from __future__ import annotations

import math

from reproduce import cancellation_probe
from reproduce.claims import Claim, across_seeds, judge, missing, ratio_across_seeds
from reproduce.paper import Paper, Plan, register
from reproduce.sweep_claims import accuracy_results
from reproduce.verdict import Kind, Rule

PROBE_MIN_N = 3
ACC_MIN_N = 5
BATCHING = {"qb": "query-preserved batching (QB)", "rb": "reward-balanced batching (RB)", "qb_rb": "QB + RB"}

CLAIMS = (
    Claim("cancellation.against_half", "cancellation", "§2.1, Fig. 1c",
          "nearly half of the tokens move in the direction opposite to what their rollout-level advantage sign "
          "suggests",
          "after one GRPO SGD step, the share of A > 0 tokens suppressed plus A < 0 tokens boosted (“nearly half” "
          "read as 0.5 ± 0.15)", Rule(Kind.within, 0.5, 0.15, PROBE_MIN_N)),
    Claim("cancellation.similar_ratios", "cancellation", "§2.1, Fig. 1c",
          "positive and negative rollouts exhibit remarkably similar ratios of boosted and suppressed tokens",
          "boosted share of A > 0 rollouts' tokens minus that of A < 0 rollouts' (“similar” read as within ±0.1)",
          Rule(Kind.within, 0.0, 0.1, PROBE_MIN_N)),
    Claim("cancellation.similar_magnitudes", "cancellation", "§2.1, Fig. 1c",
          "even the magnitudes of these token-level changes are also similar",
          "mean |Δ ln π| of A > 0 rollouts' tokens ÷ that of A < 0 rollouts' (geometric mean over batches; "
          "“similar” read as within 1 ± 0.33)", Rule(Kind.within, 1.0, 0.33, PROBE_MIN_N), unit="×"),
    Claim("cancellation.positive_only", "cancellation", "§2.1, Fig. 1d",
          "this pattern largely disappears under positive-rollout-only training, where negative rollouts are masked",
          "suppressed share of A > 0 rollouts' tokens after a positive-only step minus after the GRPO step, same "
          "batch and lr, measured on the full batch (a 0.05 margin for “not reproduced”)",
          Rule(Kind.less, 0.0, 0.05, PROBE_MIN_N)),
    Claim("cancellation.coupling", "cancellation", "Eq. 10, Fig. 2b",
          "non-negligible coupling occurs primarily between identical, low-confidence tokens",
          "LM-head coupling |K_kl| = |h_k·h_l · D_kl| (Eq. 7–8) on 400 sampled tokens: mean over pairs of the "
          "same token with both π < 0.5 ÷ mean over pairs of different tokens (“primarily” read as at least 2×)",
          Rule(Kind.greater, 2.0, 0.0, PROBE_MIN_N), unit="×"),
    *(Claim(f"cancellation.acc_{v}", "cancellation", "§4, Table 2",
            f"{name} improves RLVR training over the baseline batching",
            f"paired Δ final eval accuracy, {name} − shuffled baseline batching, built-in arithmetic (Bonferroni "
            "interval over the three comparisons; a 0.02 margin for “not reproduced”)",
            Rule(Kind.greater, 0.0, 0.02, ACC_MIN_N), paper_value="“consistent improvements” (Table 2's cells are "
                                                                   "damaged in the text)", kind="accuracy")
      for v, name in BATCHING.items()),
)


def plan(quick: bool) -> Plan:
    seeds = "0,1" if quick else "0,1,2,3,4"
    steps = 4 if quick else 40
    prompts = 16 if quick else 32
    return Plan(
        sweeps=(("ablation", ("experiment=cancellation_paper", f"variant=cb_baseline,{','.join(BATCHING)}",
                              f"seed={seeds}", f"train.steps={steps}", f"train.eval_every={steps}",
                              f"rollout.prompts_per_step={prompts}", f"batching.mini_batch_size={prompts * 2}",
                              f"batching.micro_batch_size={prompts * 2}", "diagnostics.every=4")),),
        probe=("experiment=cancellation_paper", "variant=cb_baseline", "rollout.prompts_per_step=32",
               "batching.mini_batch_size=256", "batching.micro_batch_size=128"),
        probe_seeds=tuple(range(3 if quick else 5)),
        note=(f"Training: the cancellation_paper preset (DAPO token-mean loss, clip 0.2/0.28, KL 0, T = 1) on "
              f"built-in arithmetic, {steps} steps of {prompts} prompts × 8 in 4 mini-batches, {'2' if quick else '5'} "
              "seeds per batching mode. Probe: the warm-start policy, plain SGD, each batch at the largest lr of "
              "10^(−k/4) whose GRPO step's first-order ratio is in [0.8, 1.25]; boosted/suppressed at τ = 1% of "
              "that step's mean |Δ ln π|."))


def judge_all(probe, sources: dict, quick: bool) -> list:
    c = {cl.id: cl for cl in CLAIMS}
    batches = (probe or {}).get("batches", [])
    out = []
    if batches:
        g = [b["grpo"] for b in batches]
        out.append(judge(c["cancellation.against_half"], across_seeds([x.get("against_sign_frac", math.nan)
                                                                       for x in g]), quick,
                         against_sign_among_moved=[against_among_moved(x) for x in g],
                         stable_frac=[1 - x.get("all_boost_frac", 0) - x.get("all_suppress_frac", 0) for x in g]))
        out.append(judge(c["cancellation.similar_ratios"],
                         across_seeds([x.get("pos_boost_frac", math.nan) - x.get("neg_boost_frac", math.nan)
                                       for x in g]), quick,
                         boost_pos=[x.get("pos_boost_frac") for x in g],
                         boost_neg=[x.get("neg_boost_frac") for x in g]))
        out.append(judge(c["cancellation.similar_magnitudes"],
                         ratio_across_seeds([x["pos_abs_delta"] / x["neg_abs_delta"] for x in g]), quick))
        pos = [b["positive"] for b in batches]
        out.append(judge(c["cancellation.positive_only"],
                         across_seeds([p.get("pos_suppress_frac", math.nan) - x.get("pos_suppress_frac", math.nan)
                                       for p, x in zip(pos, g)]), quick,
                         suppressed_pos_grpo=[x.get("pos_suppress_frac") for x in g],
                         suppressed_pos_positive_only=[p.get("pos_suppress_frac") for p in pos],
                         against_sign_positive_only=[p.get("against_sign_frac") for p in pos]))
        k = [b["coupling"] for b in batches]
        out.append(judge(c["cancellation.coupling"],
                         ratio_across_seeds([x["mean_abs_same_low"] / x["mean_abs_different"] for x in k]), quick,
                         same_other_over_different=[x["mean_abs_same_other"] / x["mean_abs_different"] for x in k],
                         mass_same_low=[x["mass_same_low"] for x in k],
                         pairs_same_low=[x["pairs_same_low"] for x in k]))
        for r in out:
            r.details.update(lr=[b["lr"] for b in batches], first_order_ratio=[b["ratio"] for b in batches])
    else:
        out += [missing(cl, "no probe ran", quick) for cl in CLAIMS if cl.kind == "probe"]
    acc = [cl for cl in CLAIMS if cl.kind == "accuracy"]
    out += accuracy_results(sources.get("ablation"), acc, "variant", "cb_baseline", list(BATCHING), quick)
    activity = rb_activity(sources.get("ablation"))
    for r in out:
        if r.claim.id in ("cancellation.acc_rb", "cancellation.acc_qb_rb") and activity:
            r.details.update(activity)
    return out


def against_among_moved(x: dict) -> float:
    """The against-sign share among the tokens that moved (|Δ| > τ): how much of the gap to "half"
    is the stable tokens, whose share depends on the paper's lost τ."""
    n_pos, n_neg = x.get("pos_tokens", 0), x.get("neg_tokens", 0)
    against = x.get("pos_suppress_frac", 0) * n_pos + x.get("neg_boost_frac", 0) * n_neg
    moved = (x.get("pos_boost_frac", 0) + x.get("pos_suppress_frac", 0)) * n_pos + \
        (x.get("neg_boost_frac", 0) + x.get("neg_suppress_frac", 0)) * n_neg
    return against / moved if moved else math.nan


def rb_activity(source) -> dict:
    """How often reward balancing changed an update at all: the mean balance min(N⁺, N⁻)/|B| of the
    buffered rollouts, and the share of steps that held rollouts back (an RB cell equal to its baseline
    is explained by a share of 0: every fresh batch already met ρ)."""
    if source is None:
        return {}
    from analysis.sources import runs_frame

    df = runs_frame(source)
    df = df[(df["status"] == "completed") & df["variant"].astype(str).isin(["rb", "qb_rb"])]
    balance, held = [], []
    for run_dir in df["run_dir"]:
        h = source.history(run_dir)
        if "train/rb/balance" in h:
            balance += h["train/rb/balance"].dropna().tolist()
            held += (h["train/rb/buffer_left"].dropna() > 0).tolist()
    if not balance:
        return {}
    return {"rb_mean_balance": sum(balance) / len(balance), "rb_steps_holding_back": sum(held) / max(len(held), 1)}


def figures(probe, sources: dict, out_dir) -> list:
    from reproduce import cancellation_figures

    return cancellation_figures.draw(probe, sources.get("ablation"), out_dir)


PAPER = register(Paper(
    "cancellation", "The Cancellation Hypothesis in Critic-Free RL", "2605.08666", CLAIMS, plan,
    probe=cancellation_probe.run_probe, judge=judge_all, figures=figures,
    caveats=("The paper trains Qwen2.5-Math-7B and Qwen3 1.7B/4B on math; these are {model} on "
             "built-in arithmetic for minutes, with a character vocabulary (many pairs share a token).",)))
