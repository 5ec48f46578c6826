"""The cancellation report's figures: boosted / suppressed shares of positive and negative rollouts
after a GRPO step and a positive-only step (Fig. 1c/d), LM-head coupling by pair class (Fig. 2b),
and accuracy per batching mode."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.plot_style import OKABE_ITO
from reproduce.figures import accuracy_panel, save


def draw(probe, source, out_dir) -> list:
    out = []
    batches = (probe or {}).get("batches", [])
    if batches:
        fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.3), sharey=True)
        for ax, arm, title in zip(axes, ("grpo", "positive"), ("GRPO step (Fig. 1c)", "positive-only step (Fig. 1d)")):
            labels, x = ["A > 0 rollouts", "A < 0 rollouts"], np.arange(2)
            for j, (kind, color) in enumerate((("boost", OKABE_ITO[2]), ("suppress", OKABE_ITO[3]))):
                vals = np.array([[b[arm].get(f"{s}_{kind}_frac", np.nan) for s in ("pos", "neg")] for b in batches])
                ax.bar(x + (j - 0.5) * 0.38, np.nanmean(vals, 0), width=0.38, color=color, label=f"{kind}ed")
                for row in vals:
                    ax.plot(x + (j - 0.5) * 0.38, row, "o", color="black", markersize=2.5)
            ax.set_xticks(x, labels)
            ax.set_title(title, fontsize=9)
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=0.8)
        axes[0].set_ylabel("share of the rollouts' tokens")
        axes[0].legend(fontsize=8)
        out.append((save(fig, out_dir, "cancellation_flips"),
                    "Boosted and suppressed token shares of positive and negative rollouts after one SGD step of "
                    "GRPO and of positive-only training, measured on the full batch."))
        fig, ax = plt.subplots(figsize=(5, 3.2))
        classes = [("same_low", "same token,\nboth π < 0.5"), ("same_other", "same token,\notherwise"),
                   ("different", "different\ntokens")]
        vals = np.array([[b["coupling"][f"mean_abs_{c}"] for c, _ in classes] for b in batches])
        ax.bar(range(3), np.nanmean(vals, 0), color=OKABE_ITO[0], alpha=0.8)
        for row in vals:
            ax.plot(range(3), row, "o", color="black", markersize=2.5)
        ax.set_xticks(range(3), [t for _, t in classes])
        ax.set_yscale("log")
        ax.set_ylabel("mean |K_kl| (LM head)")
        ax.set_title("token coupling by pair class (Eq. 7–10)", fontsize=9)
        out.append((save(fig, out_dir, "cancellation_coupling"),
                    "Mean LM-head coupling |h_k·h_l·D_kl| by pair class, per probe batch."))
    if source is not None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        accuracy_panel(ax, source, "variant", ["cb_baseline", "qb", "rb", "qb_rb"],
                       labels={"cb_baseline": "baseline", "qb": "QB", "rb": "RB", "qb_rb": "QB+RB"})
        ax.set_title("final eval accuracy per seed", fontsize=9)
        out.append((save(fig, out_dir, "cancellation_accuracy"), "Final eval accuracy per batching mode, per seed."))
    return out
