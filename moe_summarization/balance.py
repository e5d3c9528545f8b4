"""The balance experiment: a tiny MoE language model trained on real news text under one balancing setting,
with the expert load of every MoE layer recorded at every step.

``bench_moe.py`` runs it for the four settings (none, switch_aux, z_loss, own); ``experiment.py`` runs one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from moe_summarization.attention import MultiHeadAttention
from moe_summarization.config import BALANCE_LAYER, MoEConfig, with_balancer
from moe_summarization.data import load_documents
from moe_summarization.moe import MoELayer
from moe_summarization.tokenizer import train_tokenizer
from shared_utils.data import shared_data
from shared_utils.runtime import seed_everything

DEFAULT_DATA = shared_data("summarization/train.jsonl")


@dataclass
class ExperimentConfig:
    data: str = DEFAULT_DATA
    documents: int = 4000  # documents of text used (the token stream is their concatenation)
    vocab_size: int = 4000
    num_heads: int = 4
    num_layers: int = 2  # every layer's FFN is an MoE layer
    moe: MoEConfig = field(default_factory=lambda: replace(BALANCE_LAYER))  # the balancer is set per run
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 600
    lr: float = 2e-3
    seed: int = 0


class TinyMoELM(nn.Module):
    """Pre-LN causal LM whose FFNs are all MoE layers; returns logits, summed aux loss and per-layer stats."""

    def __init__(self, vocab: int, cfg: ExperimentConfig, moe: MoEConfig):
        super().__init__()
        d_model = moe.d_model
        self.emb = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(cfg.seq_len, d_model)
        self.ln1 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(cfg.num_layers))
        self.attn = nn.ModuleList(MultiHeadAttention(d_model, cfg.num_heads) for _ in range(cfg.num_layers))
        self.ln2 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(cfg.num_layers))
        self.moe = nn.ModuleList(MoELayer(moe) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        for emb in (self.emb, self.pos):  # GPT-2 init: N(0, 1) embeddings would make the tied logits explode
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor):
        B, S = ids.shape
        x = self.emb(ids) + self.pos(torch.arange(S, device=ids.device))  # (B, S, D)
        causal = torch.ones(S, S, dtype=torch.bool, device=ids.device).tril()
        aux, stats = x.new_zeros(()), []
        for ln1, attn, ln2, moe in zip(self.ln1, self.attn, self.ln2, self.moe):
            h = ln1(x)
            x = x + attn(h, attn.project_kv(h), causal)
            result = moe(ln2(x), ids)
            x, aux = x + result.out, aux + result.aux_loss
            stats.append(result.stats)
        return self.ln_f(x) @ self.emb.weight.t(), aux, stats  # (B, S, V) tied output


def run(cfg: ExperimentConfig, balancer: str, *, progress: bool = True, device: torch.device | str = "cpu") -> dict:
    """Train one setting on ``device``; returns the per-step loss and per-layer load history."""
    seed_everything(cfg.seed)
    docs = load_documents(cfg.data, local_hint="pass --data PATH to a local JSONL file").records[: cfg.documents]
    texts = [d.document for d in docs]
    tok = train_tokenizer(texts, cfg.vocab_size)
    stream = torch.tensor([i for t in tok.encode_batch(texts) for i in t.ids], dtype=torch.long)
    moe_cfg = with_balancer(cfg.moe, balancer)
    model = TinyMoELM(tok.get_vocab_size(), cfg, moe_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = {"loss": [], "layers": [[] for _ in range(cfg.num_layers)]}
    start = time.perf_counter()
    for _ in tqdm(range(cfg.steps), desc=f"balance:{balancer}", disable=not progress):
        starts = torch.randint(0, stream.numel() - cfg.seq_len - 1, (cfg.batch_size,), generator=gen)
        window = torch.stack([stream[s: s + cfg.seq_len + 1] for s in starts.tolist()]).to(device)  # (B, S+1)
        logits, aux, stats = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history["loss"].append(float(loss.detach()))
        for layer, s in zip(history["layers"], stats):
            layer.append({k: s[k] for k in ("tokens_per_expert", "max_over_mean", "cv", "dropped_fraction",
                                             "router_entropy", "unused_experts")})
    history["seconds"] = time.perf_counter() - start
    return history


def late_summary(history: dict, fraction: float = 0.1) -> dict[str, float]:
    """Expert load over the last ``fraction`` of steps, for the worst MoE layer.

    ``max_over_mean_load`` and ``cv`` use the tokens each expert received over that whole window (the load an
    expert carries late in training); the ``*_per_step`` values average single steps, which also contain the
    sampling noise of one batch (~2k tokens over 8 experts).
    """
    rows = []
    for layer in history["layers"]:
        late = layer[-max(1, int(len(layer) * fraction)):]
        load = torch.tensor([s["tokens_per_expert"] for s in late], dtype=torch.float).sum(0)  # (E,)
        rows.append({
            "max_over_mean_load": float(load.max() / load.mean()),
            "cv": float(load.std(unbiased=False) / load.mean()),
            "max_over_mean_load_per_step": sum(s["max_over_mean"] for s in late) / len(late),
            "cv_per_step": sum(s["cv"] for s in late) / len(late),
            "dropped_fraction": sum(s["dropped_fraction"] for s in late) / len(late),
        })
    return max(rows, key=lambda r: r["max_over_mean_load"])
