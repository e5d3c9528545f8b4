"""CTranslate2, the engine people serve Marian-type models with on CPUs (OpenNMT, Argos/LibreTranslate), as an
export target for our checkpoints and as a second engine behind ``translate.py``.

Our model goes in through CTranslate2's spec API, weight by weight (:func:`our_spec`); the Hugging Face peer
through CTranslate2's own Transformers converter (:class:`PeerLoader`), with one change of layout: its Marian
loader assumes OPUS-MT's vocabulary (pad last, dropped; decoding starts from a zero embedding), while our peer
has pad 0 and starts from BOS, like our model. Either way the export is a CTranslate2 model folder plus our
tokenizer and an ``export.json`` saying what it came from, so :class:`Engine` translates with the same
tokenization, truncation and per-sentence length limit as ``inference.hypotheses``.

How our model maps (pre-LayerNorm blocks, GELU, tied embeddings, scaled by sqrt(D)):

    ln1 / ln2 / ln3            -> self_attention / attention / ffn .layer_norm
    q, k, v (self-attention)   -> self_attention.linear[0], fused (3D, D)
    q; k, v (cross-attention)  -> attention.linear[0]; attention.linear[1], fused (2D, D)
    sinusoidal                 -> position_encodings.encodings: our interleaved table (CTranslate2's default
                                  puts all sines before all cosines)
    relative bias              -> relative_attention_bias of every layer's self-attention (ours is shared by a
                                  stack's layers, as T5's), max distance likewise
    RoPE                       -> rotary_dim = 0 (every dimension), rotary_interleave (pairs 2i, 2i+1)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from shared_utils.checkpoint import load_best
from shared_utils.errors import UserError
from translation.config import ModelConfig
from translation.data import Pair, encode_pairs
from translation.decoding import Hypothesis, Strategy, length_limits
from translation.model import restore_model
from translation.tokenizer import EOS, SPECIALS, load_tokenizer

EXPORT_FILE = "export.json"  # what an export came from; its presence marks a folder as a CTranslate2 export
QUANTIZATIONS = ("float32", "int8")  # how the weights are stored
COMPUTE_TYPES = ("default", "float32", "int8")  # how they are computed at load time (default: as stored)


def vocabulary(tok, size: int) -> list[str]:
    """Token strings by id for a model of ``size`` outputs; ids the tokenizer never assigned get placeholders, so
    the shapes stay the model's."""
    by_id = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    return [by_id.get(i, f"<unused{i}>") for i in range(size)]


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _linear(spec, *layers: torch.nn.Linear) -> None:
    """One CTranslate2 linear from one or more of ours stacked along the output (fused q/k/v)."""
    spec.weight = _array(torch.cat([m.weight for m in layers]))
    if layers[0].bias is not None:
        spec.bias = _array(torch.cat([m.bias for m in layers]))


def _norm(spec, norm: torch.nn.Module) -> None:
    spec.gamma = _array(norm.weight)
    if getattr(norm, "bias", None) is not None:
        spec.beta = _array(norm.bias)


def _ffn(spec, ffn) -> None:
    _linear(spec.linear_0, ffn.fc1)
    _linear(spec.linear_1, ffn.fc2)
    if ffn.gate is not None:
        _linear(spec.linear_0_noact, ffn.gate)


def our_spec(model, cfg: ModelConfig):
    """A ``TransformerSpec`` holding our model's weights. Refuses what the spec cannot express, in one sentence."""
    from ctranslate2.specs import common_spec, transformer_spec

    if cfg.norm == "rmsnorm" or not cfg.bias:
        raise UserError("CTranslate2's spec has no bias-free LayerNorm and a different RMSNorm epsilon, so "
                        "--norm rmsnorm and --no-bias models are not exported; export a layernorm model with biases")
    rope, relative = cfg.positional == "rope", cfg.positional == "relative_bias"
    common = dict(pre_norm=True, relative_attention_bias=relative, ffn_glu=cfg.ffn == "swiglu",
                  activation=common_spec.Activation.SWISH if cfg.ffn == "swiglu" else common_spec.Activation.GELU,
                  rotary_dim=0 if rope else None, rotary_interleave=True)
    encoder = transformer_spec.TransformerEncoderSpec(cfg.encoder_layers, cfg.num_heads, **common)
    decoder = transformer_spec.TransformerDecoderSpec(cfg.decoder_layers, cfg.num_heads, **common)
    embed = _array(model.embed.weight)
    encoder.embeddings[0].weight = decoder.embeddings.weight = decoder.projection.weight = embed
    if cfg.positional == "sinusoidal":
        encoder.position_encodings.encodings = decoder.position_encodings.encodings = _array(model.sinusoidal.table)
    _norm(encoder.layer_norm, model.enc_ln)
    _norm(decoder.layer_norm, model.dec_ln)
    for spec, block in zip(encoder.layer, model.encoder):
        a = block.attn
        _linear(spec.self_attention.linear[0], a.q_proj, a.k_proj, a.v_proj)
        _linear(spec.self_attention.linear[1], a.out_proj)
        _norm(spec.self_attention.layer_norm, block.ln1)
        _norm(spec.ffn.layer_norm, block.ln2)
        _ffn(spec.ffn, block.ffn)
    for spec, block in zip(decoder.layer, model.decoder):
        s, c = block.self_attn, block.cross_attn
        _linear(spec.self_attention.linear[0], s.q_proj, s.k_proj, s.v_proj)
        _linear(spec.self_attention.linear[1], s.out_proj)
        _linear(spec.attention.linear[0], c.q_proj)
        _linear(spec.attention.linear[1], c.k_proj, c.v_proj)
        _linear(spec.attention.linear[2], c.out_proj)
        _norm(spec.self_attention.layer_norm, block.ln1)
        _norm(spec.attention.layer_norm, block.ln2)
        _norm(spec.ffn.layer_norm, block.ln3)
        _ffn(spec.ffn, block.ffn)
    if relative:
        for layers, bias in ((encoder.layer, model.enc_bias), (decoder.layer, model.dec_bias)):
            for spec in layers:
                spec.self_attention.relative_attention_bias = _array(bias.bias.weight)  # (buckets, H)
                spec.self_attention.relative_attention_max_distance = np.int32(bias.max_distance)
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    spec.config.layer_norm_epsilon = 1e-5  # torch's LayerNorm default
    return spec


def peer_loader():
    """CTranslate2's Marian conversion (its Transformers converter's ``BartLoader`` with Marian's post-norm and no
    embedding norm), without the OPUS-MT layout its ``MarianMTLoader`` assumes: no pad row is dropped, and
    decoding starts from BOS's embedding, as the peer was trained."""
    from ctranslate2.converters.transformers import BartLoader

    class PeerLoader(BartLoader):
        def get_model_spec(self, model):
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return super().get_model_spec(model)

        def get_vocabulary(self, model, tokenizer):
            return vocabulary(tokenizer.backend_tokenizer, model.config.vocab_size)

    return PeerLoader()


def hf_tokenizer(tok):
    """Our tokenizer as a transformers tokenizer, the form CTranslate2's converter reads a vocabulary from."""
    from transformers import PreTrainedTokenizerFast

    pad, bos, eos, unk = SPECIALS
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, bos_token=bos, eos_token=eos, unk_token=unk)


def model_spec(model, cfg: ModelConfig, tok):
    """The CTranslate2 spec of either architecture, vocabulary and special tokens registered."""
    if cfg.arch == "marian":
        return peer_loader()(model.hf, hf_tokenizer(tok))
    spec = our_spec(model, cfg)
    pad, bos, eos, unk = SPECIALS
    spec.config.bos_token, spec.config.eos_token, spec.config.unk_token = bos, eos, unk
    spec.config.decoder_start_token = bos
    tokens = vocabulary(tok, cfg.vocab_size)
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    return spec


def export(checkpoint: str | Path, out: Path, quantization: str = "float32", force: bool = False) -> dict:
    """Write a CTranslate2 model of a checkpoint (a run folder's best) into ``out``; returns what export.json
    says. ``out`` is written whole or not at all: the model goes into a sibling folder, renamed at the end; an
    earlier export there is replaced only with ``force``, and a folder of anything else never."""
    import ctranslate2

    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, got '{quantization}'")
    if out.exists() and any(out.iterdir()):
        if not (out / EXPORT_FILE).is_file():
            raise UserError(f"--out {out} holds files that are not a CTranslate2 export; choose another folder")
        if not force:
            raise UserError(f"--out {out} holds an export already; pass --force to replace it")
    ckpt = load_best(checkpoint)
    model, cfg = restore_model(ckpt, hint="pass a translation run folder or checkpoint")
    if not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} has no tokenizer.json, so it cannot be exported; retrain into a new --out")
    serialised = ckpt.read_text("tokenizer.json")
    spec = model_spec(model.eval(), cfg, load_tokenizer(serialised))

    class SpecConverter(ctranslate2.converters.Converter):
        def _load(self):
            return spec

    info = {"checkpoint": str(ckpt.path), "quantization": quantization, "model": asdict(cfg),
            "ctranslate2": ctranslate2.__version__}
    staging, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")
    SpecConverter().convert(str(staging), quantization=None if quantization == "float32" else quantization,
                            force=True)
    (staging / "tokenizer.json").write_text(serialised, encoding="utf-8")
    (staging / EXPORT_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    if out.exists():
        out.replace(old)
    staging.replace(out)
    shutil.rmtree(old, ignore_errors=True)
    return info


class Engine:
    """A CTranslate2 export behind the interface of ``inference.TorchTranslator``: the same tokenization, source
    truncation and per-sentence length limit (EOS included), so greedy outputs compare token for token.

    CTranslate2 takes one length limit per call; each output is cut to its own sentence's, which for greedy search
    gives exactly what a per-sentence limit gives (a greedy prefix does not depend on the limit). Beam search
    searches under the longest sentence's limit, then is cut likewise."""

    def __init__(self, path: str | Path, compute_type: str = "default", threads: int = 0, device: str = "cpu"):
        import ctranslate2

        path = Path(path)
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if not (path / EXPORT_FILE).is_file():
            hint = (f"; export it first: python translation/export_ctranslate2.py --checkpoint {path} --out DIR"
                    if (path / "config.json").is_file() or (path / "checkpoints").is_dir() else "")
            raise UserError(f"{path} is not a CTranslate2 export (no {EXPORT_FILE}){hint}")
        if compute_type not in COMPUTE_TYPES:
            raise UserError(f"--compute-type must be one of {', '.join(COMPUTE_TYPES)}, got '{compute_type}'")
        try:
            self.cfg = ModelConfig(**json.loads((path / EXPORT_FILE).read_text(encoding="utf-8"))["model"])
            self.tok = load_tokenizer((path / "tokenizer.json").read_text(encoding="utf-8"))
        except Exception as exc:  # a missing or unreadable file, bad JSON, a config or a tokenizer that will not load
            raise UserError(f"{path}: the export is damaged or incomplete ({type(exc).__name__}: {exc}); export "
                            "the checkpoint again") from None
        self.vocab = vocabulary(self.tok, self.cfg.vocab_size)
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        try:
            self.translator = ctranslate2.Translator(str(path), device=device, compute_type=compute_type,
                                                     inter_threads=1, intra_threads=threads)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"{path}: CTranslate2 cannot load this export ({exc})") from None

    def sources(self, sources: list[str]) -> tuple[list[list[str]], list[int], int]:
        """Token strings of each sentence (EOS last, truncated as ours), its length limit, how many were cut."""
        data = encode_pairs(self.tok, [Pair(s, ".") for s in sources], self.cfg.max_len)
        return [[self.vocab[t] for t in ids] for ids in data.src], [len(ids) for ids in data.src], data.truncated

    def hypotheses(self, sources: list[str], strategy: Strategy | None = None, batch_tokens: int = 4000
                   ) -> tuple[list[list[Hypothesis]], int]:
        """Hypotheses per source in input order (empty lines get none), and how many sources were truncated."""
        import ctranslate2

        strategy = strategy or Strategy()
        live = [i for i, s in enumerate(sources) if s.strip()]
        out: list[list[Hypothesis]] = [[] for _ in sources]
        if not live:
            return out, 0
        batch, lengths, truncated = self.sources([sources[i] for i in live])
        limits = length_limits(torch.tensor(lengths), self.cfg.max_len, strategy.max_len_ratio,
                               strategy.max_len_extra).tolist()
        if strategy.strategy == "sample":
            ctranslate2.set_random_seed(strategy.seed)
        results = self.translator.translate_batch(
            batch, max_batch_size=batch_tokens, batch_type="tokens", max_decoding_length=max(limits) - 1,
            min_decoding_length=0, return_scores=True, **self.options(strategy))
        for i, limit, result in zip(live, limits, results):
            out[i] = [self.hypothesis(h, s, limit) for h, s in zip(result.hypotheses, result.scores)]
        return out, truncated

    @staticmethod
    def options(strategy: Strategy) -> dict:
        """CTranslate2's arguments for a strategy; outside beam search the score is the summed log-probability,
        as ours (length_penalty 0: no length normalisation)."""
        if strategy.strategy == "beam":
            return dict(beam_size=strategy.beam_size, length_penalty=strategy.length_penalty,
                        num_hypotheses=strategy.nbest, no_repeat_ngram_size=strategy.no_repeat_ngram)
        common = dict(beam_size=1, length_penalty=0.0, no_repeat_ngram_size=strategy.no_repeat_ngram)
        if strategy.strategy == "sample":
            return dict(common, sampling_topk=strategy.top_k, sampling_topp=strategy.top_p,
                        sampling_temperature=strategy.temperature)
        return common

    def hypothesis(self, tokens: list[str], score: float, limit: int) -> Hypothesis:
        """CTranslate2's tokens (EOS left out) cut to the sentence's limit, EOS put back as ours ends."""
        ids = [self.ids[t] for t in tokens[: limit - 1]] + [EOS]
        return Hypothesis(ids, score, score)
