"""Small real models for the quantization tests (no hub: a random tiny GPT-2 and the packaged MiniLM)."""

import pytest
import torch


@pytest.fixture
def tiny_gpt2():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2, num_labels=4,
                        pad_token_id=0)
    return GPT2ForSequenceClassification(config).eval()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    ids = torch.randint(1, 100, (4, 16))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
