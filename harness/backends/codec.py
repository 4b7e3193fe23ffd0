"""Prompt rendering and tokenisation shared by every backend that holds a tokenizer.

HF and vLLM both go through this class, so for the same model they feed the model identical token ids:
the same chat template, the same special tokens, the same split of a log-likelihood request into context
and continuation. That is what makes GReaTer's gradients (HF) and its decoding (vLLM) consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.core.types import Prompt


def render_prompt(tokenizer: Any, prompt: Prompt, use_chat_template: bool) -> str:
    """The exact text a chat or base model sees."""
    if isinstance(prompt, str):
        return prompt
    if use_chat_template:
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.user}], tokenize=False, add_generation_prompt=True
        )
        return head + prompt.assistant_prefix
    # Base models (no chat template): a plain question/answer layout.
    tail = f" {prompt.assistant_prefix}" if prompt.assistant_prefix else ""
    return f"Question: {prompt.user}\nAnswer:{tail}"


class PromptCodec:
    """A tokenizer plus the decision whether to apply its chat template."""

    def __init__(self, tokenizer: Any, use_chat_template: bool | None = None) -> None:
        self.tokenizer = tokenizer
        has = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = has if use_chat_template is None else bool(use_chat_template) and has

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt, self.use_chat_template)

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text (the chat template already holds any special tokens)."""
        return self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"]

    def continuation(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def loglikelihood_split(self, requests: Sequence[tuple[Prompt, str]]) -> list[tuple[str, str]]:
        """(context text, continuation text) per request, as lm-eval splits them.

        Context and continuation are tokenised apart and concatenated; a trailing space of the context moves
        to the continuation, so "$" + "A" cannot merge into one token and every option of a question is
        scored against the same context ids.
        """
        pairs = []
        for prompt, cont in requests:
            ctx = self.render(prompt)
            stripped = ctx.rstrip(" ")
            pairs.append((stripped, ctx[len(stripped) :] + cont))
        return pairs
