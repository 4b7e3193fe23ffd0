"""lm-eval (EleutherAI's lm-evaluation-harness, 0.4.x) export and cross-check of a stored run.

`export_run` turns a run folder into lm-eval task configurations (YAML plus JSON-lines data files) that put
the run's prompt into each example exactly as this harness does, so anyone can re-score it with
`lm_eval --include_path DIR`. `harness.lmeval.check.cross_check_run` runs those tasks in-process with
`lm_eval.simple_evaluate` and compares lm-eval's answers with the run's, reading by reading.

Why three tasks. The harness's protocol (harness.evaluation.evaluate) has two stages: the model reasons greedily after
the prompt; then the task's extractor text is appended and the answer is read. lm-eval tasks are
single-stage, so a run becomes
- `<name>_cot` (generate_until): the reasoning; greedy, stopped by end of sequence only, max_gen_toks = the
  run's max new tokens. Its target is the harness's stored reasoning, so its exact_match is the share of
  examples whose reasoning lm-eval reproduces character for character;
- `<name>_options` (multiple_choice over the allowed answers, closed answer sets): the `options` reading;
- `<name>_greedy` (generate_until until "\\n", the task's answer length): the `greedy` reading, read by a
  regex filter that mirrors `tasks.formats.extract` (exactly for closed sets, approximately for integers and
  free text). The `fallback` reading needs no model: it is read from the `_cot` output.
The answer tasks' contexts are prompt + reasoning + extractor (`with_extractor`); the reasoning is the run's
own (an export) or lm-eval's from `<name>_cot` (`--reasoning`, and `bench eval --engine lm-eval`).

Why fully rendered text. The data files hold the exact text the harness's model sees, chat template applied
by `PromptCodec.render`, and lm-eval is run WITHOUT --apply_chat_template and with add_bos_token=False for a
chat model (True for a base model), which is how `PromptCodec.encode` tokenises. Then lm-eval feeds the
model the same token ids by construction, for any chat template. (lm-eval's own chat path, doc_to_text =
the user turn plus gen_prefix = the assistant prefix, renders the same text for ChatML templates such as
SmolLM2's, but it goes through `continue_final_message`, which some templates render differently.)
Log-likelihoods: lm-eval moves the context's trailing whitespace into the continuation, as the harness does,
but tokenises context + continuation together and splits at the context's length, where the harness
tokenises them apart; the two agree unless the tokenizer merges across the boundary ("$" + " Yes" and "$" +
"A" stay apart in SmolLM2's byte-level BPE; tests/test_lmeval.py checks the ids).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.core.io import atomic_write_text
from harness.core.types import AnswerFormat, BenchError, Example, Task
from harness.evaluation.evaluate import build_prompt, with_extractor
from harness.lmeval.runs import StoredRun, load_codec, load_stored_run, run_examples

LMEVAL_FIX = 'pip install "greater-bench[lmeval]"'
ENGINES = ("harness", "lm-eval")
LM_EVAL_BACKENDS = {"hf": "hf", "vllm": "vllm"}  # harness backend -> lm-eval model type


def require_lm_eval() -> Any:
    """The `lm_eval` module, or a one-line BenchError naming the install command."""
    try:
        import lm_eval
    except ImportError:
        raise BenchError(f"lm-eval is not installed: run `{LMEVAL_FIX}`") from None
    return lm_eval


# ------------------------------------------------------------------------------------------ export


def cot_rows(examples: Sequence[Example], instruction: str | None, position: Any, codec: Any,
             reasoning: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Stage 1 rows: the rendered prompt (what lm-eval feeds the model) and the run's reasoning (its target)."""
    rows = []
    for ex in examples:
        prompt = build_prompt(ex, instruction, position)
        rows.append({
            "id": ex.id, "prompt": codec.render(prompt), "user": prompt.user,
            "assistant_prefix": prompt.assistant_prefix, "harness_reasoning": (reasoning or {}).get(ex.id, ""),
        })
    return rows


def answer_rows(task: Task, examples: Sequence[Example], instruction: str | None, position: Any, codec: Any,
                reasoning: Mapping[str, str]) -> list[dict[str, Any]]:
    """Stage 2 rows: prompt + reasoning + extractor, rendered; the allowed answers and the gold's index."""
    rows = []
    for ex in examples:
        prompt = with_extractor(build_prompt(ex, instruction, position), reasoning[ex.id], task.extractor(ex))
        row: dict[str, Any] = {"id": ex.id, "context": codec.render(prompt), "reasoning": reasoning[ex.id], "gold": ex.target}
        if task.answer_format.closed:
            choices = list(task.options_for(ex))
            low = [c.lower() for c in choices]
            # a gold outside the options (BBH data quirks) gets an index past the end: never matched, as here
            row["choices"] = choices
            row["gold_index"] = low.index(ex.target.lower()) if ex.target.lower() in low else len(choices)
        rows.append(row)
    return rows


def greedy_filter(task: Task) -> tuple[str, dict[str, Any]]:
    """A regex (lm-eval `regex` filter) and exact_match options that mirror `tasks.formats.extract` + `score`."""
    from tasks import formats

    spaces = {" ": " ", "\t": r"\t", "\r": r"\r", "\n": r"\n"}
    lead = "[" + "".join(spaces.get(c) or re.escape(c) for c in formats.LEAD) + "]*"  # what `extract` skips
    fmt = task.answer_format
    if fmt is AnswerFormat.LETTER:
        return rf"^{lead}([A-Z])(?![A-Za-z0-9])", {}
    if fmt.closed:
        words = task.options or formats.WORD_SETS[fmt]
        return rf"(?i)^{lead}({'|'.join(re.escape(w) for w in words)})(?![A-Za-z])", {"ignore_case": True}
    if fmt is AnswerFormat.INTEGER:  # approximate: normalise_number also maps a Unicode minus
        # the lookahead also refuses a shorter number inside a longer one ("12x" must not read as "1")
        return rf"^{lead}({formats.NUMBER})(?![A-Za-z\d]|\.\d)", {"regexes_to_ignore": [",", r"^\+", r"\.0+$"]}
    # free text, approximate: the first line; whitespace ignored, case ignored
    return r"^[\s$]*([^\n]*)", {"ignore_case": True, "regexes_to_ignore": [r"\s+", r"\.$"]}


class _Dumper(yaml.SafeDumper):
    """Strings with line breaks or tabs double-quoted ("\\n"), as a reader expects them, not folded over lines."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style='"' if any(c in s for c in "\n\r\t") else None))


def _task_yaml(comment: str, config: dict[str, Any]) -> str:
    """A task file: the comment as `#` lines, then the config as block-style YAML (PyYAML, keys in order)."""
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment.strip().split("\n"))
    return head + yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=float("inf"))


def _dataset(data_file: Path) -> dict[str, Any]:
    # datasets resolves data_files against the working directory: the path is absolute so lm_eval runs from
    # anywhere. Moving the folder means re-running `bench export lm-eval` (or editing this line).
    return {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}}, "test_split": "test"}


@dataclass(frozen=True, kw_only=True)
class Export:
    """An export's files (name -> text) and its task names; `write` puts them in `folder`."""

    folder: Path
    name: str
    files: dict[str, str]
    answer_tasks: tuple[str, ...]
    model_args: dict[str, Any]

    @property
    def cot_task(self) -> str:
        return f"{self.name}_cot"

    def write(self) -> Path:
        for fname, text in self.files.items():
            atomic_write_text(self.folder / fname, text)
        return self.folder


def lm_model_args(run: StoredRun, codec: Any, *, batch_size: int = 8) -> tuple[str, dict[str, Any]]:
    """lm-eval's model type and arguments for the run's model: the same local folder, dtype and special tokens."""
    from harness.backends.models import resolve_model

    backend = run.spec.backend
    if backend not in LM_EVAL_BACKENDS:
        raise BenchError(f"lm-eval cross-checks need a run on the hf or vllm backend, not {backend!r}: re-run with --backend hf")
    resolved = resolve_model(run.spec.model)
    args: dict[str, Any] = {"pretrained": resolved.path, "dtype": run.spec.dtype,
                            "add_bos_token": not codec.use_chat_template, "batch_size": batch_size}
    if not Path(resolved.path).is_dir():
        args["revision"] = resolved.revision
    if backend == "hf":
        args["device"] = run.device  # where the harness's HF backend ran
    return LM_EVAL_BACKENDS[backend], args


def build_export(run: StoredRun, task: Task, examples: Sequence[Example], codec: Any, folder: str | Path, *,
                 reasoning: Mapping[str, str] | None = None, reasoning_source: str = "the run (harness)",
                 name: str | None = None, model_args: tuple[str, dict[str, Any]] | None = None) -> Export:
    """All files of an export (nothing is written): YAML, data and README. `reasoning` (example id -> text)
    defaults to the run's own; `model_args` (lm-eval model type and arguments) to `lm_model_args`."""
    folder = Path(folder).resolve()
    name = name or run.name
    spec = run.spec
    harness_reasoning = {str(r.id): r.reasoning or "" for r in run.predictions}
    reasoning = dict(reasoning) if reasoning is not None else harness_reasoning
    missing = [ex.id for ex in examples if ex.id not in reasoning]
    if missing:
        raise BenchError(
            f"no reasoning for {len(missing)} examples (first {missing[0]}): pass the samples file of the complete {name}_cot run"
        )
    kind, args = model_args or lm_model_args(run, codec)
    about = (
        f"greater-bench export of run {spec.run_id}\n"
        f"task {spec.task}, model {spec.model} ({spec.dtype}), position {spec.position.value}, "
        f"max new tokens {spec.max_new_tokens}, {len(examples)} examples\n"
        f"instruction: {json.dumps(run.instruction)}\n\n"
        "The data file holds the FULLY RENDERED text (chat template applied by greater-bench): run lm_eval\n"
        f"WITHOUT --apply_chat_template and with add_bos_token={args['add_bos_token']}, so lm-eval feeds the\n"
        "model the same token ids as the harness. See README.md."
    )
    files: dict[str, str] = {}
    cot_file, ans_file = folder / f"{name}_cot.jsonl", folder / f"{name}_answer.jsonl"
    files[cot_file.name] = _jsonl(cot_rows(examples, run.instruction, spec.position, codec, harness_reasoning))
    files[f"{name}_cot.yaml"] = _task_yaml(
        about + "\n\nStage 1, the reasoning: greedy, stopped by end of sequence only. exact_match = share of\n"
        "examples whose reasoning equals the harness's stored reasoning (the target).",
        {"task": f"{name}_cot", **_dataset(cot_file), "output_type": "generate_until", "doc_to_text": "prompt",
         "doc_to_target": "harness_reasoning", "target_delimiter": "",
         "generation_kwargs": {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": spec.max_new_tokens},
         "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
         "metadata": {"version": 1}},
    )
    files[ans_file.name] = _jsonl(answer_rows(task, examples, run.instruction, spec.position, codec, reasoning))
    stage2 = f"Stage 2, after the reasoning of {reasoning_source} and the extractor text: "
    answer_tasks = []
    if task.answer_format.closed:
        answer_tasks.append(f"{name}_options")
        files[f"{name}_options.yaml"] = _task_yaml(
            about + "\n\n" + stage2 + "the `options` reading,\nthe allowed answer with the highest log-likelihood.",
            {"task": f"{name}_options", **_dataset(ans_file), "output_type": "multiple_choice",
             "doc_to_text": "context", "doc_to_choice": "choices", "doc_to_target": "gold_index",
             "target_delimiter": "",
             "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
             "metadata": {"version": 1}},
        )
    pattern, em_kwargs = greedy_filter(task)
    answer_tasks.append(f"{name}_greedy")
    exact = "exactly" if task.answer_format.closed else "approximately (integers and free text)"
    files[f"{name}_greedy.yaml"] = _task_yaml(
        about + "\n\n" + stage2 + "the `greedy` reading,\na short greedy continuation, read by a regex that "
        f"mirrors the harness's extraction {exact}.",
        {"task": f"{name}_greedy", **_dataset(ans_file), "output_type": "generate_until", "doc_to_text": "context",
         "doc_to_target": "gold", "target_delimiter": "",
         "generation_kwargs": {"until": ["\n"], "do_sample": False, "temperature": 0.0, "max_gen_toks": task.answer_max_tokens},
         "filter_list": [{"name": "greedy", "filter": [
             {"function": "regex", "regex_pattern": pattern, "group_select": 0, "fallback": "[invalid]"},
             {"function": "take_first"}]}],
         "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, **em_kwargs}],
         "metadata": {"version": 1}},
    )
    files["README.md"] = _readme(run, name, folder, kind, args, answer_tasks, reasoning_source, len(examples))
    return Export(folder=folder, name=name, files=files, answer_tasks=tuple(answer_tasks), model_args=args)


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _readme(run: StoredRun, name: str, folder: Path, kind: str, args: Mapping[str, Any], answer_tasks: Sequence[str],
            reasoning_source: str, n: int) -> str:
    margs = ",".join(f"{k}={v}" for k, v in args.items() if k not in ("batch_size", "device"))
    base = (f"lm_eval --model {kind} --model_args {margs} --include_path {folder} "
            f"--batch_size {args.get('batch_size', 8)}" + (f" --device {args.get('device', 'cpu')}" if kind == "hf" else ""))
    out = folder / "lm-eval-out"
    rows = {
        f"{name}_cot": "generate_until, greedy, stops at end of sequence | the reasoning (exact_match: share identical to the run's)",
        f"{name}_options": "multiple_choice over the allowed answers | `options`",
        f"{name}_greedy": "generate_until until a newline, regex filter | `greedy`",
    }
    table = "\n".join(f"| `{t}` | {rows[t]} |" for t in (f"{name}_cot", *answer_tasks))
    return f"""# lm-eval tasks for run `{run.spec.run_id}`

Task `{run.spec.task}`, model `{run.spec.model}` ({run.spec.dtype}), instruction position `{run.spec.position.value}`,
{n} examples, reasoning up to {run.spec.max_new_tokens} new tokens. Instruction:

    {run.instruction!r}

The harness scores a prompt in two stages (reasoning, then the extractor text and the answer); lm-eval
tasks are single-stage, so the run is split into:

| task | lm-eval type | harness reading |
|---|---|---|
{table}

The answer tasks' contexts use the reasoning of {reasoning_source}.

**The data files hold the fully rendered text** (the model's chat template applied by greater-bench), the
only way to guarantee lm-eval feeds the same token ids as the harness for every template. So do NOT pass
`--apply_chat_template` or `--num_fewshot`, and keep `add_bos_token={args['add_bos_token']}` in the model arguments.
The data paths in the YAML files are absolute: after moving this folder, export again.

## Commands

Stage 1, the reasoning (keep the samples: stage 2 can use lm-eval's own reasoning):

    {base} --tasks {name}_cot --log_samples --output_path {out}

Stage 2, the answers after the reasoning stored here:

    {base} --tasks {",".join(answer_tasks)}

Stage 2 after lm-eval's own reasoning from stage 1 (samples file written by the first command):

    bench export lm-eval --run {run.path.resolve()} --out {folder}-lm-eval-reasoning \\
        --reasoning {out}/<model>/samples_{name}_cot_<date>.jsonl
    {base.replace(str(folder), str(folder) + "-lm-eval-reasoning")} --tasks {",".join(answer_tasks)}

`bench eval --engine lm-eval` runs all of this in-process and compares the answers with the harness's.
"""


def read_lmeval_reasoning(path: str | Path) -> dict[str, str]:
    """Example id -> reasoning from an lm-eval samples file of a `_cot` task (`--log_samples`)."""
    out = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for line in filter(str.strip, lines):
            s = json.loads(line)
            out[str(s["doc"]["id"])] = s["resps"][0][0]
    except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise BenchError(
            f"cannot read lm-eval samples from {path} ({type(e).__name__}): "
            "pass the samples_<name>_cot_*.jsonl file lm_eval --log_samples wrote"
        ) from None
    return out


def export_run(run_dir: str | Path, out: str | Path | None = None, *, data_dir: str | Path | None = None,
               reasoning_file: str | Path | None = None, name: str | None = None) -> Export:
    """`bench export lm-eval`: write the tasks of a stored run (to RUN_DIR/lmeval-export by default)."""
    run = load_stored_run(run_dir)
    task, examples = run_examples(run, data_dir)
    codec = load_codec(run.spec.model)
    reasoning, source = None, "the run (harness)"
    if reasoning_file is not None:
        reasoning, source = read_lmeval_reasoning(reasoning_file), f"lm-eval ({Path(reasoning_file).name})"
    folder = Path(out) if out is not None else run.path / "lmeval-export"
    export = build_export(run, task, examples, codec, folder, reasoning=reasoning, reasoning_source=source, name=name)
    export.write()
    return export
