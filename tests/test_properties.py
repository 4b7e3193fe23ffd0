"""Property-based tests of every parser of user input: CLI option values, environment variables, sidecar fields.

The rule each is held to: any text (or JSON value) either parses to a valid value or raises `BenchError`, the
harness's one-line error type (click's own `BadParameter` for a value click parses); never another exception.
Where a printed form exists it reads back to the same value. Custom-task rows and sidecars, driven through
`custom_task` on files, are in tests/test_properties_tasks.py; random options through the CLI in
tests/test_fuzz_cli.py. Settings (database under $BENCH_CACHE_DIR/hypothesis, no deadline): tests/conftest.py.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from typing import Any

import pytest
import typer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from harness.core.types import BenchError

# Text a user could type: any character except lone surrogates (no terminal sends them) and NUL (no argv or
# environment variable holds one).
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
TEXT = st.text(CHARS, max_size=30)
# Near misses: pieces of valid values mixed with what breaks parsers (other digits, signs, separators, huge numbers).
PIECES = st.sampled_from(["0", "1", "2", "10", "-", ",", " ", ":", ".", "e", "+", "_", "²", "٣", "０", "nan", "inf",
                          "99999999999999", "4294967296", "ray://", "[::1]", "localhost", "bbh", "bbh:navigate", "gsm8k",
                          "custom:", "zs-cot", "greater", "smoke", "cpu", "auto", "\n", "\t"])
NEAR = st.lists(st.one_of(PIECES, st.integers(0, 10**12).map(str)), max_size=8).map("".join)
INPUT = st.one_of(TEXT, NEAR)


def one_line(e: BenchError) -> str:
    text = str(e)
    assert text.strip() and "\n" not in text.strip(), repr(text)
    return text


def outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, value) or (False, the BenchError's text); any other exception fails the test."""
    try:
        return True, fn()
    except BenchError as e:
        return False, one_line(e)


# ------------------------------------------------------------------------------------------ seeds


@settings(max_examples=200)
@given(INPUT)
@example("²")
@example("٣")
@example("0-100000000000")
@example("0-999,1000")
def test_seed_lists_parse_to_valid_seeds_or_one_line(text):
    from harness.core.spec import MAX_SEED
    from harness.runner.cells import MAX_SEEDS, format_seeds, parse_seeds

    ok, value = outcome(lambda: parse_seeds(text))
    if not ok:
        assert "--seeds" in value
        return
    assert 0 < len(value) <= MAX_SEEDS and len(set(value)) == len(value)
    assert all(type(s) is int and 0 <= s <= MAX_SEED for s in value)
    assert all(c in string.digits + ",-" or c.isspace() for c in text), text  # ASCII digits only
    assert parse_seeds(format_seeds(value)) == value


@settings(max_examples=100)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40, unique=True))
def test_a_printed_seed_list_reads_back_equal(seeds):
    from harness.runner.cells import format_seeds, parse_seeds

    text = format_seeds(seeds)
    assert parse_seeds(text) == seeds
    assert format_seeds(parse_seeds(text)) == text


@settings(max_examples=100)
@given(INPUT)
@example("٣")
@example("1_0")
@example(" 7 ")
def test_a_seed_option_is_ascii_digits(text):
    from harness.cli.options import seed_int

    try:
        value = seed_int(text)
    except typer.BadParameter as e:
        assert "ASCII digits" in str(e)
        return
    assert re.fullmatch(r"-?[0-9]+", text.strip()) and value == int(text.strip())


@settings(max_examples=100)
@given(st.integers(-(2**70), 2**70), st.one_of(st.none(), st.integers(-(2**70), 2**70)))
def test_run_seeds_are_checked_by_the_spec(seed, split_seed):
    from harness.core.spec import MAX_SEED, RunSpec

    ok, value = outcome(lambda: RunSpec(kind="eval", task="bbh:navigate", model="m", data="fp", seed=seed,
                                        split_seed=split_seed))
    valid = all(s is None or 0 <= s <= MAX_SEED for s in (seed, split_seed))
    assert ok == valid, value
    if ok:
        assert RunSpec.from_dict(value.to_dict()) == value


# ------------------------------------------------------------------------------------------ names and lists


@settings(max_examples=150)
@given(INPUT)
def test_name_lists_round_trip(text):
    from harness.runner.cells import parse_list

    ok, value = outcome(lambda: parse_list(text, "model"))
    if ok:
        assert value and all(v == v.strip() and v and "," not in v for v in value) and len(set(value)) == len(value)
        assert parse_list(",".join(value), "model") == value
    else:
        assert value == "no model given"


@settings(max_examples=150)
@given(INPUT)
@example("bbh21,gsm8k,bbh21")
@example("bbh:navigat")
@example("BBH")
def test_task_lists_expand_to_known_tasks(text):
    from tasks import CUSTOM_PREFIX, REGISTRY, expand_tasks

    ok, value = outcome(lambda: expand_tasks(text))
    if ok:
        assert value and len(set(value)) == len(value)
        assert all(n in REGISTRY or n.startswith(CUSTOM_PREFIX) for n in value)
        assert expand_tasks(",".join(value)) == value
    else:
        assert "task" in value and ("bench tasks" in value or "did you mean" in value or "unknown task" in value)


@settings(max_examples=50)  # each call scans the installed packages' entry points
@given(INPUT)
@example("all")
@example("zs-cot,greatr")
def test_method_lists_name_registered_methods(text):
    from harness.cli.grid import _methods
    from harness.core.methods import load_methods

    ok, value = outcome(lambda: _methods(text))
    if ok:
        assert value and set(value) <= set(load_methods())
    else:
        assert "method" in value


@settings(max_examples=100)
@given(INPUT)
@example("smok")
def test_choice_options(text):
    """--preset, --reading, --dtype, --backend (BENCH_BACKEND; and the library's own check), --engine, --split: a
    known name or one line that names the value (the fixed sets are typer choices, refused while parsing)."""
    from harness.backends import BACKENDS, resolve_backend
    from harness.core.spec import DTYPES, PRESETS, SPLITS
    from harness.core.types import READINGS

    for fn, known in ((PRESETS.get, PRESETS.names()), (parsed("reading"), READINGS), (parsed("dtype"), DTYPES),
                      (parsed("backend"), BACKENDS), (resolve_backend, BACKENDS),
                      (parsed("engine"), ("harness", "lm-eval")), (parsed("split"), SPLITS)):
        ok, value = outcome(lambda fn=fn: fn(text))
        assert ok == (text in known), (text, value)
        if not ok:
            assert repr(text) in value or text in value


def parsed(name: str) -> Callable[[str], Any]:
    """What `bench eval` makes of a value of its option `name` while parsing: the value, or a BenchError holding
    click's line (`Invalid value for '--name': ... is not one of ...`)."""
    from harness.cli import app

    command = typer.main.get_command(app).commands["eval"]
    param = next(p for p in command.params if p.name == name)

    def parse(text: str) -> Any:
        try:
            return param.process_value(command.make_context("eval", [], resilient_parsing=True), text)
        except typer.BadParameter as e:
            raise BenchError(e.format_message()) from None

    return parse


# ------------------------------------------------------------------------------------------ numbers


@settings(max_examples=150)
@given(st.floats(allow_nan=True, allow_infinity=True))
@example(0.0)
@example(-5.0)
@example(math.nan)
def test_rates_are_finite_and_positive(rate):
    from harness.runner.plan import check_rate

    ok, value = outcome(lambda: check_rate(rate))
    assert ok == (math.isfinite(rate) and rate > 0)
    if not ok:
        assert "--rate" in value


@settings(max_examples=100)
@given(st.integers(-(2**64), 2**64))
def test_budgets_are_positive(budget):
    from harness.runner.cells import GridSettings

    ok, value = outcome(lambda: GridSettings(preset="smoke", budget_tokens=budget))
    assert ok == (budget >= 1)
    if not ok:
        assert "--budget" in value


@settings(max_examples=100)
@given(st.one_of(st.none(), st.integers(-3, 64)), st.one_of(st.none(), st.floats()), st.one_of(st.none(), st.integers(-3, 64)))
@example(None, math.nan, None)
@example(None, math.inf, None)
def test_ray_resources(cpus, gpus, parallel):
    from harness.runner.ray_executor import RaySettings

    ok, value = outcome(lambda: RaySettings(cell_cpus=cpus, cell_gpus=gpus, max_parallel=parallel))
    valid = (cpus is None or cpus >= 1) and (gpus is None or (math.isfinite(gpus) and gpus >= 0)) and (
        parallel is None or parallel >= 1)
    assert ok == valid, value


# ------------------------------------------------------------------------------------------ the Ray address

HOSTS = st.one_of(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
                  st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]"))


@settings(max_examples=150)
@given(INPUT)
@example("nonsense")
@example("http://head:6379")
@example("head:99999")
@example("[::1:6379")
def test_ray_addresses_have_a_known_form(text):
    from harness.runner.ray_executor import _endpoint, check_ray_address

    ok, value = outcome(lambda: check_ray_address(text))
    if ok:
        assert value in (None, "auto", "local") or _endpoint(value) is not None
    else:
        assert "bad Ray address" in value and "--ray-address / RAY_ADDRESS" in value


@settings(max_examples=100)
@given(st.booleans(), HOSTS, st.integers(1, 65535))
def test_every_head_address_is_accepted(client, host, port):
    from harness.runner.ray_executor import check_ray_address

    address = f"{'ray://' if client else ''}{host}:{port}"
    assert check_ray_address(address) == address


def test_a_head_where_nothing_listens_is_one_line_in_well_under_a_second():
    import time

    from harness.runner.ray_executor import probe_ray

    t0 = time.perf_counter()
    with pytest.raises(BenchError, match="no Ray cluster answers at 127.0.0.1:1"):
        probe_ray("127.0.0.1:1", timeout=1.0)
    assert time.perf_counter() - t0 < 1.5


# ------------------------------------------------------------------------------------------ environment variables

ENV_VALUE = st.one_of(TEXT, NEAR, st.sampled_from(["", " ", "1", "0", "true", "Off", "15", "0.5", "-1", "1e999", "１５"]))


@settings(max_examples=150)
@given(ENV_VALUE)
def test_every_environment_variable_parses_or_names_itself(value):
    """Each reader of an environment variable, given any value: a valid value or one line naming the variable."""
    from harness.backends.vllm import check_cpu_env, eager_from_env
    from harness.cli.display import progress_seconds
    from harness.core import hub
    from harness.core.env import env_path, env_secret

    readers: list[tuple[str, Callable[[dict[str, str]], Any]]] = [
        ("BENCH_PROGRESS_SECONDS", progress_seconds),
        ("BENCH_VLLM_EAGER", eager_from_env),
        ("HF_HUB_OFFLINE", lambda env: hub.offline(environ=env)),
        ("HF_DATASETS_OFFLINE", lambda env: hub.offline(datasets=True, environ=env)),
        ("HF_ENDPOINT", hub.endpoint),
        ("VLLM_CPU_KVCACHE_SPACE", check_cpu_env),
        ("VLLM_CPU_OMP_THREADS_BIND", check_cpu_env),
        ("OPENAI_API_KEY", lambda env: env_secret("OPENAI_API_KEY", env)),
        ("BENCH_CACHE_DIR", lambda env: env_path("BENCH_CACHE_DIR", env)),
    ]
    for name, read in readers:
        env = {name: value}
        ok, parsed = outcome(lambda read=read, env=env: read(env))
        if not ok:
            assert name in parsed, parsed
            continue
        if name == "BENCH_PROGRESS_SECONDS":
            assert math.isfinite(parsed) and parsed >= 0 and (value.strip() == "" or value.strip().isascii())
        elif name in ("BENCH_VLLM_EAGER", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            default = name == "BENCH_VLLM_EAGER"
            assert parsed is (value.strip().lower() in ("1", "true", "yes", "on") or (default and not value.strip()))
        elif name == "HF_ENDPOINT":
            assert parsed.startswith(("http://", "https://"))
            hub._host_port(env)  # the probe's host and port: no exception either
        elif name == "OPENAI_API_KEY":
            assert parsed is None or (parsed.isprintable() and not any(c.isspace() for c in parsed))


@settings(max_examples=50)
@given(st.sampled_from(["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "BENCH_VLLM_EAGER"]),
       st.sampled_from(["1", "0", "true", "FALSE", "yes", "No", "on", "OFF", " 1 "]))
def test_flags_read_the_usual_spellings(name, value):
    from harness.core.env import env_flag

    on = value.strip().lower() in ("1", "true", "yes", "on")
    assert env_flag(name, True, {name: value}) is on and env_flag(name, False, {name: value}) is on


# ------------------------------------------------------------------------------------------ sidecar fields

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)


@settings(max_examples=200)
@given(JSON)
@example("a{4294967296}")
@example("(?P<n>a)(?P<n>b)")
@example({"train": 0.5, "dev": 1})
@example({"trian": 3})
def test_sidecar_fields_parse_or_name_the_sidecar(value):
    from tasks.sidecar import check_bool, check_max_tokens, check_regex, check_splits, check_stop

    where = "task file qa.jsonl.task.json"
    for fn in (check_regex, lambda v, w: check_bool(v, "case_sensitive", w), check_max_tokens, check_stop, check_splits):
        ok, parsed = outcome(lambda fn=fn: fn(value, where))
        if not ok:
            assert where in parsed
        elif value is None:
            assert parsed is None
    ok, sizes = outcome(lambda: check_splits(value, where))
    if ok and sizes:
        assert all((type(n) is int and n >= 1) or (type(n) is float and 0 < n < 1) for _, n in sizes)


@settings(max_examples=100)
@given(st.one_of(JSON, st.sampled_from(["letter", "Yes-No", "true/false", "free_text", "INTEGER"])))
def test_answer_formats(value):
    from harness.core.types import AnswerFormat
    from tasks.sidecar import parse_answer_format

    ok, parsed = outcome(lambda: parse_answer_format(value))
    if ok:
        assert isinstance(parsed, AnswerFormat)
    else:
        assert "unknown answer format" in parsed
