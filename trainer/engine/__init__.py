"""Optimizer-step engines behind one interface; chosen by ``engine.backend``.

Both engines: ``.module`` (run forwards on it), ``.rank``, ``.world_size``, ``.device``,
``backward(loss)`` per micro-batch (loss pre-normalized by the mini-batch), ``step() -> float``
(pre-clip global grad norm) per mini-batch, ``save_checkpoint(dir)`` / ``load_checkpoint(dir)``,
``export_hf(dir)``. DeepSpeed is imported only when ``engine.backend=deepspeed`` is built.
"""

from __future__ import annotations

from trainer.engine.torch_engine import TorchEngine

ENGINES = ("torch", "deepspeed")


def build_engine(backend: str, model, optim_cfg, engine_cfg=None, **engine_kwargs):
    """The engine named ``backend`` over ``model``; ``engine_kwargs`` go to the DeepSpeed engine
    (``micro_batch_per_gpu``, DeepSpeed's batch bookkeeping only)."""
    backend = getattr(backend, "value", backend)
    if backend == "torch":
        return TorchEngine(model, optim_cfg)
    if backend == "deepspeed":
        from trainer.engine.deepspeed_engine import DeepSpeedEngine

        return DeepSpeedEngine(model, optim_cfg, engine_cfg, **engine_kwargs)
    raise ValueError(f"engine.backend={backend!r}: available engines are {', '.join(ENGINES)}")


__all__ = ["ENGINES", "TorchEngine", "build_engine"]
