"""A tiny randomly initialised causal LM with a real tokenizer, built in milliseconds.

It exercises the real transformers code paths (padding, generation, KV cache, log-likelihoods) without
loading any weights from disk.
"""

from __future__ import annotations

import functools

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Let's think step by step. The answer is Yes or No.",
    "Therefore, the final answer (use exact format: '$A' or '$B') is $A",
    "Question: is the sky blue? Answer: yes. Options: (A) (B) (C) True False valid invalid 0 1 2 3 4 5 6 7 8 9",
    "the quick brown fox jumps over the lazy dog, and then it walks ten steps forward.",
]


@functools.cache
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(seed: int = 0, layers: int = 2, hidden: int = 32):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Larger random weights give peaked, varied next-token distributions (no near-ties in greedy decoding).
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0) if p.dim() > 1 else None
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def tiny_generator(seed: int = 0, batch_size: int = 8):
    from harness.backends.hf import HFGenerator

    model, tok = tiny_model(seed)
    return HFGenerator("tiny-random", model_obj=model, tokenizer=tok, batch_size=batch_size, revision=f"seed{seed}")
