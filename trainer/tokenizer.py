"""A character-level tokenizer built locally: no hub download, saved and loaded like any HF tokenizer.

Character level because the tasks are short symbolic strings and a tiny model learns them fast; it
is wrapped as a ``PreTrainedTokenizerFast`` so the rest of the code treats it exactly like a real
checkpoint's tokenizer (``save_pretrained``, then ``trainer.modeling.load_tokenizer``, which keeps it
as serialized where ``AutoTokenizer`` would pick a class that drops whitespace).
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
ALPHABET = string.printable  # digits, letters, punctuation, whitespace


def build_char_tokenizer(alphabet: str = ALPHABET) -> PreTrainedTokenizerFast:
    """One token per character of ``alphabet`` plus pad/bos/eos/unk; left padding for generation."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in dict.fromkeys(alphabet):  # stable order, no duplicates
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )
