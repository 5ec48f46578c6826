"""Supervised warm start on solver-written answers, cached by its config hash.

GRPO learns only from groups that mix right and wrong answers, so a randomly initialised tiny
model (success rate 0) gives no signal. A short SFT stage lifts it to a success rate strictly
between 0 and 1. Every run of a sweep shares it: the checkpoint is keyed by the hash of what
determines it (model, task, SFT config) and built once under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from trainer.config import Config
from trainer.identity import stable_hash
from trainer.modeling import build_tiny, load_policy, load_tokenizer
from trainer.progress import duration
from trainer.tasks import Task


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def base_model_dir(cfg: Config) -> Path:
    """The policy before any training: ``model.path``, or the tiny model materialised in the cache."""
    if cfg.model.path:
        return Path(cfg.model.path)
    out = Path(cfg.paths.cache_dir) / "tiny" / stable_hash(cfg.model)
    with file_lock(out.with_suffix(".lock")):
        if not (out / "config.json").is_file():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            build_tiny(cfg.model, tmp, seed=cfg.model.init_seed)
            tmp.rename(out)
    return out


def warm_start_dir(cfg: Config, task: Task, log=print) -> Path:
    """Directory of the checkpoint GRPO starts from (built on first use, then reused)."""
    base = base_model_dir(cfg)
    if not cfg.sft.enabled or cfg.sft.steps == 0:
        return base
    key = stable_hash({"model": cfg.model, "task": cfg.task, "sft": cfg.sft})
    out = Path(cfg.paths.cache_dir) / "sft" / key
    if not (out / "sft.json").is_file():
        log(f"warm start: training SFT {key} ({cfg.sft.steps} steps, once for every run of this model, task and "
            f"SFT config) -> {out}")
    with file_lock(out.with_suffix(".lock")):
        if (out / "sft.json").is_file():
            log(f"warm start reused from the cache: {out}")
            return out
        t0 = time.time()
        model = load_policy(base)
        tok = load_tokenizer(base)
        final_loss = train_sft(model, tok, task, cfg)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "sft.json").write_text(json.dumps({"final_loss": final_loss, "seconds": time.time() - t0}))
        tmp.rename(out)
        log(f"warm start built in {duration(time.time() - t0)}, final loss {final_loss:.3f}")
    return out


def sft_batch(tok, examples, device):
    """Prompt + solution + EOS, right padded; labels only on the solution and EOS."""
    rows, labels = [], []
    for ex in examples:
        p = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        s = tok(ex.solution, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append(p + s)
        labels.append([-100] * len(p) + s)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, target) in enumerate(zip(rows, labels)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(target)] = torch.tensor(target)
        att[i, : len(r)] = 1
    return ids.to(device), att.to(device), lab.to(device)


def train_sft(model, tok, task: Task, cfg: Config) -> float:
    rng = random.Random(cfg.sft.seed)
    torch.manual_seed(cfg.sft.seed)
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(cfg.sft.steps, 1))
    model.train()
    loss_val = float("nan")
    for _ in range(cfg.sft.steps):
        ids, att, lab = sft_batch(tok, rng.sample(task.train, min(cfg.sft.batch_size, len(task.train))), device)
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_val = float(loss.detach())
    return loss_val
