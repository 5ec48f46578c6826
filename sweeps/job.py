"""The unit a launcher runs: one (config, seed) cell writing one run record. Picklable for submitit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.config import Config


@dataclass
class CellJob:
    cfg: Config
    run_dir: str
    meta: dict

    def __call__(self) -> dict:
        from trainer.run import run_training  # heavy imports happen in the job process

        return run_training(self.cfg, Path(self.run_dir), self.meta, log=lambda *a: print(*a, flush=True))
