"""DeepSpeed engine = TorchEngine, step for step, under our accumulation contract.

Contract (trainer/grpo.py ``update``): a varying number of ``backward(micro_loss)`` per mini-batch,
each micro loss already divided by the whole mini-batch's normalizer (token count), then one
``step()`` that returns the pre-clip global grad norm. N ranks each take 1/N of every mini-batch and
still normalize by the global count; DeepSpeed's rank *averaging* is compensated inside the engine,
so the update is the single-process one.

Reference values come from ``TorchEngine`` (plain AdamW + clip_grad_norm_) on the same tiny Qwen2.
Tolerances (fp32): grad norms rtol 1e-5; parameters atol 1e-5 (observed: ZeRO 0/1/2 in one process
bit-identical; ZeRO-3 and two ranks ≤ 3e-7 at lr 1e-3: different summation order, which Adam
amplifies on near-zero gradients such as the softmax-invariant k_proj bias).
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from trainer import distributed
from trainer.config import EngineConfig, ModelConfig, OptimConfig, Precision
from trainer.engine import TorchEngine, build_engine
from trainer.engine.ds_config import deepspeed_config
from trainer.modeling import build_tiny, load_policy

# DeepSpeed 0.19.8 calls torch.distributed functions torch 2.13 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.distributed\..*` is deprecated:FutureWarning")

needs_ds = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed not installed (DS_BUILD_OPS=0 pip install -c constraints/cpu.txt -e '.[deepspeed]')",
)

OPTIM = OptimConfig(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=0.5)  # the clip is active
STEPS, BATCH, SEQ = 4, 8, 10
# Micro-batches per step, in quarters of the mini-batch: the count varies from step to step.
MICRO_QUARTERS = [[1, 1, 1, 1], [4], [1, 3], [1, 1, 2]]
NORM_RTOL, PARAM_ATOL = 1e-5, 1e-5


# ---------------------------------------------------------------- shared helpers (also run in spawned ranks)
def make_batches(vocab: int, steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (steps, BATCH, SEQ), generator=g)
    mask = (torch.rand(steps, BATCH, SEQ - 1, generator=g) > 0.3).float()  # ragged "completion" tokens
    return ids, mask


def micro_loss(model, ids, mask, normalizer):
    """Masked NLL summed over the micro-batch, divided by the MINI-batch's token count."""
    logits = model(input_ids=ids).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return -(logp * mask).sum() / normalizer


def train(engine, ids, mask, steps: range, rank: int = 0, world: int = 1):
    """Our trainer's loop: shard each mini-batch over ranks, several backward per rank, one step."""
    losses, norms = [], []
    engine.module.train()
    for s in steps:
        normalizer = mask[s].sum()  # global: the whole mini-batch's tokens
        mine = distributed.shard(torch.arange(BATCH), rank, world)
        sizes = [q * len(mine) // 4 for q in MICRO_QUARTERS[s % len(MICRO_QUARTERS)]]
        loss = torch.zeros(())
        for idx in mine.split(sizes):
            micro = micro_loss(engine.module, ids[s, idx].to(engine.device), mask[s, idx].to(engine.device), normalizer)
            engine.backward(micro)
            loss += micro.detach().cpu()
        losses.append(float(distributed.all_reduce_sum(loss)))
        norms.append(engine.step())
    return losses, norms


def probe_logits(engine, ids) -> torch.Tensor:
    engine.module.eval()
    with torch.no_grad():
        return engine.module(input_ids=ids[0, :2].to(engine.device)).logits.float().cpu()


def params_of(engine) -> dict[str, torch.Tensor]:
    return (
        engine.full_state_dict()
        if hasattr(engine, "full_state_dict")
        else {k: v.detach().clone() for k, v in engine.model.state_dict().items()}
    )


def assert_params_close(got: dict, want: dict) -> None:
    assert set(got) <= set(want) and got
    for name, value in got.items():
        torch.testing.assert_close(value, want[name], rtol=0, atol=PARAM_ATOL, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    cfg = ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    return build_tiny(cfg, tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def data(tiny_dir):
    return make_batches(load_policy(tiny_dir).config.vocab_size)


@pytest.fixture(scope="module")
def reference(tiny_dir, data):
    """TorchEngine on whole mini-batches: the single-process truth."""
    torch.manual_seed(0)
    engine = TorchEngine(load_policy(tiny_dir), OPTIM)
    losses, norms = train(engine, *data, range(STEPS))
    return {"losses": losses, "norms": norms, "params": params_of(engine), "logits": probe_logits(engine, data[0])}


@pytest.fixture(scope="module")
def in_process_group():
    """In-process DeepSpeed engines share one world-1 gloo group; undo it (and the env) afterwards."""
    saved = dict(os.environ)
    torch.set_num_threads(1)  # tiny matrices: extra threads only spin on a 2-core box
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


def ds_engine(tiny_dir, stage: int, **engine_kw):
    return build_engine("deepspeed", load_policy(tiny_dir), OPTIM, EngineConfig(zero_stage=stage, **engine_kw))


# ---------------------------------------------------------------- the generated config
def test_config_owns_the_accumulation_boundary_and_never_divides_by_it():
    cfg = deepspeed_config(EngineConfig(zero_stage=2), OPTIM, micro_batch_per_gpu=4, world_size=2, on_gpu=False)
    assert cfg["managed_gradient_accumulation"] is False
    assert cfg["gradient_accumulation_steps"] == 1
    assert cfg["train_batch_size"] == 4 * 1 * 2
    assert cfg["zero_optimization"]["stage"] == 2


def test_config_carries_adamw_and_clip_from_optim():
    cfg = deepspeed_config(EngineConfig(), OPTIM, micro_batch_per_gpu=1, world_size=1, on_gpu=False)
    assert cfg["optimizer"] == {
        "type": "AdamW",
        "params": {"lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1, "torch_adam": True},
    }
    assert cfg["gradient_clipping"] == 0.5


@pytest.mark.parametrize(
    "precision,on_gpu,bf16",
    [("auto", False, False), ("fp32", False, False), ("auto", True, True), ("bf16", True, True), ("fp32", True, False)],
)
def test_config_precision(precision, on_gpu, bf16):
    cfg = deepspeed_config(
        EngineConfig(precision=Precision(precision)), OPTIM, micro_batch_per_gpu=1, world_size=1, on_gpu=on_gpu
    )
    assert cfg["bf16"]["enabled"] is bf16


@pytest.mark.parametrize(
    "engine_kw,key",
    [
        ({"precision": Precision.bf16}, "engine.precision=bf16"),
        ({"zero_stage": 0, "offload_optimizer": True}, "engine.offload_optimizer=true"),
        ({"zero_stage": 2, "offload_params": True}, "engine.offload_params=true"),
    ],
)
def test_config_rejects_impossible_combinations_naming_the_key(engine_kw, key):
    with pytest.raises(ValueError, match=key):
        deepspeed_config(EngineConfig(**engine_kw), OPTIM, micro_batch_per_gpu=1, world_size=1, on_gpu=False)


def test_config_offload_sections():
    cfg = deepspeed_config(
        EngineConfig(zero_stage=3, offload_optimizer=True, offload_params=True),
        OPTIM,
        micro_batch_per_gpu=1,
        world_size=1,
        on_gpu=True,
    )
    zero = cfg["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": True}


def test_user_json_is_deep_merged_and_wins(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(
        json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}, "optimizer": {"params": {"torch_adam": False}}})
    )
    cfg = deepspeed_config(
        EngineConfig(zero_stage=1, ds_config=str(path)), OPTIM, micro_batch_per_gpu=1, world_size=1, on_gpu=False
    )
    assert cfg["zero_optimization"] == {"stage": 1, "reduce_bucket_size": 1000}
    assert cfg["optimizer"]["params"]["torch_adam"] is False
    assert cfg["optimizer"]["params"]["lr"] == 1e-3


@pytest.mark.parametrize(
    "preset,stage",
    [
        ("deepspeed_zero0", 0),
        ("deepspeed_zero1", 1),
        ("deepspeed_zero2", 2),
        ("deepspeed_zero3", 3),
        ("deepspeed_zero3_offload", 3),
    ],
)
def test_engine_presets_compose_into_a_deepspeed_config(preset, stage):
    from sweeps.compose import compose
    from trainer.validation import validate

    engine_cfg = validate(compose([f"engine={preset}"])).engine
    assert engine_cfg.backend.value == "deepspeed"
    cfg = deepspeed_config(engine_cfg, OPTIM, micro_batch_per_gpu=1, world_size=1, on_gpu=False)
    assert cfg["zero_optimization"]["stage"] == stage


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"engine.backend='megatron'.*engines are torch, deepspeed$"):
        build_engine("megatron", torch.nn.Linear(2, 2), OPTIM)


def test_shard_splits_a_minibatch_into_disjoint_covering_slices():
    idx = torch.arange(10)
    parts = [distributed.shard(idx, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx) and [len(p) for p in parts] == [4, 3, 3]


# ---------------------------------------------------------------- one process
ONE_PROCESS_CASES = {
    "zero0": dict(zero_stage=0),
    "zero1": dict(zero_stage=1),
    "zero2": dict(zero_stage=2),
    "zero3": dict(zero_stage=3),
    "zero2_offload_optimizer": dict(zero_stage=2, offload_optimizer=True),
    "zero3_offload_all": dict(zero_stage=3, offload_optimizer=True, offload_params=True),
}


@needs_ds
@pytest.mark.parametrize("case", list(ONE_PROCESS_CASES))
def test_one_process_zero_matches_torch_engine(case, tiny_dir, data, reference, in_process_group):
    engine = build_engine("deepspeed", load_policy(tiny_dir), OPTIM, EngineConfig(**ONE_PROCESS_CASES[case]))
    assert (engine.rank, engine.world_size, engine.device.type) == (0, 1, "cpu")
    losses, norms = train(engine, *data, range(STEPS))
    assert engine.ds.global_steps == STEPS  # one optimizer step per mini-batch, whatever the micro count
    assert losses == pytest.approx(reference["losses"], rel=NORM_RTOL)
    assert norms == pytest.approx(reference["norms"], rel=NORM_RTOL)
    assert_params_close(params_of(engine), reference["params"])


@pytest.mark.parametrize("stage", ["torch", *(pytest.param(z, marks=needs_ds) for z in (0, 2, 3))])
def test_checkpoint_resume_equals_uninterrupted_run(stage, tiny_dir, data, reference, tmp_path, request):
    if stage != "torch":
        request.getfixturevalue("in_process_group")
    make = (
        (lambda: TorchEngine(load_policy(tiny_dir), OPTIM))
        if stage == "torch"
        else (lambda: ds_engine(tiny_dir, stage))
    )
    first = make()
    train(first, *data, range(2))
    first.save_checkpoint(tmp_path / "ckpt", client_state={"step": 2})
    del first
    resumed = make()  # fresh weights and optimizer: everything must come from the checkpoint
    assert resumed.load_checkpoint(tmp_path / "ckpt") == {"step": 2}
    losses, norms = train(resumed, *data, range(2, STEPS))
    assert losses == pytest.approx(reference["losses"][2:], rel=NORM_RTOL)
    assert norms == pytest.approx(reference["norms"][2:], rel=NORM_RTOL)
    assert_params_close(params_of(resumed), reference["params"])


@needs_ds
def test_one_process_export_hf_reloads_with_the_same_logits(tiny_dir, data, in_process_group, tmp_path):
    from transformers import AutoModelForCausalLM

    engine = ds_engine(tiny_dir, 3)
    train(engine, *data, range(1))
    engine.export_hf(tmp_path / "hf")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    with torch.no_grad():
        got = reloaded(input_ids=data[0][0, :2]).logits
    torch.testing.assert_close(got, probe_logits(engine, data[0]), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- two processes (gloo, spawn)
def _rank_main(rank, world, model_dir, stage, port, out_dir):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    model = load_policy(model_dir)
    ids, mask = make_batches(model.config.vocab_size)
    engine = build_engine("deepspeed", model, OPTIM, EngineConfig(zero_stage=stage))
    losses, norms = train(engine, ids, mask, range(STEPS), rank, world)
    params = engine.full_state_dict()  # collective
    logits = probe_logits(engine, ids)  # collective under ZeRO-3
    engine.export_hf(out_dir / "hf")  # collective, rank 0 writes
    if rank == 0:
        torch.save({"losses": losses, "norms": norms, "params": params, "logits": logits}, out_dir / "result.pt")


@pytest.fixture(scope="module")
def two_ranks(tiny_dir, tmp_path_factory):
    """One 2-rank run per ZeRO stage, shared by the tests that inspect it."""
    runs = {}

    def run(stage: int):
        if stage not in runs:
            out = tmp_path_factory.mktemp(f"zero{stage}x2")
            mp.spawn(_rank_main, args=(2, tiny_dir, stage, distributed.free_port(), out), nprocs=2, join=True)
            runs[stage] = {**torch.load(out / "result.pt"), "hf": out / "hf"}
        return runs[stage]

    return run


@needs_ds
@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_equal_one_process(stage, two_ranks, reference):
    got = two_ranks(stage)
    assert got["losses"] == pytest.approx(reference["losses"], rel=NORM_RTOL)
    assert got["norms"] == pytest.approx(reference["norms"], rel=NORM_RTOL)
    assert_params_close(got["params"], reference["params"])


@needs_ds
def test_two_rank_zero3_export_hf_reloads_with_the_same_logits(two_ranks, reference):
    from transformers import AutoModelForCausalLM

    got = two_ranks(3)
    reloaded = AutoModelForCausalLM.from_pretrained(got["hf"], local_files_only=True).eval()
    ids, _ = make_batches(reloaded.config.vocab_size)
    with torch.no_grad():
        logits = reloaded(input_ids=ids[0, :2]).logits
    torch.testing.assert_close(logits, got["logits"], rtol=0, atol=1e-6)  # what the engine computed
    torch.testing.assert_close(logits, reference["logits"], rtol=0, atol=1e-4)  # and the 1-process policy
