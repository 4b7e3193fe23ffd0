"""Random option values through `bench run --dry-run` and `bench eval`, with every model load made to raise (as in
tests/badinput.py): the command exits 0 (a dry run) or 2 with one error line (or click's usage error), never
a traceback, and writes nothing when it refuses. `bench eval` accepting its input shows as a model load (the
probe's `ModelLoaded`), which is the end of what this test drives."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from badinput import DATA, USAGE_LINES, ModelLoaded, patch_loaders, tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import NEAR, TEXT
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def values(*good: str) -> st.SearchStrategy[str]:
    """Mostly values a user would type (good ones and near misses), sometimes any text."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), NEAR, TEXT)


COMMON = {
    "--tasks": values("bbh:navigate", "bbh:navigate,gsm8k", "bbh:navigat", "gsm9k", ",", "custom:nowhere.jsonl"),
    "--preset": values("smoke", "cpu", "smok", "paper"),
    "--reading": values("greedy", "options", "fallback", "greedier"),
    "--dtype": values("float32", "bfloat16", "float64"),
    "--position": values("after", "before", "assistant", "middle"),
    "--limit": values("2", "0", "-3", "ten", "٣"),
    "--max-new-tokens": values("8", "0", "1e3"),
    "--backend": values("hf", "openai", "tgi", "auto"),
}
RUN = {
    **COMMON,
    "--methods": values("zs-cot", "zs-cot,greater", "greatr", "ape,opro", ""),
    "--seeds": values("0", "0,1", "0-2", "2-0", "x", "²", "٣", "0-100000000000", "-1", "4294967296"),
    "--budget": values("60000", "0", "-5", "1.5"),
    "--rate": values("120", "0", "-5", "nan", "inf", "1e-300", "abc"),
    "--executor": values("local", "ray", "slurm"),
    "--ray-address": values("auto", "127.0.0.1:6379", "nonsense", "head:99999", "ray://[::1]:10001"),
    "--cell-cpus": values("1", "0", "2"),
    "--cell-gpus": values("0", "0.5", "nan", "-1", "inf"),
    "--max-parallel": values("1", "0", "4"),
}
EVAL = {
    **COMMON,
    "--split": values("test", "dev", "validation"),
    "--seed": values("0", "-1", "٣", "4294967296", "1_0"),
    "--split-seed": values("1", "-2", "x"),
    "--engine": values("harness", "lmeval"),
    "--prompt": st.one_of(st.just(""), TEXT),
}
ENV = st.fixed_dictionaries({}, optional={"BENCH_PROGRESS_SECONDS": values("15", "abc", "-1", "nan", "0")})


def check(args: list[str], env: dict[str, str], root: Path, *, model_may_load: bool) -> None:
    loads: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root / "cwd")
        mp.setenv("BENCH_DATA_DIR", str(DATA))
        mp.setenv("BENCH_CACHE_DIR", str(root / "cache"))
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may reach the network
        mp.delenv("RAY_ADDRESS", raising=False)
        patch_loaders(mp, loads)
        before = tree(root)
        try:
            res = runner.invoke(app, args, env={"COLUMNS": "2000", **env})
        except ModelLoaded:  # a BaseException, so it escapes the runner: eval accepted its input and loads the model
            assert model_may_load and loads, f"bench {' '.join(map(repr, args))} {env}"
            return
    shown = f"bench {' '.join(map(repr, args))} {env}\n{res.output}"
    assert "Traceback" not in res.output, shown
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{res.exception!r}\n{shown}"
    assert res.exit_code in (0, 2), shown
    after = tree(root)
    if res.exit_code == 2:
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("error: ", "Error: "))]
        assert len(errors) == 1, shown
        if errors[0].startswith("Error: "):  # click's usage error: only its Usage/Try lines beside it
            assert all(ln in errors or any(p.match(ln) for p in USAGE_LINES) for ln in lines), shown
        else:
            assert lines == errors, shown
    if res.exit_code == 2 or args[0] == "run":  # a refusal, and a dry run, write nothing (empty folders at most)
        changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
        assert all(k not in before and after[k] == "dir" and not any((root / k).iterdir()) for k in changed), shown


def invocation(options: dict[str, str]) -> list[str]:
    return [a for k, v in options.items() for a in (k, v)]


@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=RUN), ENV)
def test_random_options_through_run_dry_run(options, env):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        args = ["run", "--dry-run", "--results", str(root / "results"), *invocation(options)]
        check(args, env, root, model_may_load=False)


@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=EVAL), ENV)
def test_random_options_through_eval(options, env):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        args = ["eval", "--results", str(root / "results"), *invocation({"--limit": "2", **options})]
        check(args, env, root, model_may_load=True)


def test_the_fuzzed_options_exist():
    """Every option the fuzz tests pass is one the command has (a renamed option would make them test nothing)."""
    for command, options in (("run", RUN), ("eval", EVAL)):
        help_text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "240"}).output
        missing = [o for o in options if not re.search(re.escape(o) + r"\b", help_text)]
        assert not missing, (command, missing)
    assert os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")  # tests/conftest.py put the database under the cache
