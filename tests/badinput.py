"""The world of a bad-input case and the rule every case is held to (tests/test_bad_input*.py): each `Case` is one
bad invocation of a `bench` command, refused at once, in one line, before any model loads, writing nothing.

The rule (`check`):
- the exit code is 2 (click usage errors also exit 2);
- no traceback and no exception escaped the command;
- the error is one line: the output has exactly one non-empty line, and it starts with "error:". Options whose
  type or range click checks while parsing (an enum value, a number below its minimum, a missing option) give
  click's usage error instead: then the only non-empty lines are click's "Usage: ..." and "Try '... --help'"
  lines and one "Error: ..." line, and that line names the option (an option with a fixed set of values, a
  typer choice, also the values to use);
- the line says what is wrong and what to do (`match`: substrings of it, whitespace collapsed);
- no model was loaded: loading weights (HF `_load`, the GGUF conversion of a packaged alias, a vLLM engine, an
  OpenAI client) raises `ModelLoaded` (escaping as an exception, so a load is a failure with its own message);
- nothing was half-written: every file under the test's folder is as it was (new folders may only be empty),
  and the temporary folder stays empty (no probe or temporary file left behind).

Filesystem faults are simulated (the tests run as root, for whom chmod makes nothing read-only): a read-only
folder is `tempfile.mkstemp` raising EROFS in that folder, a full disk is `os.replace` raising ENOSPC.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import app

DATA = Path(os.environ.get("BENCH_DATA_DIR") or Path(__file__).parent.parent.parent / "shared" / "data")
runner = CliRunner()


class ModelLoaded(BaseException):
    """Raised by the probe when a command loads model weights (BaseException: no handler turns it into a line)."""


# ------------------------------------------------------------------------------------------ the world of a case


@dataclass
class World:
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    loads: list[str] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.tmp / "results"

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    def file(self, name: str = "a-file", text: str = "not a folder\n") -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def folder(self, name: str) -> Path:
        p = self.tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def custom(self, rows: list[dict[str, Any]], sidecar: dict[str, Any] | None = None, name: str = "qa") -> str:
        path = self.tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if sidecar is not None:
            (self.tmp / f"{name}.jsonl.task.json").write_text(json.dumps(sidecar))
        return f"custom:{path}"

    def bbh_data(self, stem: str, text: str) -> Path:
        """A data folder whose bbh/<stem>.json holds `text`."""
        root = self.folder("data")
        (root / "bbh").mkdir(exist_ok=True)
        (root / "bbh" / f"{stem}.json").write_text(text)
        return root

    def fail_mkstemp(self, code: int, where: Callable[[Path], bool] = lambda _p: True) -> None:
        """`tempfile.mkstemp` in a folder `where` accepts raises OSError(code): a read-only or full folder."""
        real = tempfile.mkstemp

        def mkstemp(*args: Any, **kw: Any):
            folder = Path(kw.get("dir") or (args[2] if len(args) > 2 else tempfile.gettempdir()))
            if where(folder):
                raise OSError(code, os.strerror(code))
            return real(*args, **kw)

        self.monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    def fail_replace(self, code: int) -> None:
        """Every `os.replace` (the last step of every record write) raises OSError(code): a full disk."""

        def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            raise OSError(code, os.strerror(code), str(dst))

        self.monkeypatch.setattr(os, "replace", replace)

    def hub_unreachable(self) -> None:
        """No data folder anywhere and the hub at a closed local port."""
        for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "BENCH_DATA_DIR"):
            self.monkeypatch.delenv(flag, raising=False)

    def write_run(self, **kw: Any):
        from gridworld import write_run

        kw.setdefault("method", "greater")
        kw.setdefault("correct", [True, False])
        return write_run(self.results, **kw)


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[World], list[str]] | list[str]
    match: tuple[str, ...] = ()  # substrings of the one line, or of a usage error's "Error:" line (whitespace collapsed)
    usage: str | None = None  # a click usage error naming this option
    setup: Callable[[World], None] | None = None


def R(w: World) -> str:
    return str(w.results)


def eval_(*args: str) -> Callable[[World], list[str]]:
    """`bench eval` on 2 rows of a real task with the defaults, plus `args` ({r} = the results folder, {t} = tmp)."""
    return lambda w: ["eval", "--limit", "2", "--results", R(w), *(a.format(r=R(w), t=w.tmp) for a in args)]


def optimize(*args: str) -> Callable[[World], list[str]]:
    return lambda w: ["optimize", "--preset", "smoke", "--limit", "2", "--results", R(w),
                      *(a.format(r=R(w), t=w.tmp) for a in args)]


def run(*args: str) -> Callable[[World], list[str]]:
    return lambda w: ["run", "--methods", "zs-cot,greater", "--preset", "smoke", "--limit", "2", "--results", R(w),
                      *(a.format(r=R(w), t=w.tmp) for a in args)]


def read_only(results: bool) -> Callable[[World], None]:
    def setup(w: World) -> None:
        target = w.results if results else w.cache
        w.folder(target.name)
        w.fail_mkstemp(errno.EROFS, lambda folder: folder.resolve() == target.resolve())

    return setup


def unreachable(w: World) -> None:
    w.hub_unreachable()


def one_source_run(w: World) -> None:
    w.write_run(model="tiny-a", task="bbh:navigate")


def model_folder(w: World, name: str = "tiny-b") -> str:
    """A folder that passes for a Hugging Face model (config.json): loading it trips the probe."""
    folder = w.folder(name)
    (folder / "config.json").write_text("{}")
    return str(folder)


def transfer(*args: str, models: Callable[[World], str] = model_folder) -> Callable[[World], list[str]]:
    """`bench transfer` of the stored source runs onto a model folder (or `models`), plus `args`."""
    return lambda w: ["transfer", "--eval-models", models(w), "--results", R(w), *(a.format(r=R(w), t=w.tmp) for a in args)]


RUN_BAR = ("harness/cli/grid.py run_cmd opens its rich Progress before run_grid checks tasks, data and the results "
           "folder, so a 'cells 0/? 0:00:00' line precedes the error line")


# ------------------------------------------------------------------------------------------ the checks


def old_spec(folder: Path) -> None:
    """Make a run folder's spec.json look like one written before typed run specs (spec version 1)."""
    meta = json.loads((folder / "spec.json").read_text())
    meta["spec"]["extra"] = {"preset": meta["spec"].pop("preset")}
    (folder / "spec.json").write_text(json.dumps(meta))


def tree(root: Path) -> dict[str, str]:
    """Every path under `root`: "dir" or the sha256 of the file's bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def patch_loaders(monkeypatch: pytest.MonkeyPatch, loads: list[str]) -> None:
    """Every way a command loads model weights appends to `loads` and raises `ModelLoaded`."""
    import harness.backends.hf
    import harness.backends.models
    import harness.backends.openai

    def loaded(what: str) -> Callable[..., Any]:
        def probe(*args: Any, **kw: Any) -> Any:
            loads.append(f"{what} {args[:1]}")
            raise ModelLoaded(f"{what} was called: a model was loaded before the input was refused")

        return probe

    monkeypatch.setattr(harness.backends.hf, "_load", loaded("hf weights"))
    monkeypatch.setattr(harness.backends.models, "converted_folder", loaded("GGUF conversion"))
    monkeypatch.setattr(harness.backends.openai.OpenAIGenerator, "__init__", loaded("openai client"))
    try:
        import harness.backends.vllm

        monkeypatch.setattr(harness.backends.vllm.VLLMGenerator, "__init__", loaded("vllm engine"))
    except ImportError:
        pass


@pytest.fixture(name="world")
def world_fixture(tmp_path, monkeypatch):
    """(world, system tmp folder) of one case; test modules import it as `world_fixture`."""
    w = World(tmp_path / "case", monkeypatch)
    w.tmp.mkdir()
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.chdir(w.folder("cwd"))  # the default ./bench-results and ./data lie here
    for var in ("BENCH_RESULTS", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BENCH_DATA_DIR", str(DATA))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(w.cache))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing here may reach the network
    patch_loaders(monkeypatch, w.loads)
    yield w, system_tmp


USAGE_LINES = (re.compile(r"^Usage: "), re.compile(r"^Try '.*--help' for help\.$"))


def check(case: Case, w: World, system_tmp: Path) -> None:
    if case.setup is not None:
        case.setup(w)
    args = case.args(w) if callable(case.args) else list(case.args)
    before = tree(w.tmp)
    res = runner.invoke(app, args, env={"COLUMNS": "2000"})  # one line, however long: never wrapped here
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    shown = "\n".join(lines)
    assert not w.loads, f"a model was loaded: {w.loads}\n{shown}"
    assert "Traceback" not in res.output, shown
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, f"exit code {res.exit_code}:\n{shown}"
    if case.usage is None:
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line:\n{shown}"
        text = " ".join(lines[0].split())
        for part in case.match:
            assert part in text, f"{part!r} not in {text!r}"
    else:
        errors = [ln for ln in lines if ln.startswith("Error: ")]
        others = [ln for ln in lines if not ln.startswith("Error: ")]
        assert len(errors) == 1 and case.usage in errors[0], f"not a usage error naming {case.usage}:\n{shown}"
        text = " ".join(errors[0].split())
        for part in case.match:  # a choice's error names the values to use
            assert part in text, f"{part!r} not in {text!r}"
        assert all(any(p.match(ln) for p in USAGE_LINES) for ln in others), shown
    after = tree(w.tmp)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert all(k not in before and after[k] == "dir" for k in changed), f"written: {changed}"
    for k in changed:  # only empty folders may appear (a checked --results or cache folder)
        assert not any((w.tmp / k).iterdir()), f"written under {k}: {list((w.tmp / k).iterdir())}"
    assert not list(system_tmp.iterdir()), f"temporary files left: {list(system_tmp.iterdir())}"

