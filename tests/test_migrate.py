"""`bench migrate` on a copy of the committed reference results, and the leaderboard regenerated from them.

The committed results/ were migrated once from version-1 specs. This test turns a copy back into version 1
(untyped `extra`, no data fingerprint, the old run ids from `migrated_from`), migrates it again with the data
at ../shared/data, and expects every file back byte for byte: same run ids, same specs, same summaries.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from harness.core.io import atomic_write_json
from harness.reports import leaderboard as report
from harness.reports import render
from harness.reports.loading import load_records, with_leakage
from harness.runner.data import RunData

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "results"
DATA = Path(os.environ.get("BENCH_DATA_DIR") or ROOT.parent / "shared" / "data")


def to_version_1(folder: Path, old_ids: dict[str, str]) -> Path:
    meta = json.loads((folder / "spec.json").read_text())
    spec = dict(meta.pop("spec"))
    old = meta.pop("migrated_from")
    meta.pop("spec_version")
    extra: dict = {}
    if spec["kind"] == "optimize":
        extra = {"preset": spec["preset"], "budget": spec["budget"], "optimizer_model": spec["model"], **spec["overrides"]}
    elif spec["source"]:
        src = spec["source"]
        extra = {"source_run": old_ids[src["run"]], "source_model": src["model"], "preset": src["preset"] or "?"}
    for key in ("data", "preset", "budget", "optimizer", "overrides", "source"):
        spec.pop(key)
    atomic_write_json(folder / "spec.json", {**meta, "run_id": old, "spec": {**spec, "extra": extra}})
    summary = json.loads((folder / "summary.json").read_text())
    atomic_write_json(folder / "summary.json", {**summary, "run_id": old})
    target = folder.parent / old
    folder.rename(target)
    return target


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_migrate_restores_the_committed_results(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy)
    before = snapshot(copy)
    folders = [p for p in copy.iterdir() if (p / "spec.json").exists() and "migrated_from" in (p / "spec.json").read_text()]
    old_ids = {json.loads((p / "spec.json").read_text())["run_id"]: json.loads((p / "spec.json").read_text())["migrated_from"]
               for p in folders}
    for p in folders:
        to_version_1(p, old_ids)
    assert snapshot(copy) != before
    res = CliRunner().invoke(app, ["leaderboard", "--results", str(copy)])
    assert res.exit_code == 2 and "bench migrate" in res.output  # old folders are named, not misread
    res = CliRunner().invoke(app, ["migrate", str(copy), "--data-dir", str(DATA)])
    assert res.exit_code == 0, res.output
    assert f"migrated {len(folders)} run folder(s)" in res.output
    after = snapshot(copy)
    changed = [k for k in before if before[k] != after.get(k)]
    assert not changed and set(after) == set(before), changed[:5]
    res = CliRunner().invoke(app, ["migrate", str(copy), "--data-dir", str(DATA)])  # a second run changes nothing
    assert res.exit_code == 0 and "migrated 0 run folder(s)" in res.output


def test_committed_leaderboard_is_what_the_records_give():
    """What `bench leaderboard --results results --format md --output results/leaderboard.md` writes."""
    records = with_leakage(load_records(RESULTS), RunData(DATA))
    text = render.to_markdown(report.leaderboard(records), report.transfer_matrices(records), report.transfer_leaderboard(records))
    assert text == (RESULTS / "leaderboard.md").read_text()
