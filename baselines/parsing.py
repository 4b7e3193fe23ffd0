"""Reading the optimizer LLM's replies, as every text-space baseline does: tagged spans, cleaned text, lists,
duplicates, and copied text.

Small models write messy text. `parse_tagged` takes what it can from an output (a tagged span, a span with
only one of its tags, or the bare text) and says how it got it (`Parsed.status`); `baselines.common.ask`
counts what could not be used.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from harness.core.text import word_runs

MAX_PROMPT_CHARS = 600  # an instruction longer than this is cut (at a sentence end when there is one)

# Lead-ins small models put before the instruction itself: "Sure! Here is the new instruction:",
# "Instruction:", "The instruction sounds like this:", "Improved prompt -".
_LEAD_IN = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly)\b[,!.]?\s*)?"
    r"(?:(?:here(?:'s| is| are)\s+)?(?:the\s+|an?\s+|my\s+|your\s+)?(?:new\s+|improved\s+|revised\s+)?"
    r"(?:instruction|prompt|variation)s?\b[^:\n\"]{0,40}?\s*[:\-]\s*|(?:output|answer)\s*:\s*)",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’"


@dataclass(frozen=True)
class Parsed:
    """One optimizer output as read: the text (None when nothing usable) and how it was found.

    status: "tagged" (both tags), "partial" (one tag missing), "untagged" (no tags: the bare text),
    "failed" (empty, only tags, or no letters). `capped` is True when the text was cut to the length limit.
    """

    text: str | None
    status: str
    capped: bool = False


def _tag_pattern(tag: str, close: str | None = None) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns of the opening tag <tag> and of the closing tag: </tag>, or <close> when given (ProTeGi's
    <START> ... <END>). Case and spaces inside the brackets are ignored."""
    name = re.escape(tag.strip("<>/ "))
    end = rf"<\s*{re.escape(close.strip('<>/ '))}\s*>" if close else rf"<\s*/\s*{name}\s*>"
    return re.compile(rf"<\s*{name}\s*>", re.IGNORECASE), re.compile(end, re.IGNORECASE)


def tagged_spans(text: str, tag: str, close: str | None = None) -> list[str]:
    """Every span between the opening and the closing tag. A span that is never closed is its first paragraph
    (up to the next opening tag); a closing tag with no opening one closes the text before it."""
    open_re, close_re = _tag_pattern(tag, close)
    opens = list(open_re.finditer(text))
    spans = []
    for i, m in enumerate(opens):
        end = opens[i + 1].start() if i + 1 < len(opens) else len(text)
        stop = close_re.search(text, m.end(), end)
        if stop:
            spans.append(text[m.end() : stop.start()])
        else:  # never closed: its first paragraph (what follows is usually commentary)
            spans.append(_first_paragraph(text[m.end() : end]))
    first_open = opens[0].start() if opens else len(text)
    stop = close_re.search(text, 0, first_open)
    if stop:  # text closed before any opening tag (the opening one was left out)
        spans.insert(0, text[: stop.start()])
    return spans


def clean_text(text: str, max_chars: int = MAX_PROMPT_CHARS) -> tuple[str | None, bool]:
    """Strip lead-ins, quotes, stray tags and blank space; cut to `max_chars`. Returns (text or None, capped)."""
    text = re.sub(r"<\s*/?\s*[A-Za-z_]{2,}\s*>", " ", text)  # leftover tags of any name (<INS>, <END>, ...)
    text = _LEAD_IN.sub("", text.strip())
    text = " ".join(text.split())
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    text = text.strip(_QUOTES + " ")
    capped = False
    if len(text) > max_chars:
        head = text[:max_chars]
        end = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
        text, capped = (head[: end + 1] if end >= max_chars // 3 else head.rstrip()), True
    if not re.search(r"[A-Za-z]{2}", text):
        return None, capped
    return text, capped


def parse_tagged(
    text: str, tag: str, *, close: str | None = None, untagged: bool = True, max_chars: int = MAX_PROMPT_CHARS
) -> Parsed:
    """The instruction in `text` between <tag> and </tag> (or <close>), tolerant of a missing tag.

    With no tag at all, `untagged=True` takes the first paragraph of the bare text (small models often
    answer with the instruction alone), `untagged=False` reports a failure.
    """
    open_re, close_re = _tag_pattern(tag, close)
    has_open, has_close = bool(open_re.search(text)), bool(close_re.search(text))
    if has_open or has_close:
        for span in tagged_spans(text, tag, close):
            body, capped = clean_text(span, max_chars)
            if body:
                return Parsed(body, "tagged" if has_open and has_close else "partial", capped)
        return Parsed(None, "failed")
    if not untagged:
        return Parsed(None, "failed")
    body, capped = clean_text(_first_paragraph(text), max_chars)
    return Parsed(body, "untagged" if body else "failed", capped)


def _first_paragraph(text: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return paragraphs[0] if paragraphs else ""


def parse_text(text: str, *, max_chars: int = MAX_PROMPT_CHARS) -> Parsed:
    """Free text (feedback): blank space collapsed and cut to `max_chars`; empty or letterless -> failed."""
    body, capped = clean_text(text, max_chars)
    return Parsed(body, "untagged" if body else "failed", capped)


def parse_list(
    text: str, tag: str, *, close: str | None = None, max_items: int, max_chars: int = MAX_PROMPT_CHARS
) -> tuple[list[str], str]:
    """Several items, each between <tag> and </tag> (or <close>); without tags, numbered or bulleted lines,
    else the first paragraph as one item. Returns (at most `max_items` items, status as in `Parsed`)."""
    open_re, close_re = _tag_pattern(tag, close)
    has_open, has_close = bool(open_re.search(text)), bool(close_re.search(text))
    if has_open or has_close:
        items = [c for c in (clean_text(s, max_chars)[0] for s in tagged_spans(text, tag, close)) if c]
        return items[:max_items], (("tagged" if has_open and has_close else "partial") if items else "failed")
    lines = [m.group(1) for m in re.finditer(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$", text, re.MULTILINE)]
    items = [c for c in (clean_text(s, max_chars)[0] for s in lines) if c]
    if not items:
        first = parse_tagged(text, tag, close=close, max_chars=max_chars).text
        items = [first] if first else []
    return items[:max_items], "untagged" if items else "failed"


def normalise(text: str) -> str:
    """The key two instructions are duplicates under: case, spacing and end punctuation ignored."""
    return " ".join(text.casefold().split()).strip(" .!?;:")


def dedupe(texts: Iterable[str], seen: Iterable[str] = ()) -> list[str]:
    """`texts` without duplicates (first one kept, order kept) and without anything in `seen`."""
    keys = {normalise(s) for s in seen}
    out = []
    for t in texts:
        k = normalise(t)
        if k not in keys:
            keys.add(k)
            out.append(t)
    return out


class CopyGuard:
    """Tells whether a proposed instruction copies text it was shown: it shares a run of `n` words (case and
    punctuation ignored) with one of `sources` (task inputs, a meta-prompt's worked example). The guard of the
    methods that use it while searching; `harness.evaluation.prompt_checks` checks every method's final prompt.

    With `max_sources`, a run found in more sources than that is common wording (a task's question stem, an
    options list), not a copy of one of them.
    """

    def __init__(self, sources: Iterable[str], n: int = 8, max_sources: int | None = None) -> None:
        counts: Counter[tuple[str, ...]] = Counter()
        for s in sources:
            counts.update(set(word_runs(s, n)))
        self.n = n
        self.runs = {r for r, c in counts.items() if max_sources is None or c <= max_sources}

    def __call__(self, text: str) -> bool:
        return any(r in self.runs for r in word_runs(text, self.n))
