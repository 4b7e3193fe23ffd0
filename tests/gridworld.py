"""A scripted world for the grid, report and transfer tests: a yes/no task, task models whose accuracy
depends on the instruction, a multi-step optimizer that logs its steps (and can crash once at a chosen
step), and hand-made run folders with known answers. No model weights."""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.backends.fake import ScriptedGenerator
from harness.core.io import atomic_write_json, write_jsonl
from harness.core.spec import RunSpec, TransferSource
from harness.core.types import (
    SCHEMA_VERSION,
    AnswerFormat,
    Example,
    Needs,
    OptimizeResult,
    PromptCandidate,
    Splits,
)
from tasks.base import make_task

TASK_NAME = "custom:grid"


def _example(split: str, i: int) -> Example:
    n = 5 * i + {"train": 0, "dev": 1, "test": 2}[split]
    return Example(id=f"{split}{i}", input=f"[{split} {i}] Is {n} an even number?", target="Yes" if n % 2 == 0 else "No")


def _load(data_dir: Any = None, seed: Any = None) -> Splits:
    return Splits(
        train=tuple(_example("train", i) for i in range(6)), dev=tuple(_example("dev", i) for i in range(4)),
        test=tuple(_example("test", i) for i in range(6)), rule="synthetic",
    )


TASK = make_task(TASK_NAME, AnswerFormat.YES_NO, ("Yes", "No"), _load)


def quality(instruction: str, model: str) -> float:
    words = instruction.lower()
    base = 0.2 if model.endswith("b") else 0.3
    return min(1.0, base + 0.3 * sum(w in words for w in ("step", "check", "good")))


class Crash(Exception):
    """A simulated crash (a killed process)."""


class TaskModel(ScriptedGenerator):
    """Answers right when a hash of (instruction, question) falls under the instruction's quality.
    `crash_on` (a substring of the rendered prompt) raises once, like a process killed mid-evaluation."""

    def __init__(self, model: str = "fake-a") -> None:
        self.model_name = model
        self.crash_on: str | None = None
        super().__init__(self._reply, identity=f"fake:{model}")

    def _reply(self, rendered: str, params: Any, index: int) -> str:
        if os.environ.get("GRIDWORLD_SLOW"):  # seconds per reply: slow enough to be killed mid-cell
            time.sleep(float(os.environ["GRIDWORLD_SLOW"]))
        if self.crash_on and self.crash_on in rendered:
            self.crash_on = None
            raise Crash(f"simulated crash at {rendered[:40]!r}")
        if "final answer" in rendered:
            m = re.search(r"so the answer is (Yes|No)", rendered)
            return m.group(1) if m else "Maybe"
        user = rendered.removeprefix("USER: ").partition("\nASSISTANT:")[0]
        question, _, instruction = user.partition("number?")
        n = int(re.search(r"Is (\d+)", question).group(1))
        gold = "Yes" if n % 2 == 0 else "No"
        h = zlib.crc32(f"{instruction.strip()}|{question}".encode()) % 1000 / 1000
        answer = gold if h < quality(instruction, self.model_name) else ("No" if gold == "Yes" else "Yes")
        return f"{n} halves, so the answer is {answer}."


def open_task_model(model: str, backend: str, dtype: str) -> TaskModel:
    """An opener a child process can import ("gridworld:open_task_model", with tests/ on PYTHONPATH).
    Every call appends "<pid> <model>" to $GRIDWORLD_OPEN_LOG when set; a model named "broken-..." fails to
    load, one named "dies-..." kills its process (as the kernel does when memory runs out);
    $GRIDWORLD_CRASH_ON arms `TaskModel.crash_on`."""
    if os.environ.get("GRIDWORLD_OPEN_LOG"):
        with open(os.environ["GRIDWORLD_OPEN_LOG"], "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {model}\n")
    if model.startswith("broken-"):
        raise RuntimeError(f"no weights for {model}")
    if model.startswith("dies-"):
        os.kill(os.getpid(), signal.SIGKILL)
    gen = TaskModel(model)
    gen.crash_on = os.environ.get("GRIDWORLD_CRASH_ON") or None
    return gen


def child_setup(monkeypatch: Any, folder: Path) -> Path:
    """For tests with real child processes: tests/ importable in children, failed children's logs kept in
    `folder`, every model opened logged to the file returned (read it with `opened`)."""
    tests = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p))
    log = folder / "opened.log"
    monkeypatch.setenv("GRIDWORLD_OPEN_LOG", str(log))
    monkeypatch.delenv("GRIDWORLD_CRASH_ON", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return log


def opened(log: Path) -> list[tuple[int, str]]:
    """(pid, model) of every model `open_task_model` opened, in order."""
    if not log.exists():
        return []
    return [(int(pid), model) for pid, model in (line.split() for line in log.read_text().splitlines())]


def write_task_file(folder: Path) -> str:
    """The grid task as a custom JSONL task (a child process loads it by name); returns the task name."""
    splits = _load()
    rows = [{"id": ex.id, "input": ex.input, "target": ex.target, "split": name}
            for name in ("train", "dev", "test") for ex in splits.get(name)]
    path = folder / "grid.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"custom:{path}"


CANDIDATES = ("Think.", "Think step by step.", "Check each step.", "Answer now.", "Be good and check.")


class StepOptimizer:
    """Scores one random candidate per step on the train split; logs every step; resumes from the log.
    `crash_at = k` raises `exc` when step k starts, once."""

    name = "fake-steps"
    needs = Needs(optimizer_llm=True)  # opened only when a run names another optimizer LLM
    needs_gradients = False

    def __init__(self, steps: int = 4, crash_at: int | None = None, exc: type[BaseException] = Crash) -> None:
        self.steps, self.crash_at, self.exc = steps, crash_at, exc
        self.started: list[int] = []

    def optimize(self, task: Any, train: Sequence[Example], dev: Sequence[Example], ctx: Any) -> OptimizeResult:
        state = ctx.resume() or {"next": 0, "best": CANDIDATES[0], "best_acc": -1.0}
        while state["next"] < self.steps:
            k = state["next"]
            self.started.append(k)
            if self.crash_at == k:
                self.crash_at = None
                raise self.exc(f"simulated crash at step {k}")
            text = f"{ctx.rng.choice(CANDIDATES)} ({ctx.rng.randint(0, 99)})"
            acc = ctx.score(task, train, text).accuracy
            best = (text, acc) if acc > state["best_acc"] else (state["best"], state["best_acc"])
            state = {"next": k + 1, "best": best[0], "best_acc": best[1]}
            ctx.log_step({"kind": "step", "prompt": text, "train_accuracy": acc}, state)
        best = PromptCandidate(text=state["best"], score=state["best_acc"])
        return OptimizeResult(best=best, candidates=(best,), cost=ctx.cost, meta={"steps": self.steps})


# ------------------------------------------------------------------------------------------ records by hand


def write_run(
    root: Path, *, method: str, task: str = "bbh:navigate", model: str = "m", seed: int = 0, correct: Sequence[bool],
    preset: str = "cpu", ci95: tuple[float, float] = (0.0, 1.0), zs: float | None = None, dev: float | None = None,
    cost: dict[str, float] | None = None, prompt: str = "p", source: RunSpec | None = None,
    steps: Sequence[dict[str, Any]] = (), backend: str = "hf", other_readings: Mapping[str, float] | None = None,
    majority: float | None = None,
) -> RunSpec:
    """A finished run folder written by hand: optimize cell, or (with `source`) a transfer eval. The primary
    reading is greedy; `other_readings` adds the test accuracy of other readings (options, fallback)."""
    acc = sum(correct) / len(correct)
    rows = [{"id": f"ex{i}", "greedy": "Yes", "greedy_correct": bool(c), "gold": "Yes"} for i, c in enumerate(correct)]
    test = {"accuracy": acc, "primary": "greedy", "n": len(rows),
            "readings": {"greedy": {"accuracy": acc, "n": len(rows), "ci95": list(ci95), "invalid": 0.0}}}
    if majority is not None:
        test["majority"] = {"answer": "Yes", "accuracy": majority}
    for name, value in (other_readings or {}).items():
        test["readings"][name] = {"accuracy": value, "n": len(rows), "ci95": [0.0, 1.0], "invalid": 0.0}
    if source is None:
        spec = RunSpec(kind="optimize", task=task, model=model, data="fp", method=method, seed=seed, backend=backend,
                       preset=preset)
        summary = {"task": task, "model": model, "method": method, "preset": preset, "seed": seed, "prompt": prompt,
                   "dev_accuracy": dev, "test_accuracy": acc, "primary": "greedy", "test": test,
                   "zero_shot_cot_test_accuracy": zs, "cost": cost or {}, "candidates": [prompt], "meta": {}}
    else:
        spec = RunSpec(kind="eval", task=source.task, model=model, data="fp", method=source.method, prompt=prompt,
                       seed=source.seed, source=TransferSource(run=source.run_id, model=source.model, preset=source.preset))
        summary = {**test, "task": source.task, "split": "test", "model": model}
    folder = root / spec.run_id
    atomic_write_json(folder / "spec.json", {"schema": SCHEMA_VERSION, "run_id": spec.run_id, "spec": spec.to_dict()})
    if steps:
        write_jsonl(folder / "steps.jsonl", [{"step": i, **s, "state": {"big": "x"}, "rng": []} for i, s in enumerate(steps)])
    write_jsonl(folder / "predictions.jsonl", rows)
    atomic_write_json(folder / "summary.json", {"schema": SCHEMA_VERSION, "run_id": spec.run_id, **summary})
    return spec


def snapshot(out: Path) -> dict[str, Any]:
    """Every run folder's records without what legitimately differs between two runs (wall times, dates)."""
    snap = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        summary = json.loads((folder / "summary.json").read_text())
        summary["cost"].pop("wall_seconds")
        summary["test"].pop("seconds")
        if "evaluation" in summary:  # eval cells have none
            summary["evaluation"].pop("seconds")
        summary.pop("ran_on", None)  # where it ran (executor, host, pid): provenance, not the result
        steps = []
        if (folder / "steps.jsonl").exists():
            for line in (folder / "steps.jsonl").read_text().splitlines():
                row = json.loads(line)
                row["cost"].pop("wall_seconds")
                steps.append(row)
        snap[folder.name] = {
            "spec": json.loads((folder / "spec.json").read_text())["spec"],
            "summary": summary,
            "predictions": (folder / "predictions.jsonl").read_text(),
            "steps": steps,
            "files": sorted(p.name for p in folder.iterdir()),
        }
    return snap
