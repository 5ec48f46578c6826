"""Typed configuration: every knob of a run, namespaced, documented, range-checked.

Plain dataclasses (no Hydra import) so the pure tensor functions can take ``AlgorithmConfig``
directly; ``sweeps.configstore`` registers ``Config`` with Hydra's ConfigStore so an unknown key
or a wrongly typed value fails at compose time. Ranges live next to each field (``knob(...)``) and
are checked by ``validate``, which names the full key, the value and what is valid.
Symbols the papers reuse (β, η, α, ε) never appear bare: see ALGORITHMS.md §0.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional


def knob(default: Any, help: str, **bounds: Any) -> Any:
    """A config field with its documentation and bounds (ge, gt, le, lt) as metadata."""
    meta = {"help": help, **bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


# ---------------------------------------------------------------- enums (compose-time choices)
class TaskName(str, Enum):
    arithmetic = "arithmetic"
    knights_knaves = "knights_knaves"
    jsonl = "jsonl"


class PolicyLoss(str, Enum):
    ppo_clip = "ppo_clip"  # token-level ratio (GRPO / DAPO / Dr.GRPO)
    gspo = "gspo"  # sequence-level ratio (GSPO)


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


class AdvantageScale(str, Enum):
    group = "group"  # std of the prompt's group (GRPO)
    batch = "batch"  # std of the whole rollout batch


class BatchingMode(str, Enum):
    shuffled = "shuffled"
    query_preserved = "query_preserved"


class RolloutBackend(str, Enum):
    hf = "hf"


class EngineBackend(str, Enum):
    torch = "torch"


class LauncherName(str, Enum):
    local = "local"


class TrackerName(str, Enum):
    none = "none"


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
    arithmetic: ArithmeticTaskConfig = section(ArithmeticTaskConfig, "task=arithmetic options.")
    knights_knaves: KnightsKnavesTaskConfig = section(KnightsKnavesTaskConfig, "task=knights_knaves options.")
    jsonl: JsonlTaskConfig = section(JsonlTaskConfig, "task=jsonl options.")


@dataclass
class AdvantageConfig:
    std_normalize: bool = knob(True, "Divide by the group std (GRPO); false = Dr.GRPO's mean-centering only.")
    std_unbiased: bool = knob(True, "Bessel-corrected std (torch.std; TRL and verl) instead of population std.")
    scale: AdvantageScale = knob(AdvantageScale.group, "Std over the prompt's group or over the batch.")
    eps: float = knob(1e-6, "Added to the std (ALGORITHMS.md §1).", ge=0.0)


@dataclass
class ClipConfig:
    low: float = knob(0.2, "ε_low: ratio floor 1−ε_low.", ge=0.0, lt=1.0)
    high: float = knob(0.2, "ε_high: ratio ceiling 1+ε_high (DAPO clip-higher: 0.28).", ge=0.0)
    dual: Optional[float] = knob(None, "Dual-clip c > 1 bounding the loss for A < 0 (AR-Lopti: 10); null = off.", gt=1.0)


@dataclass
class KLConfig:
    coef: float = knob(0.0, "GRPO's β: KL coefficient; 0 skips the reference model entirely.", ge=0.0)
    estimator: KLEstimator = knob(KLEstimator.k3, "k1 = ℓ−ℓ_ref, k2 = ½(ℓ−ℓ_ref)², k3 = e^{ℓ_ref−ℓ} − (ℓ_ref−ℓ) − 1.")
    placement: KLPlacement = knob(KLPlacement.loss, "In the loss, or folded into the reward.")


@dataclass
class AlgorithmConfig:
    name: str = knob("grpo", "Variant label (W&B job_type, table rows); no behaviour hangs on it.")
    loss: PolicyLoss = knob(PolicyLoss.ppo_clip, "Policy-loss function from the registry.")
    advantage: AdvantageConfig = section(AdvantageConfig, "Group-relative advantage options.")
    clip: ClipConfig = section(ClipConfig, "PPO clip ε (asymmetric) and dual clip.")
    kl: KLConfig = section(KLConfig, "KL to the frozen reference policy.")
    loss_agg: LossAgg = knob(LossAgg.token_mean, "Loss normalizer; always the mini-batch's, never a micro-batch's.")
    loss_agg_max_len: Optional[int] = knob(None, "Dr.GRPO constant length for seq_mean_token_sum_norm; null = rollout.max_new_tokens.", ge=1)
    ppo_epochs: int = knob(1, "μ: passes over each rollout batch.", ge=1)
    entropy_coef: float = knob(0.0, "Entropy bonus coefficient (entropy is logged either way).", ge=0.0)
    mask_truncated: bool = knob(False, "Drop completions that hit max_new_tokens without EOS from the loss.")


@dataclass
class BatchingConfig:
    mode: BatchingMode = knob(BatchingMode.shuffled, "How a rollout batch is cut into mini-batches.")
    mini_batch_size: int = knob(256, "Responses per optimizer step.", ge=1)
    micro_batch_size: int = knob(128, "Responses per forward/backward (accumulation; never changes the math).", ge=1)


@dataclass
class RolloutConfig:
    backend: RolloutBackend = knob(RolloutBackend.hf, "Generation engine behind the rollout interface.")
    n: int = knob(8, "G: responses sampled per prompt.", ge=2)
    prompts_per_step: int = knob(64, "Prompts per rollout batch (batch = prompts_per_step · n responses).", ge=1)
    max_new_tokens: int = knob(8, "Completion length cap; longer ones are truncated.", ge=1)
    temperature: float = knob(1.0, "Sampling temperature (log-probs are of the tempered distribution).", gt=0.0)
    top_p: float = knob(1.0, "Nucleus sampling mass.", gt=0.0, le=1.0)
    top_k: int = knob(0, "Top-k sampling; 0 = off.", ge=0)
    eval_n: int = knob(4, "Samples per eval prompt: eval/accuracy = mean correctness (pass@1), eval/pass@k unbiased.", ge=1)
    eval_temperature: Optional[float] = knob(None, "Eval sampling temperature; null = rollout.temperature, 0 = greedy (eval_n must be 1).", ge=0.0)


@dataclass
class EngineConfig:
    backend: EngineBackend = knob(EngineBackend.torch, "Optimizer-step engine.")
    device: str = knob("cpu", "torch device (cpu, cuda, auto).")
    threads: int = knob(0, "torch intra-op threads per run; 0 = launcher's threads_per_job.", ge=0)


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
    stop_on_nonfinite: bool = knob(True, "A non-finite loss ends the run as failed (step and cause recorded).")


@dataclass
class SFTConfig:
    enabled: bool = knob(True, "Warm-start with supervised steps on solver-written answers.")
    steps: int = knob(400, "SFT optimizer steps.", ge=0)
    batch_size: int = knob(64, "SFT examples per step.", ge=1)
    lr: float = knob(1e-3, "SFT learning rate.", gt=0.0)
    seed: int = knob(0, "SFT seed: fixed so every run of a sweep starts from the same policy.", ge=0)


@dataclass
class LauncherConfig:
    name: LauncherName = knob(LauncherName.local, "Where cells run.")
    max_parallel: int = knob(2, "Cells running at once.", ge=1)
    threads_per_job: int = knob(1, "torch threads per cell (cores / max_parallel on a laptop).", ge=1)


@dataclass
class TrackerConfig:
    name: TrackerName = knob(TrackerName.none, "Experiment tracker fed from the run record (none = record only).")


@dataclass
class SweepConfig:
    params: Dict[str, str] = knob({}, "Swept keys → Hydra sweep values, e.g. {algorithm.kl.coef: '0,0.05'}.")
    seeds: List[int] = knob([0], "Replication axis: every cell runs once per seed.")
    id: Optional[str] = knob(None, "Sweep id (dir name); null = timestamp.")


@dataclass
class PathsConfig:
    output_root: str = knob("outputs", "Sweeps and runs are written under here.")
    cache_dir: str = knob(".cache/grpolab", "Tiny model, SFT warm starts (keyed by config hash).")


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
    sft: SFTConfig = section(SFTConfig, "Supervised warm start.")
    launcher: LauncherConfig = section(LauncherConfig, "Launcher.")
    tracker: TrackerConfig = section(TrackerConfig, "Tracker.")
    sweep: SweepConfig = section(SweepConfig, "Sweep definition.")
    paths: PathsConfig = section(PathsConfig, "Output and cache locations.")


# Keys that never change results: excluded from the config hash that identifies a cell.
NON_RESULT_KEYS = ("seed", "launcher", "tracker", "sweep", "paths")


# ---------------------------------------------------------------- validation
class ConfigError(ValueError):
    """A config value out of range or inconsistent; the message names key, value and what is valid."""


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_OK = {
    "ge": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "le": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
}


def _range_errors(obj: Any, prefix: str) -> list[str]:
    errors = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            errors += _range_errors(value, key + ".")
            continue
        if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if isinstance(value, float) and math.isnan(value):
            errors.append(f"{key}={value}: must be a number, not NaN")
            continue
        for bound, limit in f.metadata.items():
            if bound in _BOUND_OK and not _BOUND_OK[bound](value, limit):
                errors.append(f"{key}={value}: must be {_BOUND_TEXT[bound]} {limit}")
    return errors


def _cross_errors(cfg: Config) -> list[str]:
    errors = []
    m = cfg.model
    if m.path is None and m.num_heads % m.num_kv_heads:
        errors.append(f"model.num_kv_heads={m.num_kv_heads}: must divide model.num_heads={m.num_heads}")
    if m.path is None and m.hidden_size % m.num_heads:
        errors.append(f"model.hidden_size={m.hidden_size}: must be a multiple of model.num_heads={m.num_heads}")
    b, r = cfg.batching, cfg.rollout
    batch = r.prompts_per_step * r.n
    if b.mini_batch_size > batch or batch % b.mini_batch_size:
        errors.append(
            f"batching.mini_batch_size={b.mini_batch_size}: must divide the rollout batch "
            f"rollout.prompts_per_step·rollout.n = {r.prompts_per_step}·{r.n} = {batch}"
        )
    if b.mini_batch_size % b.micro_batch_size:
        errors.append(
            f"batching.micro_batch_size={b.micro_batch_size}: must divide batching.mini_batch_size={b.mini_batch_size}"
        )
    if b.mode == BatchingMode.query_preserved and b.mini_batch_size % r.n:
        errors.append(
            f"batching.mini_batch_size={b.mini_batch_size}: batching.mode=query_preserved keeps whole groups, "
            f"so it must be a multiple of rollout.n={r.n}"
        )
    t = cfg.task
    if t.name == TaskName.jsonl and not t.jsonl.path:
        errors.append("task.jsonl.path=null: task=jsonl needs a local JSONL/Parquet file")
    if t.name == TaskName.arithmetic and t.arithmetic.max_operand < t.arithmetic.min_operand:
        errors.append(
            f"task.arithmetic.max_operand={t.arithmetic.max_operand}: must be >= task.arithmetic.min_operand={t.arithmetic.min_operand}"
        )
    bad_ops = [op for op in t.arithmetic.ops if op not in ("+", "-", "*")]
    if bad_ops:
        errors.append(f"task.arithmetic.ops={t.arithmetic.ops}: each must be one of +, -, *")
    kk = t.knights_knaves
    if kk.style not in ("compact", "natural"):
        errors.append(f"task.knights_knaves.style={kk.style!r}: must be compact or natural")
    if kk.max_people < kk.min_people:
        errors.append(f"task.knights_knaves.max_people={kk.max_people}: must be >= min_people={kk.min_people}")
    if r.eval_temperature == 0 and r.eval_n != 1:
        errors.append(f"rollout.eval_n={r.eval_n}: greedy eval (rollout.eval_temperature=0) gives one answer per prompt; set eval_n=1")
    if cfg.engine.device not in ("cpu", "cuda", "auto") and not cfg.engine.device.startswith("cuda:"):
        errors.append(f"engine.device={cfg.engine.device!r}: must be cpu, cuda, cuda:N or auto")
    return errors


def validate(cfg: Config) -> Config:
    """Raise ``ConfigError`` listing every bad key (not just the first); return ``cfg`` if fine."""
    errors = _range_errors(cfg, "") + _cross_errors(cfg)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return cfg


# ---------------------------------------------------------------- identity
def to_dict(obj: Any) -> Any:
    """JSON-able nested dict of a config dataclass (enums as their values)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def stable_hash(obj: Any, length: int = 12) -> str:
    import hashlib
    import json

    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def config_hash(cfg: Config) -> str:
    """Identity of a cell: everything that changes results except the seed (runs of one cell share it)."""
    d = to_dict(cfg)
    return stable_hash({k: v for k, v in d.items() if k not in NON_RESULT_KEYS})


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
