"""Plain-torch engine: AdamW, global-norm clipping, one process. DeepSpeed implements the same API."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from trainer.config import OptimConfig


class TorchEngine:
    rank = 0
    world_size = 1

    def __init__(self, model: torch.nn.Module, cfg: OptimConfig):
        self.model = model
        self.cfg = cfg
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            weight_decay=cfg.weight_decay,
        )

    @property
    def module(self) -> torch.nn.Module:
        """The model to run forwards on (the same object as ``model``)."""
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        """Clip, step, zero grads; return the pre-clip global grad norm."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def save_checkpoint(self, ckpt_dir: str | Path, client_state: Optional[dict] = None) -> None:
        """Weights, optimizer and ``client_state`` in ``ckpt_dir/engine.pt`` (DeepSpeedEngine's API)."""
        ckpt_dir = Path(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({**self.state_dict(), "client_state": client_state or {}}, ckpt_dir / "engine.pt")

    def load_checkpoint(self, ckpt_dir: str | Path) -> dict:
        """Restore what ``save_checkpoint`` wrote; returns its ``client_state``."""
        state = torch.load(Path(ckpt_dir) / "engine.pt", map_location=self.device, weights_only=True)
        self.load_state_dict(state)
        return state.get("client_state", {})

    def export_hf(self, model_dir: str | Path, tokenizer: Any = None) -> Path:
        """Save the policy as a Hugging Face checkpoint that ``model.path`` can load."""
        model_dir = Path(model_dir)
        self.model.save_pretrained(model_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(model_dir)
        return model_dir
