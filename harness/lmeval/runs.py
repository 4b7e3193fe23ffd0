"""The stored run an lm-eval export or cross-check starts from: its spec, prompt, readings and per-example records
(read with the records' loader, `harness.core.records`), its examples from the task data, and the model's codec."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.records import PREDICTIONS, SPEC, SUMMARY, PredictionRecord, load_run
from harness.core.spec import RunSpec
from harness.core.types import BenchError, Example, Task


@dataclass(frozen=True, kw_only=True)
class StoredRun:
    """What a finished run folder says about the prompt it scored and the examples it scored it on."""

    path: Path
    spec: RunSpec
    instruction: str | None  # eval runs: the spec's prompt; optimize runs: the best prompt found
    readings: Mapping[str, Mapping[str, Any]]  # the harness's readings of the scored examples (accuracy, ci95)
    predictions: Sequence[PredictionRecord]  # per example, in evaluation order
    device: str = "cpu"  # where the harness's HF backend ran (spec.json; older runs: cpu, the only device they had)

    @property
    def name(self) -> str:
        """A short, unique lm-eval task prefix: "gb_bbh_navigate_2688b1f13c" (task slug + run hash)."""
        slug = self.spec.task.rsplit("/", 1)[-1].removesuffix(".jsonl")
        slug = re.sub(r"[^A-Za-z0-9]+", "_", slug).strip("_").lower()
        return f"gb_{slug}_{self.spec.run_id.rsplit('-', 1)[-1]}"


def load_stored_run(path: str | Path) -> StoredRun:
    """The `StoredRun` of a finished run folder, read with the records' loader."""
    path = Path(path)
    if not (path / SUMMARY).exists() or not (path / SPEC).exists():
        raise BenchError(f"{path} is not a finished run folder (no spec.json/summary.json): pass a results/<run id> folder")
    run = load_run(path, predictions=True)
    try:
        spec = run.spec.run_spec
    except (KeyError, TypeError) as e:
        raise BenchError(f"malformed record {path / SPEC} ({type(e).__name__}: {e}): re-run the run") from None
    if run.predictions is None:
        raise BenchError(f"no {PREDICTIONS} in {path} (per-example files stay out of git): re-run the run here first")
    return StoredRun(path=path, spec=spec, instruction=run.prompt, readings=run.test.readings if run.test else {},
                     predictions=run.predictions, device=str(run.spec.device or "cpu"))


def run_examples(run: StoredRun, data_dir: str | Path | None = None) -> tuple[Task, list[Example]]:
    """The run's task and its scored examples (with their meta, e.g. letter options), in the run's order."""
    from tasks import get_task

    task = get_task(run.spec.task)
    split = run.spec.split if run.spec.kind == "eval" else "test"
    by_id = {ex.id: ex for ex in task.load(data_dir=data_dir, seed=run.spec.split_seed).get(split)}
    examples = []
    for row in run.predictions:
        ex = by_id.get(str(row.id))
        if ex is None or ex.input != row.input:
            raise BenchError(f"example {row.id} of {run.spec.task} differs from the run's: point --data-dir at the data the run used")
        examples.append(ex)
    return task, examples


def load_codec(model: str) -> Any:
    """The model's `PromptCodec` (rendering and tokenisation) from its tokenizer alone: no weights loaded."""
    from transformers import AutoTokenizer

    from harness.backends.codec import PromptCodec
    from harness.backends.models import resolve_model

    resolved = resolve_model(model)
    local = Path(resolved.path).is_dir()
    kw = {} if local else {"revision": resolved.revision}
    try:
        tok = AutoTokenizer.from_pretrained(resolved.path, **kw)
    except OSError as e:
        first = str(e).splitlines()[0][:120]
        raise BenchError(f"cannot load the tokenizer of {model!r} ({first}): pass a local folder or a packaged alias") from None
    return PromptCodec(tok, resolved.chat_template)
