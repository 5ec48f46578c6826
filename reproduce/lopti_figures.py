"""The Lopti report's figures: Fig. 1d (per-token gradient norm by π interval, and against 1 − π),
Fig. 1c/e/f (Δπ by interval after the full, low-only and high-only updates), the K&K ablation."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.plot_style import OKABE_ITO
from reproduce.figures import accuracy_panel, bars_with_points, save

BIN_LABELS = ["[0, .25)", "[.25, .5)", "[.5, .75)", "[.75, 1]"]


def draw(probe, source, out_dir) -> list:
    out = []
    batches = (probe or {}).get("batches", [])
    if batches:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
        bars_with_points(a, BIN_LABELS, [x["bin_token_grad"] for x in batches], log=True)
        a.set_xlabel("π_old interval")
        a.set_ylabel("‖∇θ A·ln π(y_t)‖ (mean per token)")
        a.set_title("per-token gradient norm (Fig. 1d)", fontsize=9)
        t = batches[0]["token"]
        x, y = 1 - np.array(t["p"]), np.array(t["grad_logp"])
        b.plot(x, y, ".", markersize=3, color=OKABE_ITO[0], alpha=0.6)
        f = batches[0]["fit"]
        if f:
            xs = np.linspace(0, 1, 20)
            b.plot(xs, f["intercept"] + f["slope"] * xs, color=OKABE_ITO[3], label=f"OLS, R² = {f['r2']:.2f}")
            b.legend(fontsize=8)
        b.set_xlabel("1 − π(y_t)")
        b.set_ylabel("‖∇θ ln π(y_t)‖")
        b.set_title("against 1 − π (Prop. 4.2), probe batch 0", fontsize=9)
        out.append((save(fig, out_dir, "lopti_grad_norm"),
                    "Per-token gradient norms by π interval (bars: mean over probe batches; points: batches) "
                    "and against 1 − π with the OLS fit."))
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        for i, arm in enumerate(("full", "low", "high")):
            bars_with_points(ax, BIN_LABELS, [x["bin_dprob"][arm] for x in batches], series=f"{arm} update",
                             color=OKABE_ITO[i], offset=(i - 1) * 0.27, width=0.27)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("π_old interval")
        ax.set_ylabel("mean Δπ of the interval's tokens")
        ax.legend(fontsize=8)
        ax.set_title("one SGD step on every token, on [0, .25) only, on [.75, 1] only (Fig. 1c/e/f)", fontsize=9)
        out.append((save(fig, out_dir, "lopti_dprob"),
                    "Mean probability change per π interval after the full, lowest-only and highest-only "
                    "updates, same step size."))
    if source is not None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        order = ["grpo", "ar", "lopti", "ar_lopti"]
        accuracy_panel(ax, source, "variant", order, labels={"ar_lopti": "AR+Lopti", "grpo": "GRPO",
                                                                "ar": "AR", "lopti": "Lopti"})
        ax.set_title("K&K ablation: final eval accuracy per seed", fontsize=9)
        out.append((save(fig, out_dir, "lopti_accuracy"), "Final eval accuracy of each variant, per seed."))
    return out
