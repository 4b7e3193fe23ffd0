"""`bench migrate RESULTS`: rewrite run folders written before typed run specs, once.

A version-1 spec kept the preset, budget, optimizer model and endpoint, the transfer source and method
overrides in an untyped `extra` dict, and had no data fingerprint. Each such folder gets a typed spec (the
same values), the fingerprint of the rows it read (loaded from `data_dir`, so the data must be the data the
run read), its new run id (the folder is renamed), and `migrated_from` in spec.json; transfer evaluations
point at their sources' new ids, so optimize folders are migrated first. Everything else (summary, steps,
predictions) is kept byte for byte apart from summary.json's `run_id`. Each folder's files are rewritten
atomically before the folder is renamed, and a folder whose spec is already current is only renamed if its
name is stale, so an interrupted migration is finished by running it again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.io import atomic_write_json
from harness.core.records import SPEC, SUMMARY, read_spec, read_summary
from harness.core.spec import SPEC_VERSION, OptimizerEndpoint, RunSpec, TransferSource
from harness.core.types import BenchError, Budget
from harness.runner.data import RunData


@dataclass
class MigrateReport:
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old run id, new run id)
    current: int = 0  # folders that were already current


COMMON = ("kind", "task", "model", "backend", "dtype", "method", "prompt", "position", "max_new_tokens", "split",
          "limit", "seed", "split_seed", "primary_reading")


def typed_spec(old: Mapping[str, Any], data: RunData, new_ids: dict[str, str]) -> RunSpec:
    """The version-2 spec of a version-1 spec dict (`new_ids`: old -> new run ids of optimize folders)."""
    extra = dict(old.get("extra") or {})
    fields: dict[str, Any] = {k: old[k] for k in COMMON if k in old}
    preset = extra.pop("preset", None)
    budget = extra.pop("budget", None)
    opt_model = extra.pop("optimizer_model", None)
    opt_backend = extra.pop("optimizer_backend", None)
    base_url = extra.pop("base_url", None)
    source_run = extra.pop("source_run", None)
    source_model = extra.pop("source_model", None)
    if old["kind"] == "optimize":
        fields["preset"] = preset or "cpu"
        fields["budget"] = Budget(**budget) if budget else None
        if opt_backend not in (None, "hf") or (opt_model not in (None, old["model"])):
            fields["optimizer"] = OptimizerEndpoint(model=opt_model or old["model"],
                                                    backend=None if opt_backend in (None, "hf") else opt_backend,
                                                    base_url=base_url)
        fields["overrides"] = extra  # whatever else was there were method settings
    elif source_run:
        if source_run not in new_ids:
            raise BenchError(f"transfer run of {source_run} found, but not its source folder: migrate the folder that holds both")
        fields["source"] = TransferSource(run=new_ids[source_run], model=source_model or "?",
                                          preset=None if preset in (None, "?") else preset)
    elif extra:
        raise BenchError(f"eval spec with unknown extra settings {sorted(extra)}: cannot migrate it")
    probe = RunSpec(**fields, data="-")
    return RunSpec(**fields, data=data.fingerprint_of(probe))


def migrate(results: str | Path, *, data_dir: str | Path | None = None) -> MigrateReport:
    root = Path(results)
    if not root.is_dir():
        raise BenchError(f"no results folder {root}: name the folder that holds the run folders")
    data = RunData(data_dir)
    report = MigrateReport()
    folders = sorted(p for p in root.iterdir() if (p / SPEC).is_file())
    metas = {p: read_spec(p) for p in folders}  # every record read (and checked) before anything is rewritten
    order = sorted(folders, key=lambda p: metas[p].kind != "optimize")  # sources first
    new_ids: dict[str, str] = {}
    for folder in order:
        meta = metas[folder]
        if not meta.legacy:  # already version 2: finish an interrupted rename, if any
            report.current += 1
            new_ids[meta.migrated_from if meta.migrated_from is not None else meta.run_id] = meta.run_id
            if folder.name != meta.run_id:
                _rename(folder, root / meta.run_id)
                report.renamed.append((folder.name, meta.run_id))
            continue
        spec = typed_spec(meta.spec, data, new_ids)
        old_id, new_id = meta.run_id, spec.run_id
        new_ids[old_id] = new_id
        atomic_write_json(folder / SPEC, replace(meta, run_id=new_id, spec=spec.to_dict(), spec_version=SPEC_VERSION,
                                                 migrated_from=old_id).to_dict())
        if (folder / SUMMARY).exists():
            atomic_write_json(folder / SUMMARY, replace(read_summary(folder, meta.kind), run_id=new_id).to_dict())
        _rename(folder, root / new_id)
        report.renamed.append((old_id, new_id))
    return report


def _rename(src: Path, dst: Path) -> None:
    if dst.exists():
        raise BenchError(f"cannot rename {src.name} to {dst.name}: that folder exists already; remove one of them")
    os.replace(src, dst)
