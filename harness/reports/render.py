"""The leaderboard as Markdown (for the README), CSV (for analysis) and one self-contained HTML page.

The HTML page has no external reference: CSS and the table-sorting script are inline, plots are base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.core.types import READINGS
from harness.evaluation.prompt_checks import FLAG_WORDS
from harness.reports.leaderboard import matrix_title

NOTE = (
    "Test accuracy (primary answer reading) with its 95% interval: the run's bootstrap interval over test "
    "examples; with several seeds, the wider of the t interval over seeds and the bootstrap over examples of "
    "the seed-averaged correctness. greedy / options / fallback %: the same test "
    "runs read the other ways (greedy is the paper's reading). Δ: paired difference to zero-shot CoT on the "
    "same test examples (percentage points). p: exact two-sided sign test of per-example correctness (averaged "
    "over common seeds; with one seed this is the exact McNemar test). Cost: mean per cell; tokens = task + "
    "optimizer model, in + out; calls = prompts sent to either model; wall = optimization time, '(cached)' when most of the "
    "cell's calls were answered by the response cache (its tokens and calls are the work the method asked for; "
    "the wall time is not). dev−test: the found prompt's dev accuracy minus its test accuracy (points) with a 95% "
    "interval (a difference of two independent proportions, dev n and test n; over seeds the wider of that and the "
    "t interval): dev is where most methods select, so a gap above zero beyond the interval is selection overfitting. "
    "prompt tok: the prompt's length (words and punctuation marks, the same rule for every model); reasoning tok: "
    "mean reasoning tokens it induced at test. leak: the longest run of words the prompt shares with any train, dev "
    f"or test input or gold of its task; {FLAG_WORDS} or more is flagged (⚠) with the split."
)


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x: Any) -> str:
    return "-" if _isnan(x) else f"{100 * x:.1f}"


def with_interval(value: Any, lo: Any, hi: Any, *, sign: str = "", sep: str = "-") -> str:
    """A share in percent with its interval, "52.3 [47-58]" ("+8.8 [+2,+15]" with sign "+" and sep ",")."""
    if _isnan(value):
        return "-"
    text = f"{100 * value:{sign}.1f}"
    return text if _isnan(lo) or _isnan(hi) else f"{text} [{100 * lo:{sign}.0f}{sep}{100 * hi:{sign}.0f}]"


def pct_ci(row: Mapping[str, Any]) -> str:
    return with_interval(row.get("accuracy"), row.get("ci_low"), row.get("ci_high"))


def delta(row: Mapping[str, Any]) -> str:
    d = row.get("delta_vs_zs_cot")
    return "-" if _isnan(d) else f"{100 * d:+.1f}"


def pvalue(p: Any) -> str:
    if _isnan(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def gap_ci(row: Mapping[str, Any]) -> str:
    """Dev minus test accuracy in points with its interval."""
    return with_interval(row.get("dev_minus_test"), row.get("dmt_low"), row.get("dmt_high"), sign="+", sep=",")


def leak(row: Mapping[str, Any]) -> str:
    """The longest shared word run; flagged with its split from `FLAG_WORDS` words on; "-" when unknown."""
    n = row.get("leak_words")
    if _isnan(n):
        return "-"
    return f"⚠ {n:.0f} {row.get('leak_split')}" if n >= FLAG_WORDS else f"{n:.0f}"


def count(x: Any) -> str:
    if _isnan(x):
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.1f}{suffix}"
    return f"{x:.0f}"


def seconds(x: Any) -> str:
    if _isnan(x):
        return "-"
    s = round(x)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def wall(x: Any, cached_share: Any) -> str:
    """Wall time, marked when most of the cell's model calls were replayed from the response cache."""
    text = seconds(x)
    return f"{text} (cached)" if not _isnan(cached_share) and cached_share >= 0.5 else text


# (header, formatter, sort key column) of the two table layouts
AVERAGE_COLUMNS = [
    ("method", lambda r: r["method"], "method"),
    ("test acc % [95% CI]", pct_ci, "accuracy"),
    ("Δ vs zs-cot", delta, "delta_vs_zs_cot"),
    ("p vs zs-cot", lambda r: pvalue(r.get("p_vs_zs_cot")), "p_vs_zs_cot"),
    ("p vs greater", lambda r: pvalue(r.get("p_vs_greater")), "p_vs_greater"),
    ("dev %", lambda r: pct(r.get("dev_accuracy")), "dev_accuracy"),
    ("dev−test [95% CI]", gap_ci, "dev_minus_test"),
    ("prompt tok", lambda r: count(r.get("prompt_tokens")), "prompt_tokens"),
    ("reasoning tok", lambda r: count(r.get("reasoning_tokens")), "reasoning_tokens"),
    ("leak", leak, "leak_words"),
    ("tokens", lambda r: count(r.get("tokens")), "tokens"),
    ("calls", lambda r: count(r.get("calls")), "calls"),
    ("wall", lambda r: wall(r.get("wall_seconds"), r.get("cached_share")), "wall_seconds"),
    ("seeds", lambda r: str(int(r["seeds"])), "seeds"),
]
TASK_COLUMNS = [("task", lambda r: r["task"], "task")] + AVERAGE_COLUMNS  # the same columns as the average


def with_readings(cols: list, rows: pd.DataFrame) -> list:
    """`cols` with, after the test accuracy, one column per other answer reading the rows have: the same test
    runs read each way, so a likelihood-based primary is always seen beside the paper's greedy reading."""
    primaries = set(rows["primary"].dropna()) if "primary" in rows else set()
    extra = [
        (f"{r} %", (lambda row, r=r: pct(row.get(f"{r}_accuracy"))), f"{r}_accuracy")
        for r in READINGS
        if f"{r}_accuracy" in rows and rows[f"{r}_accuracy"].notna().any() and primaries != {r}
    ]
    at = next(i for i, c in enumerate(cols) if c[2] == "accuracy") + 1
    return cols[:at] + extra + cols[at:]


def sections(board: pd.DataFrame) -> list[tuple[str, list, pd.DataFrame]]:
    """(title, columns, rows) of each table: per (preset, model) the average over tasks, then per task. The
    title names the primary reading when every row of the table shares it."""
    out: list[tuple[str, list, pd.DataFrame]] = []
    if board.empty:
        return out
    for (preset, model), g in board.groupby(["preset", "model"], sort=True):
        avg, tasks = g[g["task"] == "average"], g[g["task"] != "average"]
        primaries = set(g["primary"].dropna()) if "primary" in g else set()
        read = f" (test acc: {primaries.pop()} reading)" if len(primaries) == 1 else ""
        if not avg.empty:
            title = f"{model}, preset {preset}: average over {int(avg['tasks'].max())} tasks{read}"
            out.append((title, with_readings(AVERAGE_COLUMNS, avg), avg))
        cols = TASK_COLUMNS if not avg.empty else [TASK_COLUMNS[0]] + AVERAGE_COLUMNS
        out.append((f"{model}, preset {preset}: per task{read}", with_readings(cols, tasks), tasks))
    return out


def to_markdown(
    board: pd.DataFrame, transfer: Mapping[tuple[str, str], pd.DataFrame] | None = None,
    transfer_board: pd.DataFrame | None = None,
) -> str:
    """The leaderboard's tables, then the transfer matrices, then the transferred prompts' own tables
    (`harness.reports.leaderboard.transfer_leaderboard`: "source -> target" in place of the model)."""
    if board.empty:
        return "No finished runs.\n"
    parts = []
    for title, cols, rows in sections(board):
        parts += [f"### {title}\n", *_md_table(cols, rows)]
    for (preset, method), m in (transfer or {}).items():
        parts.append(f"### transfer: {matrix_title(preset, method, m)}\n")
        parts.append("| optimized on \\ evaluated on | " + " | ".join(map(str, m.columns)) + " |")
        parts.append("|---|" + "|".join("---:" for _ in m.columns) + "|")
        for src, r in m.iterrows():
            parts.append(f"| {src} | " + " | ".join(pct(v) for v in r) + " |")
        parts.append("")
    for title, cols, rows in sections(transfer_board if transfer_board is not None else pd.DataFrame()):
        parts += [f"### transfer {title}\n", *_md_table(cols, rows)]
    parts.append(NOTE)
    return "\n".join(parts) + "\n"


def _md_table(cols: Sequence[tuple[str, Any, str]], rows: pd.DataFrame) -> list[str]:
    out = ["| " + " | ".join(h for h, _, _ in cols) + " |",
           "|" + "|".join("---" if h in ("method", "task") else "---:" for h, _, _ in cols) + "|"]
    out += ["| " + " | ".join(f(r).replace("|", "\\|") for _, f, _ in cols) + " |" for _, r in rows.iterrows()]
    return [*out, ""]


def to_csv(board: pd.DataFrame) -> str:
    return board.to_csv(index=False)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0;cursor:pointer;user-select:none} th:after{content:" \\2195";color:#999}
td.t,th.t{text-align:left} tr:nth-child(even){background:#fafafa}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0} .note{color:#555;font-size:13px;max-width:900px}
td.p{text-align:left;font-family:monospace;font-size:12px;max-width:600px}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (isNaN(nx) ? 1 : 0) - (isNaN(ny) ? 1 : 0) || String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def _sort_value(v: Any) -> str:
    if _isnan(v):
        return ""
    return str(v)


def html_table(columns: Sequence[tuple[str, Any, str]], rows: pd.DataFrame, left: Sequence[str] = ("method", "task")) -> str:
    e = html.escape
    head = "".join(f'<th class="{"t" if h in left else ""}">{e(h)}</th>' for h, _, _ in columns)
    body = []
    for _, r in rows.iterrows():
        cells = "".join(
            f'<td class="{"t" if h in left else ""}" data-sort="{e(_sort_value(r.get(key)))}">{e(f(r))}</td>'
            for h, f, key in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def to_html(
    board: pd.DataFrame,
    *,
    plots: Mapping[str, bytes] | None = None,
    transfer: Mapping[tuple[str, str], pd.DataFrame] | None = None,
    prompts: pd.DataFrame | None = None,
    title: str = "greater-bench leaderboard",
    transfer_board: pd.DataFrame | None = None,
    targets: tuple[Mapping[str, Any], pd.DataFrame] | None = None,
) -> str:
    """One self-contained page: the tables (click a header to sort), transfer matrices and the transferred
    prompts' tables, prompts, plots."""
    e = html.escape
    parts = [f"<h1>{e(title)}</h1>", f'<p class="note">{e(NOTE)}</p>']
    if board.empty:
        parts.append("<p>No finished runs.</p>")
    for name, cols, rows in sections(board):
        parts += [f"<h2>{e(name)}</h2>", html_table(cols, rows)]
    for (preset, method), m in (transfer or {}).items():
        parts.append(f"<h2>transfer: {e(matrix_title(preset, method, m))}</h2>")
        df = m.reset_index().rename(columns={"source_model": "optimized on"})
        cols = [("optimized on", lambda r: str(r["optimized on"]), "optimized on")]
        cols += [(str(c), (lambda r, c=c: pct(r[c])), c) for c in m.columns]
        parts.append(html_table(cols, df, left=("optimized on",)))
    for name, cols, rows in sections(transfer_board if transfer_board is not None else pd.DataFrame()):
        parts += [f"<h2>transfer {e(name)}</h2>", html_table(cols, rows)]
    if targets is not None:
        about, df = targets
        parts.append(f"<h2>paper targets (preset {e(about['preset'])}, {e(about['reading'])} reading)</h2>")
        num = lambda c, sign="": (lambda r: "-" if _isnan(r[c]) else f"{r[c]:{sign}.1f}")  # noqa: E731
        cols = [(c, (lambda r, c=c: str(r[c])), c) for c in ("model", "task", "method")]
        cols += [("paper", num("paper"), "paper"), ("measured", num("measured"), "measured"),
                 ("Δ", num("difference", "+"), "difference"), ("verdict", lambda r: r["verdict"], "verdict"),
                 ("tasks run", lambda r: r["tasks_run"], "tasks_run")]
        parts.append(html_table(cols, df, left=("model", "task", "method", "verdict")))
        parts.append(f'<p class="note">{e(about["about"])}</p>')
    if prompts is not None and not prompts.empty:
        parts.append("<h2>optimized prompts</h2>")
        cols = [(c, (lambda r, c=c: pct(r[c]) if c == "accuracy" else str(r[c])), c) for c in prompts.columns]
        parts.append(html_table(cols, prompts, left=tuple(c for c in prompts.columns if c != "accuracy")))
    for name, data in (plots or {}).items():
        parts += [f"<h2>{e(name)}</h2>", _img(data, name)]
    parts.append('<p class="note">Generated by <code>bench leaderboard</code> from the run folders.</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(parts)
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )


def page(records: Sequence[Any], *, with_plots: bool = True, title: str = "greater-bench leaderboard",
         targets: tuple[Mapping[str, Any], pd.DataFrame] | None = None) -> str:
    """The HTML page of a set of `harness.reports.leaderboard.CellRecord`s: leaderboard, transfer, prompts and plots."""
    from harness.reports import leaderboard as report
    from harness.reports.curves import anytime, curves

    board = report.leaderboard(records)
    transfer = report.transfer_matrices(records)
    plots: dict[str, bytes] = {}
    if with_plots:
        from harness.reports import plots as P

        plots["accuracy per task and method"] = P.png(P.accuracy_bars(board))
        plots["cost vs accuracy"] = P.png(P.cost_vs_accuracy(board))
        plots["Pareto: accuracy vs prompt tokens and vs inference (reasoning) tokens"] = P.png(P.pareto(board))
        c = curves(records)
        if not c.empty:
            plots["optimization curves"] = P.png(P.optimization_curves(c))
        for (preset, model, task), fig in P.anytime_plots(anytime(records)).items():
            plots[f"anytime: {task}, {model} (preset {preset})"] = P.png(fig)
        for (preset, method), m in transfer.items():
            plots[f"transfer: {method} (preset {preset})"] = P.png(P.transfer_heatmap(m, matrix_title(preset, method, m, short=True)))
    return to_html(board, plots=plots, transfer=transfer, prompts=report.prompts_table(records), title=title,
                   transfer_board=report.transfer_leaderboard(records), targets=targets)
