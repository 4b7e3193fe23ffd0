"""Options resolved once: `resolve_grid` is the one place a grid's options become specs, and what runs after it
(`bench run`, `bench optimize`) expands the tasks once, builds each spec once, configures each method once and
hashes each task's rows once. The committed run folders keep their run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeworld import add_method
from gridworld import TASK, TASK_NAME, StepOptimizer, TaskModel
from typer.testing import CliRunner

import harness.cli.commands
import harness.cli.grid
import harness.runner.data
from harness.cli import app
from harness.core.spec import RunSpec
from harness.runner.cells import Cell, GridSettings, resolve_grid
from harness.runner.data import RunData

RESULTS = Path(__file__).resolve().parent.parent / "results"


def committed_specs() -> list[tuple[str, RunSpec]]:
    return [(p.parent.name, RunSpec.from_dict(json.loads(p.read_text())["spec"]))
            for p in sorted(RESULTS.glob("*/spec.json"))]


def test_every_committed_optimize_run_resolves_to_its_run_id():
    """The committed optimize runs (the reference results) are found again by the specs `bench run` resolves from
    the options that made them: same fields, same data fingerprint, same run id."""
    data = RunData()
    optimize = [(name, s) for name, s in committed_specs() if s.kind == "optimize"]
    assert len(optimize) >= 70
    for name, s in optimize:
        settings = GridSettings(
            preset=s.preset, position=s.position, max_new_tokens=s.max_new_tokens, limit=s.limit,
            reading=s.primary_reading, dtype=s.dtype, backend=s.backend, overrides=s.overrides,
            budget_tokens=s.budget.task_tokens if s.budget else None, length_penalty=s.length_penalty,
            optimizer_model=s.optimizer.model if s.optimizer else None,
            optimizer_backend=s.optimizer.backend if s.optimizer else None,
            base_url=s.optimizer.base_url if s.optimizer else None,
        )
        (spec,) = resolve_grid([s.method], [s.task], [s.model], [s.seed], settings, data=data).specs
        assert spec == s and spec.run_id == name


class Counts:
    """How often the work that should happen once per command happened."""

    def __init__(self, monkeypatch) -> None:
        import tasks

        self.expanded = self.hashed = self.specs = 0
        self.built: list[str] = []
        real_expand, real_hash, real_spec = tasks.expand_tasks, harness.runner.data.data_fingerprint, Cell.spec

        def expand(*a, **kw):
            self.expanded += 1
            return real_expand(*a, **kw)

        def fingerprint(*a, **kw):
            self.hashed += 1
            return real_hash(*a, **kw)

        def spec(cell, *a, **kw):
            self.specs += 1
            return real_spec(cell, *a, **kw)

        monkeypatch.setattr(tasks, "expand_tasks", expand)
        monkeypatch.setattr(harness.runner.data, "data_fingerprint", fingerprint)
        monkeypatch.setattr(Cell, "spec", spec)
        monkeypatch.setattr(tasks, "get_task", lambda name, real=tasks.get_task: TASK if name == TASK_NAME else real(name))
        for method in ("fake-a-steps", "fake-b-steps"):
            add_method(monkeypatch, method, lambda preset="cpu", _m=method, **kw: self.built.append(_m) or StepOptimizer(steps=2))


@pytest.fixture
def counts(monkeypatch):
    import harness.backends

    monkeypatch.setattr(harness.backends, "open_generator", lambda model, **kw: TaskModel(model))
    for module in (harness.cli.grid, harness.cli.commands):  # scripted models
        monkeypatch.setattr(module, "check_model", lambda model, backend, base_url=None: None)
    return Counts(monkeypatch)


def test_bench_run_resolves_its_options_once(tmp_path, counts):
    args = ["run", "--methods", "fake-a-steps,fake-b-steps", "--tasks", TASK_NAME, "--models", "fake-a,fake-b",
            "--seeds", "0-1", "--preset", "smoke", "--backend", "hf", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(list(tmp_path.glob("*/summary.json"))) == 8
    assert counts.expanded == 1  # the task list, once
    assert counts.specs == 8  # each cell's spec, once
    assert counts.hashed == 1  # one task: its rows hashed once, however many cells read them
    assert sorted(counts.built) == ["fake-a-steps", "fake-b-steps"]  # each method configured once for 8 cells

    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (counts.expanded, counts.specs, counts.hashed, len(counts.built)) == (2, 16, 2, 4)  # once more each


def test_bench_optimize_builds_its_optimizer_and_hashes_its_rows_once(tmp_path, counts):
    args = ["optimize", "--method", "fake-a-steps", "--task", TASK_NAME, "--model", "fake-a", "--preset", "smoke",
            "--backend", "hf", "--results", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert counts.built == ["fake-a-steps"] and counts.hashed == 1 and counts.specs == 1
    again = CliRunner().invoke(app, args)  # finished: read back, and still resolved once
    assert again.exit_code == 0 and counts.built == ["fake-a-steps"] * 2 and counts.hashed == 2


def test_a_run_data_hashes_each_set_of_rows_once(counts):
    data = RunData()
    first = data.optimize_fingerprint(TASK_NAME)
    assert data.optimize_fingerprint(TASK_NAME) == first and counts.hashed == 1
    spec = resolve_grid(["fake-a-steps"], [TASK_NAME], ["fake-a"], [0], GridSettings(preset="smoke"), data=data).specs[0]
    data.check(spec)
    data.check(spec)
    assert counts.hashed == 1
    assert data.optimize_fingerprint(TASK_NAME, limit=2) != first and counts.hashed == 2  # other rows: hashed too
