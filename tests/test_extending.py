"""docs/extending.md, followed literally: a method and a task added as one file plus one registration line each."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from fakeworld import scripted_models

from harness.core.methods import describe_methods, load_methods, make_optimizer
from harness.core.spec import RunSpec
from harness.runner.cell import run_cell
from harness.runner.data import RunData
from harness.runner.pool import ModelPool

DOC = (Path(__file__).parent.parent / "docs" / "extending.md").read_text()


def block(section: str, lang: str, k: int = 0) -> str:
    """The k-th fenced `lang` block of a section of docs/extending.md."""
    text = DOC.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)[k]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A temporary package `myplugins` on sys.path, as an installed distribution with entry points."""
    pkg = tmp_path / "myplugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m.startswith("myplugins")]:
        del sys.modules[name]


def test_add_a_method_as_documented(plugin, tmp_path):
    (plugin / "mymethod.py").write_text(block("Add a method", "python"))  # step 1: the file
    line = block("Add a method", "toml").splitlines()[1].replace("baselines.", "myplugins.")  # step 2: the line
    line = line.replace('"', "")  # TOML string -> entry_points.txt, as pip writes it
    dist = tmp_path / "myplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[greater_bench.methods]\n{line}\n")
    assert "mymethod" in load_methods()
    assert dict(describe_methods())["mymethod"].startswith("My method")
    opt = make_optimizer("mymethod", preset="smoke")
    assert opt.config.n_train == 2

    from fakeworld import parity_task

    task = parity_task()
    import tasks

    real = tasks.get_task
    tasks.get_task = lambda name: task if name == task.name else real(name)
    try:
        data = RunData().optimize_fingerprint(task.name)
        spec = RunSpec(kind="optimize", task=task.name, model="fake", data=data, method="mymethod", preset="smoke",
                       max_new_tokens=8)
        gen, _ = scripted_models()
        record = run_cell(spec, pool=ModelPool(opener=lambda *a: gen), out=tmp_path / "results")
    finally:
        tasks.get_task = real
    assert record["method"] == "mymethod" and record["prompt"] in ("Let's think step by step.", "Answer carefully.")
    steps = (tmp_path / "results" / spec.run_id / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 1 and "train_accuracy" in json.loads(steps[0])


def test_add_a_task_as_documented(plugin, tmp_path, monkeypatch):
    (plugin / "mytask.py").write_text(block("Add a task", "python", 0))  # step 1: the file
    rows = [{"q": f"Is {i} even?", "a": "Yes" if i % 2 == 0 else "No"} for i in range(8)]
    (tmp_path / "mytask.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from myplugins import mytask

    import tasks
    from tasks import REGISTRY

    monkeypatch.setattr(REGISTRY, "_items", dict(REGISTRY._items))  # undone after the test
    exec(block("Add a task", "python", 1), {"REGISTRY": REGISTRY, "mytask": mytask})  # step 2: the line
    assert "mytask" in tasks.task_names() and tasks.expand_tasks("mytask") == ["mytask"]
    task = tasks.get_task("mytask")
    splits = task.load(data_dir=tmp_path)
    assert len(splits.test) == 4 and splits.test[0].target == "Yes"
    assert task.score(task.extract(" Yes", splits.test[0]), "Yes")
