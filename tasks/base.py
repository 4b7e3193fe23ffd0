"""Binding an answer format to a `Task`: the pure functions of `tasks.formats`, fixed by `functools.partial`.

Tasks built here hold only module-level functions and partials of them, so they pickle (worker processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from harness.core.types import AnswerFormat, Example, Splits, Task
from tasks import formats

# How many tokens the greedy reading may write after the extractor, per format.
ANSWER_MAX_TOKENS = {
    AnswerFormat.LETTER: 8,
    AnswerFormat.YES_NO: 8,
    AnswerFormat.TRUE_FALSE: 8,
    AnswerFormat.VALID_INVALID: 8,
    AnswerFormat.INTEGER: 16,
    AnswerFormat.FREE_TEXT: 96,  # word_sorting golds run to ~20 words
}


def _options(default: tuple[str, ...], example: Example) -> tuple[str, ...]:
    return tuple(example.meta.get("options", default))


def _extractor(fmt: AnswerFormat, default: tuple[str, ...], text: str | None, example: Example) -> str:
    return text if text is not None else formats.extractor_text(fmt, _options(default, example))


def _extract(
    fmt: AnswerFormat, default: tuple[str, ...], continuation: str, example: Example, answer_regex: str | None = None
) -> str | None:
    return formats.extract(fmt, continuation, _options(default, example), answer_regex)


def _fallback(
    fmt: AnswerFormat, default: tuple[str, ...], reasoning: str, example: Example, answer_regex: str | None = None
) -> str | None:
    return formats.extract_fallback(fmt, reasoning, _options(default, example), answer_regex)


def make_task(
    name: str,
    answer_format: AnswerFormat,
    options: Sequence[str],
    load: Callable[..., Splits],
    *,
    description: str = "",
    compact: bool = False,
    extractor: str | None = None,
    answer_max_tokens: int | None = None,
    answer_regex: str | None = None,
    case_sensitive: bool = False,
    answer_stop: Sequence[str] = ("\n",),
    reading_key: str = "",
) -> Task:
    """A `Task` whose readings and scoring follow `answer_format`.

    `options` is the task-level closed set in gold spelling (an example's meta["options"] overrides it);
    `compact` scores free text with all whitespace removed; `extractor` replaces the default extractor text;
    `answer_regex` locates the answer in both readings (see `tasks.formats.extract`); `case_sensitive` keeps
    case when scoring free text; `answer_stop` ends the greedy answer continuation.
    """
    fmt = AnswerFormat(answer_format)
    opts = tuple(options) if fmt.closed else ()
    regex = {"answer_regex": answer_regex} if answer_regex is not None else {}
    return Task(
        name=name,
        answer_format=fmt,
        options=opts,
        extractor=partial(_extractor, fmt, opts, extractor),
        extract=partial(_extract, fmt, opts, **regex),
        extract_fallback=partial(_fallback, fmt, opts, **regex),
        score=partial(formats.score, fmt, compact=compact, **({"case_sensitive": True} if case_sensitive else {})),
        load=load,
        description=description,
        answer_max_tokens=answer_max_tokens or ANSWER_MAX_TOKENS[fmt],
        answer_stop=tuple(answer_stop),
        reading_key=reading_key,
    )
