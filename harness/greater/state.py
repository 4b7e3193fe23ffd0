"""GReaTer's typed state: a prompt measured on the training examples, and where the search stands between
steps. `to_json` / `from_json` give the step log's form (the checkpoint a run resumes from), whose keys are
historic: the cursor is `pos`, the kept prompts are `top`, a prompt's selection loss is `score`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ScoredPrompt:
    """A prompt measured on the training examples (its own reasoning, teacher-forced answers)."""

    ids: list[int]
    text: str
    mistake_rate: float | None
    answer_loss: float | None
    fluency: float | None  # mean NLL of the prompt tokens
    selection_loss: float | None  # the paper's: mistake rate + 0.02 x fluency (lower is better); `score` on disk
    key: list[float]  # what selection sorts by, lowest first (tie_break)
    reasoning: list[str] = field(default_factory=list, repr=False)
    reasoning_tokens: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The step log's and the result's form (no reasoning)."""
        return {"ids": list(self.ids), "text": self.text, "mistake_rate": self.mistake_rate,
                "answer_loss": self.answer_loss, "fluency": self.fluency, "score": self.selection_loss,
                "key": list(self.key)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ScoredPrompt:
        return cls(ids=d["ids"], text=d["text"], mistake_rate=d["mistake_rate"], answer_loss=d["answer_loss"],
                   fluency=d["fluency"], selection_loss=d["score"], key=d["key"])


@dataclass
class SearchState:
    """Where the search stands between steps; `to_json` is the step log's checkpoint a run resumes from."""

    next_step: int
    prompt_ids: list[int]
    cursor: int  # the prompt token the next step edits (`pos` on disk)
    grown: bool  # the token at the cursor is a placeholder the prompt grew by: it does not compete
    reasoning: list[str]  # the current prompt's reasoning per training example (the last winner's)
    reasoning_tokens: list[int]
    kept: list[ScoredPrompt]  # the `keep` best prompts so far, best first (`top` on disk)
    dev: list[dict[str, Any]] | None = None  # the kept prompts' dev accuracy, once measured

    def to_json(self) -> dict[str, Any]:
        out = {"next_step": self.next_step, "prompt_ids": self.prompt_ids, "pos": self.cursor, "grown": self.grown,
               "reasoning": self.reasoning, "reasoning_tokens": self.reasoning_tokens,
               "top": [s.to_json() for s in self.kept]}
        return out if self.dev is None else {**out, "dev": self.dev}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SearchState:
        return cls(next_step=d["next_step"], prompt_ids=d["prompt_ids"], cursor=d["pos"], grown=d["grown"],
                   reasoning=d["reasoning"], reasoning_tokens=d["reasoning_tokens"],
                   kept=[ScoredPrompt.from_json(s) for s in d["top"]], dev=d.get("dev"))
