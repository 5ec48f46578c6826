"""Lazy likelihood displacement and NTHR (arXiv 2505.18830): the Δ(x) probe of Sec. 5.3 (Fig. 4), the
lazy fraction over training, and accuracy, GRPO vs NTHR on the built-in arithmetic task."""
from __future__ import annotations

import numpy as np

from reproduce import nthr_probe
from reproduce.claims import Claim, across_seeds, judge, missing
from reproduce.paper import Paper, Plan, register
from reproduce.sweep_claims import accuracy_results
from reproduce.verdict import Kind, Rule

ARXIV = "2505.18830"
PROBE_MIN_N = 3
ACC_MIN_N = 5

CLAIMS = (
    Claim("nthr.delta_x", "nthr", "Sec. 5.3, Fig. 4",
          "NTHR mitigates LLD: its Δ(x) bars are higher than GRPO's on every probed sample",
          "per mixed prompt, Δ(x) after one SGD step with NTHR's advantages (β = 1, η = 0) minus after one with "
          "GRPO's, same batch, same step; mean over prompts, per probe batch",
          Rule(Kind.greater, 0.0, 0.0, PROBE_MIN_N), unit="nats"),
    Claim("nthr.vs_random", "nthr", "Sec. 5.3, Fig. 4",
          "GRPO+Random (as many random negative tokens zeroed) gives only modest gains",
          "Δ(x) after the NTHR step minus after the GRPO+Random step, mean over prompts, per probe batch",
          Rule(Kind.greater, 0.0, 0.0, PROBE_MIN_N), unit="nats"),
    Claim("nthr.lazy_probe", "nthr", "Eq. 2–3, Fig. 4",
          "under GRPO, correct responses' likelihood can fall after an update (lazy prompts); NTHR reduces that",
          "fraction of mixed prompts with Δ(x) ≤ 0 after the NTHR step minus after the GRPO step, per probe batch",
          Rule(Kind.less, 0.0, 0.02, PROBE_MIN_N)),
    Claim("nthr.lazy_train", "nthr", "Sec. 5, training",
          "NTHR reduces lazy likelihood displacement during training",
          "paired Δ of the mean over logged steps of diag/lld_lazy_frac (fraction of mixed prompts with Δ(x) ≤ 0 "
          "across each update), NTHR − GRPO",
          Rule(Kind.less, 0.0, 0.02, ACC_MIN_N), kind="accuracy"),
    Claim("nthr.accuracy", "nthr", "Table 2",
          "NTHR gives consistent average gains over GRPO from 0.5B to 3B",
          "paired Δ final eval accuracy, NTHR − GRPO, on the built-in arithmetic task (a 0.02 margin for "
          "“not reproduced”)",
          Rule(Kind.greater, 0.0, 0.02, ACC_MIN_N), paper_value="+0.94 to +2.4 points (avg. of 5 math sets)",
          kind="accuracy"),
)


def plan(quick: bool) -> Plan:
    seeds = "0,1" if quick else "0,1,2,3,4"
    steps = 6 if quick else 60
    prompts = 16 if quick else 32
    small = (f"rollout.prompts_per_step={prompts}", "batching.mini_batch_size=128", "batching.micro_batch_size=128")
    return Plan(
        sweeps=(("ablation", ("experiment=nthr_paper", "variant=grpo,nthr", f"seed={seeds}", f"train.steps={steps}",
               f"train.eval_every={steps}", "diagnostics.every=2", *small)),),
        probe=("experiment=nthr_paper", "variant=nthr", "algorithm.nthr.eta=0", "algorithm.kl.coef=0", *small),
        probe_seeds=tuple(range(3 if quick else 5)),
        note=(f"Training: the nthr_paper preset (ε 0.2, KL 1e-4, dynamic sampling, 4 updates per batch) on the "
              f"built-in arithmetic task, {steps} steps of {prompts} prompts × 8, {'2' if quick else '5'} seeds per "
              "variant, NTHR at the paper's β = 1, η = 2|0.5 − p|. Probe: the warm-start policy, η = 0 as in "
              "Sec. 5.3, KL off, plain SGD, each batch at the largest lr of 10^(−k/4) whose GRPO step's "
              "first-order ratio is in [0.8, 1.25]."))


def _per_batch(batches, f):
    return [f(b) for b in batches if b["prompts"]]


def judge_all(probe, sources: dict, quick: bool) -> list:
    source = sources.get("ablation")
    c = {cl.id: cl for cl in CLAIMS}
    batches = (probe or {}).get("batches", [])
    out = []
    if batches:
        d = {k: _per_batch(batches, lambda b, k=k: np.asarray(b["delta"][k])) for k in ("grpo", "nthr", "random")}
        higher = [float((n > g).mean()) for n, g in zip(d["nthr"], d["grpo"])]
        out.append(judge(c["nthr.delta_x"], across_seeds([float((n - g).mean()) for n, g in zip(d["nthr"], d["grpo"])]),
                         quick, frac_prompts_nthr_higher=higher, mean_delta_grpo=[float(g.mean()) for g in d["grpo"]]))
        out.append(judge(c["nthr.vs_random"],
                         across_seeds([float((n - r).mean()) for n, r in zip(d["nthr"], d["random"])]), quick,
                         random_minus_grpo=[float((r - g).mean()) for r, g in zip(d["random"], d["grpo"])]))
        lazy = {k: [float((x <= 0).mean()) for x in v] for k, v in d.items()}
        out.append(judge(c["nthr.lazy_probe"], across_seeds([n - g for n, g in zip(lazy["nthr"], lazy["grpo"])]),
                         quick, lazy_frac=lazy))
        for r in out:
            r.details.update(lr=[b["lr"] for b in batches], first_order_ratio=[b["ratio"] for b in batches],
                             selected_frac=[b["selected_frac_of_negative"] for b in batches])
    else:
        out += [missing(cl, "no probe ran", quick) for cl in CLAIMS if cl.id.endswith("_probe") or
                cl.id in ("nthr.delta_x", "nthr.vs_random")]
    out += accuracy_results(source, [c["nthr.lazy_train"]], "variant", "grpo", ["nthr"], quick,
                            metric="mean:diag/lld_lazy_frac")
    out += accuracy_results(source, [c["nthr.accuracy"]], "variant", "grpo", ["nthr"], quick)
    return out


def figures(probe, sources: dict, out_dir) -> list:
    from reproduce import nthr_figures

    return nthr_figures.draw(probe, sources.get("ablation"), out_dir)


PAPER = register(Paper(
    "nthr", "On the Effect of Negative Gradient in Group Relative Deep Reinforcement Optimization",
    ARXIV, CLAIMS, plan, probe=nthr_probe.run_probe, judge=judge_all, figures=figures,
    caveats=("The paper trains Qwen2.5 0.5B–3B on math with AIME/AMC/MATH500 evals; these are {model} "
             "model on built-in arithmetic for minutes.",)))
