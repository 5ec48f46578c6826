"""Every knob grpolab and TRL's ``GRPOTrainer`` must agree on in ``trl_compare``: read from the
grpolab config, listed in the report, and turned into TRL's ``GRPOConfig``."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.config import Config


@dataclass(frozen=True)
class Settings:
    """Every knob both trainers must agree on, read from the grpolab config."""

    prompts: int
    n: int
    max_new_tokens: int
    mu: int
    mini: int
    micro: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    clip_low: float
    clip_high: float
    temperature: float
    top_p: float
    top_k: int

    @classmethod
    def of(cls, cfg: Config) -> "Settings":
        r, b, o, a = cfg.rollout, cfg.batching, cfg.optim, cfg.algorithm
        if a.loss_agg.value != "token_mean" or a.kl.coef != 0 or a.loss != "ppo_clip":
            raise SystemExit("the comparison pairs grpolab's ppo_clip + token_mean + kl.coef=0 with TRL's dapo loss")
        return cls(r.prompts_per_step, r.n, r.max_new_tokens, a.ppo_epochs, b.mini_batch_size, b.micro_batch_size,
                   o.lr, (o.beta1, o.beta2), o.weight_decay, o.grad_clip, a.clip.low, a.clip.high,
                   r.temperature, r.top_p, r.top_k)

    @property
    def batch(self) -> int:
        return self.prompts * self.n

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps per GRPO step: μ passes × mini-batches per pass."""
        return self.mu * self.batch // self.mini

    def lines(self) -> list[str]:
        return [
            f"G (TRL num_generations, grpolab rollout.n): {self.n}",
            f"prompts per step: {self.prompts} → {self.batch} completions per GRPO step",
            "max completion tokens (TRL max_completion_length, grpolab rollout.max_new_tokens): "
            f"{self.max_new_tokens}",
            f"μ (TRL num_iterations, grpolab algorithm.ppo_epochs): {self.mu}",
            f"mini-batch {self.mini} (TRL per_device_train_batch_size {self.micro} × gradient_accumulation_steps "
            f"{self.mini // self.micro}), micro-batch {self.micro}, TRL steps_per_generation "
            f"{self.batch // self.micro}: {self.optimizer_steps} optimizer steps per GRPO step on both",
            f"loss: token-mean aggregation (TRL loss_type=dapo, grpolab algorithm.loss_agg=token_mean), token-level "
            f"ratio clipped to [1−{self.clip_low:g}, 1+{self.clip_high:g}], group-std-scaled advantages, "
            "beta / kl.coef = 0 (no reference model), entropy computed (not in the loss) on both, "
            "shuffled mini-batches",
            f"optimizer: AdamW lr {self.lr:g} (constant), betas {self.betas}, weight decay {self.weight_decay:g}, "
            f"grad-norm clip {self.grad_clip:g}",
            f"sampling: temperature {self.temperature:g}, top_p {self.top_p:g}, top_k {self.top_k} (HF generate, "
            f"one batch of {self.batch} rows)",
            "TRL: bf16=False, use_cpu=True, gradient_checkpointing=False (TRL's default is True; grpolab does not "
            "checkpoint), report_to=none, save_strategy=no, logging_strategy=no, disable_tqdm, 0 dataloader workers",
            "grpolab: diagnostics.every=0 (TRL computes no update diagnostics), batching.mode=shuffled (TRL's)",
            "tokens: completion tokens (up to and including EOS); 'total' adds the prompts' non-pad tokens",
        ]


def trl_args(s: Settings, out_dir: str, max_steps: int, seed: int):
    """TRL's ``GRPOConfig`` with the same settings, on the CPU, with no logging, saving or progress bars."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out_dir,
        bf16=False, use_cpu=True, gradient_checkpointing=False,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=seed, max_steps=max_steps,
        per_device_train_batch_size=s.micro, gradient_accumulation_steps=s.mini // s.micro,
        steps_per_generation=s.batch // s.micro, num_generations=s.n, num_iterations=s.mu,
        max_completion_length=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
        loss_type="dapo", beta=0.0, epsilon=s.clip_low, epsilon_high=s.clip_high, scale_rewards="group",
        learning_rate=s.lr, adam_beta1=s.betas[0], adam_beta2=s.betas[1], weight_decay=s.weight_decay,
        max_grad_norm=s.grad_clip, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        remove_unused_columns=False, shuffle_dataset=True, log_completions=False,
    )
