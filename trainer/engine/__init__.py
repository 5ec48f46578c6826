"""Optimizer-step engines behind one interface; chosen by ``engine.backend``."""

from trainer.engine.torch_engine import TorchEngine


def build_engine(backend: str, model, optim_cfg):
    if backend == "torch":
        return TorchEngine(model, optim_cfg)
    raise ValueError(f"engine.backend={backend!r}: available engines are ['torch']")


__all__ = ["TorchEngine", "build_engine"]
