"""What must hold on this machine before a sweep or a run starts: the launcher options SLURM will be
given, the model and data paths, the device. ``grpolab sweep --dry-run`` runs every check the real
submit runs (validation, then these), so a dry run that passes means the submit will not refuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from trainer.knobs import ConfigError


def preflight_errors(cfgs: Iterable) -> list[str]:
    """One line per problem, each distinct problem once, over every cell's config."""
    errors: list[str] = []

    def add(problem: str) -> None:
        if problem not in errors:
            errors.append(problem)

    for cfg in cfgs:
        if cfg.launcher.name == "slurm":
            from sweeps.launch_slurm import check_launcher

            try:
                check_launcher(cfg.launcher)
            except ConfigError as e:
                add(str(e))
        if cfg.model.path is not None and not (Path(cfg.model.path) / "config.json").is_file():
            add(f"model.path={cfg.model.path!r}: no Hugging Face checkpoint there (no config.json)")
        jsonl = cfg.task.jsonl
        if cfg.task.name == "jsonl":
            for key in ("path", "eval_path"):
                path = getattr(jsonl, key)
                if path is not None and not Path(path).is_file():
                    add(f"task.jsonl.{key}={path!r}: no such file")
        if cfg.launcher.name == "local" and str(cfg.engine.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                add(f"engine.device={cfg.engine.device}: no CUDA device on this machine (torch.cuda.is_available() "
                    "is false); use engine.device=cpu, or launcher=slurm onto GPU nodes")
    return errors


def preflight(cfgs: Iterable) -> None:
    errors = preflight_errors(cfgs)
    if errors:
        raise ConfigError("\n".join(errors))
