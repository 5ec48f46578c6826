"""The tiny model goes through the same loading code as a real checkpoint (model.path)."""

import torch

from trainer.config import ModelConfig
from trainer.modeling import build_tiny, load_policy, load_tokenizer, tiny_parameter_count
from trainer.tokenizer import build_char_tokenizer


def test_char_tokenizer_round_trips_text():
    tok = build_char_tokenizer()
    text = "12+34=46\nA knight,B knave"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text


def test_tiny_model_saved_and_loaded_by_path(tmp_path):
    cfg = ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2)
    path = build_tiny(cfg, tmp_path / "ckpt", seed=0)
    model, tok = load_policy(path), load_tokenizer(path)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 5_000_000
    assert tok.padding_side == "left" and tok.eos_token == "<eos>"
    ids = tok("1+1=", return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (1, ids.shape[1] + 3) or out.shape[1] <= ids.shape[1] + 3


def test_same_seed_same_weights(tmp_path):
    cfg = ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2)
    a = load_policy(build_tiny(cfg, tmp_path / "a", seed=3))
    b = load_policy(build_tiny(cfg, tmp_path / "b", seed=3))
    c = load_policy(build_tiny(cfg, tmp_path / "c", seed=4))
    for (na, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), na
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="model.path"):
        load_policy(tmp_path / "nope")


def test_chat_template_wraps_prompts_when_the_checkpoint_has_one(tmp_path):
    """Instruct checkpoints ship a chat template: rollouts must use it; the char tokenizer has none."""
    import torch

    from trainer.config import ModelConfig
    from trainer.modeling import build_tiny, load_policy, load_tokenizer
    from trainer.rollout import SamplingParams, build_rollout
    from trainer.rollout.hf import format_prompt

    d = build_tiny(ModelConfig(hidden_size=32, intermediate_size=64, num_layers=2), tmp_path / "m", seed=0)
    tok = load_tokenizer(d)
    assert format_prompt(tok, "1+2=") == "1+2="
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}"
    )
    tok.save_pretrained(d)
    tok = load_tokenizer(d)  # the template survives save/load, as with a real checkpoint
    assert format_prompt(tok, "1+2=") == "<user>1+2=>"
    rollout = build_rollout("hf", load_policy(d), tok, torch.device("cpu"))
    batch = rollout.generate(["1+2="], SamplingParams(n=2, max_new_tokens=3))
    prompt_text = tok.decode(batch.input_ids[0, : batch.prompt_len], skip_special_tokens=True)
    assert prompt_text.endswith("<user>1+2=>")


def test_each_built_in_size_has_the_parameter_count_its_config_states(tmp_path):
    """conf/model/{tiny,small}.yaml say their size in their first line ("A 0.6M-parameter ..."); the
    model built from each file has that many parameters, to the stated digit."""
    import re
    from pathlib import Path

    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "model"
    counts = {}
    for name in ("tiny", "small"):
        text = (conf / f"{name}.yaml").read_text()
        stated = float(re.search(r"A ([\d.]+)M-parameter", text).group(1))
        fields = {k: v for k, v in OmegaConf.to_container(OmegaConf.create(text)).items() if k != "path"}
        model = load_policy(build_tiny(ModelConfig(**fields), tmp_path / name, seed=0))
        counts[name] = sum(p.numel() for p in model.parameters())
        assert tiny_parameter_count(ModelConfig(**fields)) == counts[name]  # what reports state, without a build
        assert round(counts[name] / 1e6, 1) == stated, (name, counts[name])
    assert counts["small"] > 3 * counts["tiny"]
