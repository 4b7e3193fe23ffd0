"""Plots of the reports (matplotlib, object API on the Agg canvas: no pyplot, no global state, no display).

Each function takes a DataFrame from `harness.reports.leaderboard` and returns a `Figure`; `png(fig)` gives its bytes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(fig))
    return path


def _short(task: str) -> str:
    return task.split(":", 1)[-1]


def accuracy_bars(board: pd.DataFrame) -> Figure:
    """Test accuracy per task (and the average) and method, bars with their 95% intervals; one panel per
    (preset, model)."""
    groups = list(board.groupby(["preset", "model"], sort=True)) if not board.empty else []
    fig = _figure(max(6.0, 1.0 + 0.9 * board["task"].nunique() if not board.empty else 6.0), 3.2 * max(1, len(groups)))
    axes = fig.subplots(max(1, len(groups)), 1, squeeze=False)[:, 0]
    for ax, ((preset, model), g) in zip(axes, groups):
        tasks = [t for t in dict.fromkeys(g["task"]) if t != "average"]
        tasks += ["average"] if (g["task"] == "average").any() else []
        methods = list(dict.fromkeys(g["method"]))
        width = 0.8 / max(1, len(methods))
        for j, m in enumerate(methods):
            xs, ys, err = [], [], [[], []]
            for i, t in enumerate(tasks):
                row = g[(g["task"] == t) & (g["method"] == m)]
                if row.empty:
                    continue
                r = row.iloc[0]
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(100 * r["accuracy"])
                lo, hi = r.get("ci_low", math.nan), r.get("ci_high", math.nan)
                ok = not (pd.isna(lo) or pd.isna(hi))
                err[0].append(max(0.0, 100 * (r["accuracy"] - lo)) if ok else 0.0)
                err[1].append(max(0.0, 100 * (hi - r["accuracy"])) if ok else 0.0)
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=m)
        ax.set_xticks(range(len(tasks)), [_short(t) for t in tasks], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy %")
        ax.set_ylim(0, 100)
        ax.set_title(f"{model} (preset {preset})", fontsize=10)
        ax.legend(fontsize=7, ncols=min(4, len(methods)))
    if not groups:
        axes[0].text(0.5, 0.5, "no finished runs", ha="center", va="center")
    return fig


def optimization_curves(curves: pd.DataFrame) -> Figure:
    """Train accuracy (a line) and dev accuracy (dots) per logged step, one panel per method and one line per
    run (task, model, seed) in it. Each method scores on its own examples (`harness.reports.leaderboard.curves`)."""
    methods = sorted(curves["method"].unique()) if not curves.empty else []
    fig = _figure(4.0 * max(1, min(3, len(methods))), 3.0 * max(1, math.ceil(len(methods) / 3)))
    axes = fig.subplots(max(1, math.ceil(len(methods) / 3)), max(1, min(3, len(methods))), squeeze=False).ravel()
    for ax, m in zip(axes, methods):
        for (task, model, seed), g in curves[curves["method"] == m].groupby(["task", "model", "seed"], sort=True):
            label = f"{_short(task)} {model} s{seed}"
            tr = g.dropna(subset=["train_accuracy"])
            color = None
            if not tr.empty:
                line, = ax.plot(tr["step"], tr["train_accuracy"], ".-", label=f"{label} train")
                color = line.get_color()
            dv = g.dropna(subset=["dev_accuracy"])
            if not dv.empty:
                ax.plot(dv["step"], dv["dev_accuracy"], "o", color=color, label=f"{label} dev", markersize=4)
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        if len(ax.get_lines()) <= 12:
            ax.legend(fontsize=6)
    for ax in axes[len(methods):]:
        ax.axis("off")
    if not methods:
        axes[0].axis("on")
        axes[0].text(0.5, 0.5, "no step logs", ha="center", va="center")
    return fig


def cost_vs_accuracy(board: pd.DataFrame) -> Figure:
    """Mean accuracy (averaged over tasks when there are several) against tokens spent per cell."""
    fig = _figure(6, 4)
    ax = fig.subplots()
    if not board.empty:
        avg = board[board["task"] == "average"]
        rows = avg if not avg.empty else board
        for _, r in rows.iterrows():
            tokens = r.get("tokens", math.nan)
            if pd.isna(tokens) or tokens <= 0:
                continue
            ax.scatter(tokens, 100 * r["accuracy"])
            ax.annotate(f"{r['method']} ({_short(r['task'])}, {r['model']})", (tokens, 100 * r["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
    ax.set_xlabel("tokens per cell (task + optimizer model, in + out)")
    ax.set_ylabel("test accuracy %")
    return fig


def transfer_heatmap(matrix: pd.DataFrame, title: str = "") -> Figure:
    """Source model (rows) x target model (columns) test accuracy, annotated in %."""
    fig = _figure(1.8 + 1.4 * max(1, matrix.shape[1]), 1.4 + 0.8 * max(1, matrix.shape[0]))
    ax = fig.subplots()
    values = 100 * matrix.to_numpy(dtype=float)
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(matrix.shape[1]), list(matrix.columns), rotation=20, ha="right")
    ax.set_yticks(range(matrix.shape[0]), list(matrix.index))
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("optimized on")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = values[i, j]
            if not math.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white" if v < 60 else "black")
    fig.colorbar(im, ax=ax, label="test accuracy %")
    ax.set_title(title, fontsize=10)
    return fig


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both (fewer tokens, higher accuracy), by tokens ascending."""
    front: list[tuple[float, float, str]] = []
    for x, y, label in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y, label))
    return front


def pareto(board: pd.DataFrame) -> Figure:
    """Test accuracy against the found prompt's length (prompt tokens) and against the reasoning it induces at
    test (mean reasoning tokens, the inference cost), one row of panels per (preset, model), methods averaged over
    tasks when there are several; the Pareto frontier (no method both shorter and more accurate) as a step line."""
    rows = board[~board["method"].isin(["majority class", "zs-cot (in-cell)"])] if not board.empty else board
    groups = list(rows.groupby(["preset", "model"], sort=True)) if not rows.empty else []
    fig = _figure(10, 3.4 * max(1, len(groups)))
    axes = fig.subplots(max(1, len(groups)), 2, squeeze=False)
    for (ax_p, ax_r), ((preset, model), g) in zip(axes, groups):
        avg = g[g["task"] == "average"]
        g = avg if not avg.empty else g
        for ax, col, label in ((ax_p, "prompt_tokens", "prompt tokens"), (ax_r, "reasoning_tokens", "mean reasoning tokens at test")):
            pts = [(float(r[col]), 100 * float(r["accuracy"]), f"{r['method']}" + ("" if avg.shape[0] else f" ({_short(r['task'])})"))
                   for _, r in g.iterrows() if col in r and not pd.isna(r[col])]
            for x, y, name in pts:
                ax.scatter(x, y)
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            front = pareto_front(pts)
            if len(front) > 1:
                ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", linestyle="--",
                        linewidth=1, label="Pareto frontier")
                ax.legend(fontsize=7)
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy %")
            ax.set_title(f"{model} (preset {preset})", fontsize=10)
    if not groups:
        axes[0][0].text(0.5, 0.5, "no finished runs", ha="center", va="center")
    return fig


def anytime_plot(curves: pd.DataFrame, title: str = "") -> Figure:
    """One task and model: every method on one axis, the best-so-far selection score (a line per run) against
    cumulative tokens (log scale), and each run's final test accuracy marked with a star at its total tokens."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    colors: dict[str, str] = {}
    for (method, _seed), g in curves.groupby(["method", "seed"], sort=True):
        steps, final = g[~g["final"]], g[g["final"]]
        x = lambda s: s["tokens"].clip(lower=1)  # noqa: E731  (a run that spent nothing sits at the left edge)
        label = method if method not in colors else None
        if not steps.empty:
            line, = ax.step(x(steps), 100 * steps["score"], where="post", color=colors.get(method), label=label, linewidth=1.2)
            colors.setdefault(method, line.get_color())
            label = None
        pts = ax.scatter(x(final), 100 * final["score"], marker="*", s=90, color=colors.get(method), label=label,
                         edgecolors="black", linewidths=0.5, zorder=3)
        colors.setdefault(method, pts.get_facecolor()[0])
    ax.set_xscale("log")
    ax.set_xlabel("cumulative tokens (task + optimizer model, in + out)")
    ax.set_ylabel("best-so-far selection score %  (★ final test accuracy)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    if colors:
        ax.legend(fontsize=7, ncols=2)
    return fig


def anytime_plots(curves: pd.DataFrame) -> dict[tuple[str, str, str], Figure]:
    """(preset, model, task) -> its anytime plot."""
    return {(p, m, t): anytime_plot(g, f"{_short(t)}: {m} (preset {p})")
            for (p, m, t), g in curves.groupby(["preset", "model", "task"], sort=True)}
