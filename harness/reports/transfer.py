"""Prompt transfer, the report: the source x target matrices of stored prompts scored on other models.

The evaluations are run folders (`harness.runner.transfer` writes them); this reads them back as records. Rows
are the models a prompt was optimized on, columns the models it was scored on; the diagonal is the optimize
cell's own test result.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from harness.reports.leaderboard import matrix_title, transfer_matrices, transfer_table
from harness.reports.loading import load_records


def transfer_report(results_dir: str | Path, sources: Iterable[str], models: Iterable[str], *,
                    report_dir: str | Path | None = None) -> dict[tuple[str, str], pd.DataFrame]:
    """The source x target matrix of each (preset, method) over the optimize cells `sources` (run ids) and their
    transfer evaluations among `models`; with `report_dir`, every transfer evaluation under `results_dir` is
    written there as CSV and heatmap PNG (the matrices of the whole folder, not only of `sources`)."""
    involved, run_ids = set(models), set(sources)
    every = load_records(results_dir, steps=False)
    records = [
        r for r in every
        if (r.kind == "optimize" and r.run_id in run_ids)
        or (r.kind == "eval" and r.source_run in run_ids and r.model in involved)
    ]
    matrices = {k: _order(m, involved) for k, m in transfer_matrices(records).items()}
    if report_dir is not None:  # the files are the whole folder's picture, as the leaderboard's: a transfer of
        # some prompts (--seeds, --tasks, ...) adds to them and never drops what earlier transfers scored
        write_transfer(transfer_matrices(every), transfer_table(every), report_dir)
    return matrices


def _order(m: pd.DataFrame, involved: set[str]) -> pd.DataFrame:
    out = m.loc[[i for i in m.index if i in involved], [c for c in m.columns if c in involved]]
    out.attrs = dict(m.attrs)  # the tasks the cells average
    return out


def write_transfer(matrices: dict[tuple[str, str], pd.DataFrame], long: pd.DataFrame, report_dir: str | Path) -> list[Path]:
    """transfer-<preset>-<method>.csv and .png per matrix, plus transfer-per-task.csv; returns the paths."""
    from harness.core.io import atomic_write_text
    from harness.reports.plots import save, transfer_heatmap

    root = Path(report_dir)
    paths = []
    for (preset, method), m in matrices.items():
        stem = f"transfer-{preset}-{method}"  # names, not suffixes: a preset such as cpu-0.5b holds a dot
        csv = root / f"{stem}.csv"
        atomic_write_text(csv, m.to_csv())
        png = save(transfer_heatmap(m, matrix_title(preset, method, m, short=True)), root / f"{stem}.png")
        paths += [csv, png]
    atomic_write_text(root / "transfer-per-task.csv", long.to_csv(index=False))
    return paths + [root / "transfer-per-task.csv"]
