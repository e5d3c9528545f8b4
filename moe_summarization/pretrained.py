"""The pretrained baselines: BART fine-tuned on XSum, T5 with its ``summarize:`` prefix, and Llama-3-8B-Instruct
zero-shot (one-sentence prompt through its chat template), loaded from the hub or a local folder; what
``baselines.py`` and the benchmark run beside the architecture peers (``peers.py``, trained here from scratch).

Each runs when the hub (or a local model folder) and a GPU are available; otherwise it is reported as
``{"not_run": "<reason>"}``. The code path is the same for a tiny randomly initialised model of each class
(:func:`tiny_baseline`), which is how the tests run it offline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from moe_summarization.data import Doc
from shared_utils.errors import HubUnavailableError
from shared_utils.hub import from_pretrained, gated_message, hub_reachable, is_local, offline_requested


@dataclass(frozen=True)
class Baseline:
    model: str  # hub id (or a local folder)
    kind: str  # "seq2seq" (BART, T5) or "chat" (a causal LM with a chat template)
    prefix: str = ""  # prepended to the document (T5's task prefix)
    gated: bool = False  # the hub repository needs HF_TOKEN and access granted on its page


BASELINES = {
    "bart": Baseline("facebook/bart-large-xsum", "seq2seq"),
    "t5": Baseline("google-t5/t5-large", "seq2seq", prefix="summarize: "),
    "llama3": Baseline("meta-llama/Meta-Llama-3-8B-Instruct", "chat", gated=True),
}
UNGATED_HINT = {"llama3": "pass --llama3 with an ungated instruct model (e.g. Qwen/Qwen2.5-7B-Instruct)"}
PROMPT = "Summarize the following news article in one sentence.\n\n{document}"


def why_not(baseline: Baseline, device: torch.device, name: str = "") -> str | None:
    """The reason a baseline cannot run here, or None."""
    if device.type != "cuda":
        return "no GPU: the pretrained baselines are large models, run them where a GPU is available"
    if is_local(baseline.model):
        return None
    if offline_requested() or not hub_reachable():
        return f"the Hugging Face hub is not reachable to download {baseline.model} (pass a local folder)"
    if baseline.gated and not (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        return gated_message(baseline.model, UNGATED_HINT.get(name, "pass a local folder"))
    return None


def load(baseline: Baseline, device: torch.device, name: str = ""):
    """(model, tokenizer) from the hub or a local folder, in bf16 on the GPU."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    cls = AutoModelForSeq2SeqLM if baseline.kind == "seq2seq" else AutoModelForCausalLM
    hint = f"pass a local folder for {baseline.model}"
    gated_hint = UNGATED_HINT.get(name)
    model = from_pretrained(lambda path: cls.from_pretrained(path, dtype=torch.bfloat16), baseline.model,
                            local_hint=hint, gated_hint=gated_hint)
    tok = from_pretrained(AutoTokenizer.from_pretrained, baseline.model, local_hint=hint, gated_hint=gated_hint)
    return model.to(device).eval(), tok


def tiny_baseline(name: str, seed: int = 0):
    """(model, tokenizer) of the baseline's class at toy size, randomly initialised, with a word-level BPE
    and a minimal chat template: what the tests and ``make gpu-smoke`` run the real code path on, offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        T5Config,
        T5ForConditionalGeneration,
    )

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator([PROMPT.format(document="the bank raised rates as snow closed the airport")] * 3,
                            trainers.BpeTrainer(vocab_size=120, special_tokens=specials))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}Summary:{% endif %}")
    torch.manual_seed(seed)
    ids = dict(vocab_size=len(tok), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = {
        "bart": lambda: BartForConditionalGeneration(BartConfig(
            d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=256, decoder_start_token_id=2, **ids)),
        "t5": lambda: T5ForConditionalGeneration(T5Config(
            d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, decoder_start_token_id=0,
            **ids)),
        "llama3": lambda: LlamaForCausalLM(LlamaConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
            max_position_embeddings=512, **ids)),
    }[name]()
    return model.eval(), tok


@torch.no_grad()
def generate(model, tok, baseline: Baseline, documents: list[str], *, batch_size: int = 8, max_source: int = 1024,
             max_new_tokens: int = 60, num_beams: int = 4) -> list[str]:
    """One summary per document: beam search for seq2seq models, greedy chat completion for instruct LMs."""
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(documents), batch_size):
        batch = documents[start: start + batch_size]
        if baseline.kind == "seq2seq":
            enc = tok([baseline.prefix + d for d in batch], truncation=True, max_length=max_source, padding=True,
                      return_tensors="pt").to(device)
            ids = model.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens, no_repeat_ngram_size=3,
                                 early_stopping=True)
            out += [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
            continue
        tok.padding_side = "left"  # a causal LM continues from the right edge
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        prompts = [tok.apply_chat_template([{"role": "user", "content": PROMPT.format(document=d[:6000])}],
                                           tokenize=False, add_generation_prompt=True) for d in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        new = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        out += [(t.strip().splitlines() or [""])[0] for t in new]  # the first line is the one sentence asked for
    return out


def run_baselines(docs: list[Doc], device: torch.device, models: dict[str, str] | None = None,
                  scorer=None) -> dict[str, dict]:
    """Every baseline's metrics (through ``scorer(preds, refs)``) or ``{"not_run": reason}``."""
    results = {}
    for name, baseline in BASELINES.items():
        chosen = (models or {}).get(name)
        baseline = Baseline(chosen or baseline.model, baseline.kind, baseline.prefix,
                            gated=baseline.gated and not chosen)  # another model named by flag is not gated
        reason = why_not(baseline, device, name)
        if reason is None:
            try:
                model, tok = load(baseline, device, name)
            except HubUnavailableError as err:
                reason = str(err)
        if reason is not None:
            results[name] = {"not_run": reason}
            continue
        preds = generate(model, tok, baseline, [d.document for d in docs])
        results[name] = {"model": baseline.model, **scorer(preds, [d.summary for d in docs])}
        del model
        torch.cuda.empty_cache()
    return results
