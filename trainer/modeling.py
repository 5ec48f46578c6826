"""Policy construction: a tiny causal LM from a config, or any local HF checkpoint by path.

Both paths end in the same ``load_policy`` so the tiny model exercises the real loading code:
the tiny model is materialized once on disk (``save_pretrained``) and then loaded from there.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from trainer.config import ModelConfig
from trainer.tokenizer import build_char_tokenizer


def build_tiny(cfg: ModelConfig, out_dir: Path, seed: int) -> Path:
    """Write a randomly initialised tiny model and the char tokenizer to ``out_dir``; return it."""
    tok = build_char_tokenizer()
    hf_cfg = _tiny_config(cfg, tok)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf_cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def tiny_parameter_count(cfg: ModelConfig) -> int:
    """Parameters of the tiny model ``cfg`` builds, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_tiny_config(cfg, build_char_tokenizer()))
    return sum(p.numel() for p in model.parameters())


def _tiny_config(cfg: ModelConfig, tok):
    return AutoConfig.for_model(
        cfg.arch,
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


# Text every tokenizer a run uses must give back exactly: spaces, newlines, tabs, punctuation.
ROUND_TRIP_PROBE = "A says: B is a knave.\nC\tsaid  \"1 + 2 = 3\", (x) [y] {z}."


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, exactly as serialized.

    ``AutoTokenizer`` may pick the class of the checkpoint's model type (transformers 5 loads
    grpolab's char tokenizer beside a Qwen2 config as ``Qwen2Tokenizer``, which drops every space
    and newline). When the class it picks does not give text back while the serialized
    ``tokenizer.json`` does, the serialized one is used: the text a run trains on is the text its
    task wrote."""
    path = Path(path)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not _round_trips(tok) and (path / "tokenizer.json").is_file():
        exact = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
        if _round_trips(exact):
            tok = exact
    tok.padding_side = "left"  # generation appends on the right
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _round_trips(tok, text: str = ROUND_TRIP_PROBE) -> bool:
    return tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def load_policy(path: str | Path, dtype: torch.dtype = torch.float32):
    """Load a local HF causal LM; never touches the hub (``local_files_only``)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model.path={str(path)!r} is not a local Hugging Face checkpoint (no config.json there)"
        )
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return model
