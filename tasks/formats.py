"""Answer formats: pure functions that normalise gold answers, write the extractor text, read answers, score.

Every function takes the `AnswerFormat` first and is free of state, so a task binds it with
`functools.partial` (see `tasks.base.make_task`) and stays picklable.

Readings (see greater.md, "Evaluation protocol"):
- `extract(fmt, continuation, options)`: the *greedy* reading. `continuation` is the short text the model
  writes right after the extractor text (which ends in "$" or "$ "). The answer must be the first thing
  written: leading whitespace, "$", "(", "[", "*", "`" and quotes are skipped, then exactly one answer
  token is read (a letter that is one of the example's options; a closed-set word; an integer; or, for
  free text, the first line, cleaned by `clean_free_text`). Anything else gives None.
- `extract_fallback(fmt, reasoning, options)`: the *fallback* reading: the LAST allowed answer found
  anywhere in the reasoning (letters: the last "(X)" with X an option; words: the last whole-word match,
  so "invalid" never counts as "valid"; integers: the last integer; free text: what follows the last
  "answer is" / "answer:" marker, see `free_text_fallback`).
- Both take an optional `answer_regex` (custom tasks): the greedy reading then reads the FIRST match of
  the regex in the continuation, the fallback the LAST match in the reasoning that gives an answer; a
  match's answer is its group 1 when the regex has a group, else the whole match, read by the format's
  greedy reader (so a closed format still only accepts its options).
- `score(fmt, pred, gold, compact=False, case_sensitive=False)`: exact match after normalisation. None never
  matches; closed sets compare case-insensitively; integers compare as normalised integers; free text
  compares with runs of whitespace collapsed and lower-cased (case kept when `case_sensitive`), or with all
  whitespace removed when `compact` (dyck_languages).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.core.types import AnswerFormat

# The closed word sets in their canonical spelling; a task may spell them differently (sports_understanding
# uses "yes"/"no", formal_fallacies "valid"/"invalid") and keeps its own spelling as `Task.options`.
WORD_SETS: dict[AnswerFormat, tuple[str, str]] = {
    AnswerFormat.YES_NO: ("Yes", "No"),
    AnswerFormat.TRUE_FALSE: ("True", "False"),
    AnswerFormat.VALID_INVALID: ("valid", "invalid"),
}

INTEGER_EXTRACTOR = (
    "Therefore, the final answer (use exactly this format: $NUMBER$, where NUMBER is a positive or negative "
    "integer) is $"
)
FREE_TEXT_EXTRACTOR = "Therefore, the final answer is: "

# Characters skipped before the answer in the greedy reading.
LEAD = " \t\r\n$([*`\"'\u201c\u2018"
# An integer: optional sign, digits with optional thousands separators, optional decimal part.
NUMBER = r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_AT_START = re.compile(NUMBER)
# In running text a sign counts only when it is not a binary minus ("5-3") or a hyphen ("COVID-19").
_NUMBER_IN_TEXT = re.compile(
    r"(?:(?<![\w).\]])[-+\u2212])?"  # a sign, unless it follows a word, ")" or "]"
    r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)"
)
_LETTER_AT_START = re.compile(r"([A-Z])(?![A-Za-z0-9])")
_LETTER_IN_PARENS = re.compile(r"\(([A-Z])\)")
_WORD_AT_START = re.compile(r"[A-Za-z]+")
# Pairs that may wrap a free-text answer: quotes, backticks, markdown emphasis.
_WRAPPERS = (("\"", "\""), ("'", "'"), ("`", "`"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("**", "**"),
             ("*", "*"))
# A free-text answer marker in reasoning: "answer is", "answer:", "answer would be", "answer =", any case.
_ANSWER_MARKER = re.compile(r"\banswer\b[ \t]*(?:(?:is|would[ \t]+be)\b[ \t]*:?|[:=])", re.IGNORECASE)
# The end of a sentence: ".", "!" or "?" followed by whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


# ------------------------------------------------------------------------------------------ gold answers


def normalise_number(text: str) -> str | None:
    """'1,234' -> '1234', '$-12' -> '-12', '18.00' -> '18', '+5' -> '5', '2.5' -> '2.5'; else None."""
    s = text.strip().lstrip("$").strip().replace("\u2212", "-")
    m = re.fullmatch(NUMBER, s)
    if not m:
        return None
    s = s.replace(",", "")
    sign = "-" if s.startswith("-") else ""
    s = s.lstrip("+-")
    whole, _, frac = s.partition(".")
    if frac.strip("0"):  # a real decimal: kept, so it never equals an integer gold
        return f"{sign}{int(whole)}.{frac.rstrip('0')}"
    value = int(whole)
    return f"-{value}" if sign and value else str(value)


def normalise_gold(fmt: AnswerFormat, raw: str, options: Sequence[str] = ()) -> str:
    """The gold answer as `Example.target` stores it.

    Letters: "(C)" -> "C" (anything else, e.g. BBH's stray "Monsters, Inc", is kept as is and so can never
    be matched). Closed words: the spelling of the matching option (case-insensitive) when `options` are
    given, else the raw text stripped. Integers: separators removed ("1,234" -> "1234"), GSM8K's
    "... #### 72" -> "72". Free text: stripped.
    """
    text = str(raw).strip()
    if fmt is AnswerFormat.LETTER:
        m = re.fullmatch(r"\(?([A-Z])\)?", text)
        return m.group(1) if m else text
    if fmt is AnswerFormat.INTEGER:
        if "####" in text:
            text = text.rsplit("####", 1)[1].strip()
        return normalise_number(text) or text
    if fmt.closed:
        for option in options:
            if option.lower() == text.lower():
                return option
        return text
    return text


def clean_free_text(text: str) -> str:
    """A free-text answer without its wrapping: surrounding whitespace and "$", one pair of matching quotes
    (straight or curly), backticks or markdown "*"/"**", and trailing periods, removed repeatedly in any
    order: '"sgn".', '"sgn."', "'sgn'." and "**sgn**." all give "sgn". Inner text is kept as written."""
    prev = None
    while text != prev:
        prev = text
        text = text.strip().strip("$").strip()
        text = text.rstrip(".").rstrip()
        for left, right in _WRAPPERS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : len(text) - len(right)]
                break
    return text


# ------------------------------------------------------------------------------------------ extractor


def extractor_text(fmt: AnswerFormat, options: Sequence[str] = ()) -> str:
    """The sentence appended after the reasoning; the answer follows it (greater.md, "Extractor texts")."""
    if fmt is AnswerFormat.LETTER:
        listed = " or ".join(f"'${o}'" for o in options)
        return f"Therefore, the final answer (use exact format: {listed}) is $"
    if fmt.closed:
        words = tuple(options) or WORD_SETS[fmt]
        listed = " or ".join(f"'$ {o}'" for o in words)
        return f"Therefore, the final answer (use exact format: {listed}) is $ "
    if fmt is AnswerFormat.INTEGER:
        return INTEGER_EXTRACTOR
    return FREE_TEXT_EXTRACTOR


# ------------------------------------------------------------------------------------------ readings


def _match_option(word: str, options: Sequence[str]) -> str | None:
    for option in options:
        if option.lower() == word.lower():
            return option
    return None


def regex_answer(match: re.Match[str]) -> str | None:
    """The answer an `answer_regex` match holds: group 1 when the regex has a group (None when that group took
    no part in the match), else the whole match."""
    return match.group(1) if match.re.groups else match.group(0)


def extract(
    fmt: AnswerFormat, continuation: str, options: Sequence[str] = (), answer_regex: str | None = None
) -> str | None:
    """The greedy reading: the answer the model writes first after the extractor text, or None.

    With `answer_regex`: the first match in the continuation, read as the format's answer (None if no match).
    """
    if answer_regex is not None:
        m = re.search(answer_regex, continuation)
        found = regex_answer(m) if m else None
        return extract(fmt, found, options) if found is not None else None
    if fmt is AnswerFormat.FREE_TEXT:
        line = continuation.lstrip(" \t\r\n$").split("\n", 1)[0]
        return clean_free_text(line) or None
    text = continuation.lstrip(LEAD)
    if fmt is AnswerFormat.LETTER:
        m = _LETTER_AT_START.match(text)
        return m.group(1) if m and m.group(1) in options else None
    if fmt is AnswerFormat.INTEGER:
        m = _NUMBER_AT_START.match(text)
        if not m or (m.end() < len(text) and text[m.end()].isalpha()):
            return None
        return normalise_number(m.group(0))
    m = _WORD_AT_START.match(text)
    return _match_option(m.group(0), options or WORD_SETS[fmt]) if m else None


def free_text_fallback(reasoning: str) -> str | None:
    """The free-text answer stated last in the reasoning: the text after the last "answer is" / "answer:" /
    "answer would be" / "answer =" marker (any case), up to the end of its line and of its first sentence
    (".", "!" or "?" followed by whitespace), cleaned by `clean_free_text`; when that line is empty, the next
    non-empty line. A marker followed by nothing is skipped for the one before it. None without a marker."""
    for m in reversed(list(_ANSWER_MARKER.finditer(reasoning))):
        first, _, after = reasoning[m.end() :].partition("\n")
        line = first if first.strip() else next((x for x in after.split("\n") if x.strip()), "")
        answer = clean_free_text(_SENTENCE_END.split(line.strip(), maxsplit=1)[0])
        if answer:
            return answer
    return None


def extract_fallback(
    fmt: AnswerFormat, reasoning: str, options: Sequence[str] = (), answer_regex: str | None = None
) -> str | None:
    """The fallback reading: the last allowed answer anywhere in the reasoning text, or None.

    With `answer_regex`: the last match of the regex in the reasoning that reads as an answer of the format.
    """
    if answer_regex is not None:
        for m in reversed(list(re.finditer(answer_regex, reasoning))):
            found = regex_answer(m)
            answer = extract(fmt, found, options) if found is not None else None
            if answer is not None:
                return answer
        return None
    if fmt is AnswerFormat.FREE_TEXT:
        return free_text_fallback(reasoning)
    if fmt is AnswerFormat.LETTER:
        found = [m.group(1) for m in _LETTER_IN_PARENS.finditer(reasoning) if m.group(1) in options]
        return found[-1] if found else None
    if fmt is AnswerFormat.INTEGER:
        found = [normalise_number(m.group(0)) for m in _NUMBER_IN_TEXT.finditer(reasoning)]
        found = [f for f in found if f is not None]
        return found[-1] if found else None
    words = tuple(options) or WORD_SETS[fmt]
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    found = pattern.findall(reasoning)
    return _match_option(found[-1], words) if found else None


# ------------------------------------------------------------------------------------------ scoring


def _free_text_key(text: str, compact: bool, case_sensitive: bool = False) -> str:
    if compact:
        return "".join(text.split())
    key = " ".join(text.split())
    return key if case_sensitive else key.lower()


def score(
    fmt: AnswerFormat, pred: str | None, gold: str, compact: bool = False, case_sensitive: bool = False
) -> bool:
    """Exact match of a prediction with the normalised gold answer (None never matches)."""
    if pred is None:
        return False
    if fmt is AnswerFormat.INTEGER:
        p, g = normalise_number(pred), normalise_number(gold)
        return p is not None and p == g
    if fmt.closed:
        return pred.strip().lower() == gold.strip().lower()
    return _free_text_key(pred, compact, case_sensitive) == _free_text_key(gold, compact, case_sensitive)


# ------------------------------------------------------------------------------------------ options


def parse_letter_options(question: str) -> tuple[str, ...]:
    """The option letters an input lists after its last "Options:" line ("(A) ..." lines), in order."""
    if "Options:" not in question:
        return ()
    block = question.rsplit("Options:", 1)[1]
    return tuple(dict.fromkeys(re.findall(r"^\s*\(([A-Z])\)", block, re.MULTILINE)))


def letters(n: int) -> tuple[str, ...]:
    """The first n option letters: letters(3) == ("A", "B", "C")."""
    return tuple(chr(ord("A") + i) for i in range(n))


def infer_format(targets: Sequence[str]) -> AnswerFormat:
    """The answer format that fits every gold answer (used by custom tasks that do not declare one)."""
    golds = [str(t).strip() for t in targets]
    if golds and all(re.fullmatch(r"\(?[A-Z]\)?", g) for g in golds):
        return AnswerFormat.LETTER
    for fmt, words in WORD_SETS.items():
        if golds and all(g.lower() in {w.lower() for w in words} for g in golds):
            return fmt
    if golds and all(normalise_number(g.rsplit("####", 1)[-1]) is not None for g in golds):
        return AnswerFormat.INTEGER
    return AnswerFormat.FREE_TEXT
