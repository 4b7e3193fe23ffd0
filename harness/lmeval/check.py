"""`bench eval --engine lm-eval`: re-score a stored run with lm-eval in-process and compare, reading by reading.

Stage 1 runs the exported `<name>_cot` task (harness.lmeval.export); stage 2 rebuilds the answer tasks from lm-eval's
own reasoning and runs them; `compare` reads lm-eval's raw outputs with the task's own extract/score functions
and puts them beside the run's: accuracy per reading, per-example agreement, whether lm-eval's accuracy lies
inside the run's bootstrap interval, and the ids of the examples that differ. The record is
RUN_DIR/lmeval.json; the tasks lm-eval ran stay in RUN_DIR/lmeval/ (re-runnable with the lm_eval CLI).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.io import atomic_write_json
from harness.core.types import READINGS, SCHEMA_VERSION, Example, Task
from harness.lmeval.export import build_export, lm_model_args, require_lm_eval
from harness.lmeval.runs import StoredRun, load_codec, load_stored_run, run_examples


def compare(task: Task, examples: Sequence[Example], run: StoredRun, lm_reasoning: Mapping[str, str],
            lm_answers: Mapping[str, str], lm_option_lls: Mapping[str, Sequence[float]] | None) -> dict[str, Any]:
    """Per reading: lm-eval's accuracy beside the harness's, per-example agreement, the ids that differ.

    Pure: lm-eval's raw outputs are read with the task's own extract/score functions, so a difference is
    a difference in what the model produced or how it was scored, never in answer parsing.
    """
    rows = {str(r.id): r for r in run.predictions}
    per_example, preds = [], {r: ([], []) for r in READINGS}  # reading -> (lm correct, same answer)
    for ex in examples:
        h = rows[ex.id]
        lm: dict[str, Any] = {
            "greedy": task.extract(lm_answers[ex.id], ex),
            "fallback": task.extract_fallback(lm_reasoning[ex.id], ex),
        }
        rec: dict[str, Any] = {"id": ex.id, "gold": ex.target, "reasoning_identical": lm_reasoning[ex.id] == h.reasoning,
                               # the raw text after the extractor: agreement of the greedy reading is trivial when
                               # neither engine's text parses (SmolLM2 writes "1"), identical texts are not
                               "answer_identical": lm_answers[ex.id] == h.get("answer_text")}
        if lm_option_lls is not None:
            opts = task.options_for(ex)
            lls = list(lm_option_lls[ex.id])
            lm["options"] = opts[int(np.argmax(lls))]
            rec["lm_eval_option_loglik"] = dict(zip(opts, lls))
            if rec["reasoning_identical"] and h.get("option_loglik"):
                rec["max_loglik_difference"] = max(abs(h.get("option_loglik")[o] - v) for o, v in zip(opts, lls))
        for reading, pred in lm.items():
            if reading not in run.readings:
                continue
            rec[reading] = {"harness": h.get(reading), "lm_eval": pred}
            preds[reading][0].append(task.score(pred, ex.target))
            preds[reading][1].append(pred == h.get(reading))
        per_example.append(rec)

    readings = {}
    for reading, (correct, same) in preds.items():
        if not correct:
            continue
        ours = run.readings[reading]
        acc = sum(correct) / len(correct)
        lo, hi = ours["ci95"]
        differ = [r for r in per_example if r[reading]["harness"] != r[reading]["lm_eval"]]
        readings[reading] = {
            "harness": ours["accuracy"], "harness_ci95": [lo, hi], "lm_eval": acc,
            "difference": acc - ours["accuracy"], "within_harness_ci": bool(lo <= acc <= hi),
            "agreement": sum(same) / len(same), "differ": [r["id"] for r in differ],
            # a difference after identical reasoning comes from scoring, not from decoding
            "differ_with_identical_reasoning": [r["id"] for r in differ if r["reasoning_identical"]],
        }
    identical = [r["reasoning_identical"] for r in per_example]
    lls = [r["max_loglik_difference"] for r in per_example if "max_loglik_difference" in r]
    return {
        "n": len(examples),
        "reasoning": {"identical": sum(identical), "n": len(identical),
                      "differ": [r["id"] for r in per_example if not r["reasoning_identical"]]},
        "answer_text": {"identical": sum(r["answer_identical"] for r in per_example), "n": len(per_example),
                        "differ": [r["id"] for r in per_example if not r["answer_identical"]]},
        "max_option_loglik_difference": max(lls) if lls else None,
        "readings": readings,
        "examples": per_example,
    }


def open_lm(kind: str, args: Mapping[str, Any]) -> Any:
    """An lm-eval model (`hf` or `vllm`) from its arguments, loaded once for both stages."""
    require_lm_eval()
    from lm_eval.api.registry import get_model

    args = dict(args)
    extra = {"batch_size": args.pop("batch_size", 8), "device": args.pop("device", None)}
    return get_model(kind).create_from_arg_obj(args, extra)


def _simple_evaluate(lm: Any, tasks: Sequence[str], include_path: Path) -> dict[str, Any]:
    """One lm-eval run over our exported tasks only (the built-in task folders are not scanned)."""
    lm_eval = require_lm_eval()
    from lm_eval.tasks import TaskManager

    # seeds None: lm-eval leaves the process's random state alone (our decoding is greedy)
    return lm_eval.simple_evaluate(
        model=lm, tasks=list(tasks), task_manager=TaskManager(include_path=str(include_path), include_defaults=False),
        log_samples=True, bootstrap_iters=0, random_seed=None, numpy_random_seed=None, torch_random_seed=None,
    )


def _by_id(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {str(s["doc"]["id"]): s for s in samples}


def cross_check_run(run_dir: str | Path, *, data_dir: str | Path | None = None, lm: Any = None, codec: Any = None,
                    batch_size: int = 8, skip_finished: bool = True) -> dict[str, Any]:
    """Re-score a stored run with lm-eval in-process; write RUN_DIR/lmeval.json (and the tasks to RUN_DIR/lmeval/).

    Stage 1 runs `<name>_cot`; stage 2 rebuilds the answer tasks from lm-eval's own reasoning and runs them.
    `lm` (an lm-eval LM) defaults to lm-eval's `hf` or `vllm` model over the run's model folder.
    """
    require_lm_eval()
    run_dir = Path(run_dir)
    record_path = run_dir / "lmeval.json"
    if skip_finished and record_path.exists():
        return json.loads(record_path.read_text())
    t0 = time.perf_counter()
    run = load_stored_run(run_dir)
    task, examples = run_examples(run, data_dir)
    codec = codec or load_codec(run.spec.model)
    if lm is None:
        kind, args = lm_model_args(run, codec, batch_size=batch_size)
        lm = open_lm(kind, args)
    else:  # a caller's model (the tests pass in-memory ones)
        kind, args = type(lm).__name__, {"add_bos_token": not codec.use_chat_template}
    folder = run_dir / "lmeval"
    first = build_export(run, task, examples, codec, folder, model_args=(kind, args))
    first.write()
    res1 = _simple_evaluate(lm, [first.cot_task], folder)
    lm_reasoning = {i: s["resps"][0][0] for i, s in _by_id(res1["samples"][first.cot_task]).items()}
    second = build_export(run, task, examples, codec, folder, reasoning=lm_reasoning,
                          reasoning_source=f"lm-eval ({first.cot_task})", model_args=(kind, args))
    second.write()
    res2 = _simple_evaluate(lm, second.answer_tasks, folder)
    greedy = _by_id(res2["samples"][f"{second.name}_greedy"])
    options = _by_id(res2["samples"][f"{second.name}_options"]) if f"{second.name}_options" in res2["samples"] else None
    result = compare(
        task, examples, run, lm_reasoning,
        {i: s["resps"][0][0] for i, s in greedy.items()},
        {i: [r[0] for r in s["filtered_resps"]] for i, s in options.items()} if options is not None else None,
    )
    metrics = {t: {k: v for k, v in m.items() if "," in k and "stderr" not in k}
               for t, m in {**res1["results"], **res2["results"]}.items()}
    record = {
        "schema": SCHEMA_VERSION, "run_id": run.spec.run_id, "task": run.spec.task, "engine": "lm-eval",
        "lm_eval_version": _version("lm-eval"), "model": kind, "model_args": args, "include_path": str(folder),
        "tasks": [first.cot_task, *second.answer_tasks], "lm_eval_metrics": _plain(metrics),
        **result, "seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(record_path, record)
    return record


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _plain(obj: Any) -> Any:
    """numpy scalars -> Python numbers, for JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.item() if hasattr(obj, "item") else obj
