"""The NTHR report's figures: per-prompt Δ(x) of GRPO, GRPO+Random and NTHR on one probe batch
(Fig. 4's bars), and the accuracy of GRPO vs NTHR per seed."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.plot_style import OKABE_ITO
from reproduce.figures import accuracy_panel, save


def draw(probe, source, out_dir) -> list:
    out = []
    batches = [b for b in (probe or {}).get("batches", []) if b["prompts"]]
    if batches:
        b = batches[0]
        order = np.argsort(b["delta"]["grpo"])
        x = np.arange(len(order))
        fig, ax = plt.subplots(figsize=(8, 3.4))
        for i, (arm, label) in enumerate((("grpo", "GRPO"), ("random", "GRPO+Random"), ("nthr", "NTHR"))):
            ax.bar(x + (i - 1) * 0.27, np.asarray(b["delta"][arm])[order], width=0.27, color=OKABE_ITO[i],
                   label=label)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("mixed prompt of probe batch 0 (sorted by GRPO's Δ(x))")
        ax.set_ylabel("Δ(x), nats")
        ax.legend(fontsize=8)
        ax.set_title(f"one SGD step (lr {b['lr']:.3g}): change of ln π of the correct responses (Fig. 4)", fontsize=9)
        out.append((save(fig, out_dir, "nthr_delta_x"), "Per-prompt Δ(x) after one step of GRPO, GRPO+Random "
                                                         "and NTHR (η = 0) on the same batch."))
    if source is not None:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        accuracy_panel(ax, source, "variant", ["grpo", "nthr"], labels={"grpo": "GRPO", "nthr": "NTHR"})
        ax.set_title("final eval accuracy per seed", fontsize=9)
        out.append((save(fig, out_dir, "nthr_accuracy"), "Final eval accuracy of GRPO and NTHR, per seed."))
    return out
