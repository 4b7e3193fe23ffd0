"""Work in a child process, for backends whose models cannot be freed (a vLLM engine lives as long as its
process): `bench run` and `bench transfer` give each such model a child process of its own, one after another.

`run_in_child(work, job, ...)` (the parent's side) starts `python -m harness.runner.child MODULE:FUNCTION`, sends the
job as JSON on stdin and hands every message the child sends back (one JSON line each) to `on_message` as it
comes. The child calls `FUNCTION(job, send)`; anything else it prints goes to a log file, which is deleted
when the child succeeds and named in a one-line `BenchError` when it fails. An interrupted parent kills its
child, so no model stays loaded in an orphan.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.core.types import BenchError

# Backends whose models are opened, used and freed inside one process; any other (vllm, ...) gets a child
# process per model unless told otherwise (`isolate`).
IN_PROCESS_BACKENDS = ("hf", "openai", "fake")

Send = Callable[[Any], None]  # a work function's channel to the parent: one JSON-serialisable message


def needs_own_process(backend: str) -> bool:
    return backend not in IN_PROCESS_BACKENDS


def import_function(name: str, what: str = "opener") -> Callable[..., Any]:
    """"module:function" (a form a child process can import too) -> that function."""
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise BenchError(f"{what} {name!r} is not importable: give it as 'module:function'") from None


def opener_for_child(opener: Callable[..., Any] | str | None) -> str | None:
    """What a child process can be told to open models with: an importable "module:function", or None."""
    if opener is None or isinstance(opener, str):
        return opener
    raise BenchError("a child process cannot use an opener function: pass it as 'module:function', or isolate=False")


def run_in_child(
    work: str, job: Mapping[str, Any], *, on_message: Send, what: str, log_name: str, kept: str
) -> None:
    """Run `work` ("module:function") on `job` in a child process; return when it exits cleanly.

    A failure raises "{what} failed in its child process (...): <the child's last output line> (log ...);
    fix that and re-run, {kept}".
    """
    fd, log_path = tempfile.mkstemp(prefix=f"bench-{log_name}-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "harness.runner.child", work], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            try:
                child.stdin.write(json.dumps(job))
                child.stdin.close()
            except BrokenPipeError:  # it died before reading its job: its log says why
                pass
            for line in child.stdout:
                on_message(json.loads(line))
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: do not leave the model loaded in an orphan
                child.kill()
                child.wait()
    if code == 0:
        os.unlink(log_path)
        return
    lines = [ln.strip() for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
    status = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    raise BenchError(f"{what} failed in its child process ({status}): {lines[-1] if lines else 'no output'} "
                     f"(log {log_path}); fix that and re-run, {kept}")


def _main() -> int:
    """`python -m harness.runner.child MODULE:FUNCTION`, started by `run_in_child`: reads the job as JSON on stdin and
    writes the function's messages on stdout, one JSON line each; everything else goes to stderr (the log)."""
    job = json.loads(sys.stdin.read())
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries that log to stdout (vLLM does) must not mix with the messages
    try:
        work = import_function(sys.argv[1], "work function")
        work(job, lambda message: print(json.dumps(message), file=channel))
    except BenchError as e:  # the parent shows this line
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
