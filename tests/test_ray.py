"""`bench run --executor ray` on real Ray instances (not mocked): the same records as the local executor, cells on
both nodes of a two-node cluster, workers killed mid-cell, an impossible demand, Ctrl-C.

The task models are gridworld's scripted ones, opened in the Ray workers through the importable opener
"gridworld:open_task_model" (tests/ reaches the workers on PYTHONPATH); the methods are real (zs-cot, and
opro's smoke preset with three logged steps).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray  # noqa: E402  (a dev dependency: these tests run for real in CI)
from gridworld import child_setup, opened, snapshot, write_task_file
from typer.testing import CliRunner

from harness.cli import app
from harness.core.types import BenchError
from harness.runner.cells import GridSettings, resolve_grid
from harness.runner.grid import run_grid
from harness.runner.pool import ModelPool, PoolSettings
from harness.runner.ray_executor import RayExecutor, RaySettings

OPENER = "gridworld:open_task_model"
METHODS = ["zs-cot", "opro"]


def ran_on(results: Path) -> list[dict]:
    return [json.loads((p / "summary.json").read_text())["ran_on"] for p in results.iterdir() if (p / "summary.json").exists()]


def comparable(snap: dict) -> dict:
    """Records without where and how fast they ran (node, worker, wall times, creation dates)."""
    out = json.loads(json.dumps(snap))
    for cell in out.values():
        cell["summary"].pop("ran_on", None)
    return out


@pytest.fixture
def world(tmp_path, monkeypatch):
    child_setup(monkeypatch, tmp_path)
    monkeypatch.setenv("BENCH_CORE_LOCKS", str(tmp_path / "core-locks"))
    return write_task_file(tmp_path)


def local_grid(task: str, out: Path, seeds=(0, 1)) -> list[dict]:
    settings = GridSettings(preset="smoke", backend="hf")
    return run_grid(resolve_grid(METHODS, [task], ["fake-a"], list(seeds), settings), out=out,
                    pool=ModelPool(opener=OPENER), isolate=False)


def test_cli_ray_grid_equals_the_local_grid(tmp_path, world):
    """`bench run --executor ray` (a local Ray instance, 2 CPUs, one thread per cell) on a tiny real HF model
    writes the same records as `--executor local` with one thread."""
    from tiny import tiny_model

    model, tok = tiny_model()
    folder = tmp_path / "tiny-model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    base = ["run", "--methods", ",".join(METHODS), "--tasks", world, "--models", str(folder), "--seeds", "0,1",
            "--preset", "smoke", "--backend", "hf", "--no-cache", "--threads", "1"]
    res = CliRunner().invoke(app, [*base, "--results", str(tmp_path / "local")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [*base, "--results", str(tmp_path / "ray"), "--executor", "ray"])
    assert res.exit_code == 0, res.output
    ray_snap, local_snap = snapshot(tmp_path / "ray"), snapshot(tmp_path / "local")
    assert len(ray_snap) == 4 and comparable(ray_snap) == comparable(local_snap)
    placed = {name: ran_on(tmp_path / name) for name in ("ray", "local")}
    assert {p["executor"] for p in placed["ray"]} == {"ray"} and all(p["node"] and p["pid"] for p in placed["ray"])
    assert {p["executor"] for p in placed["local"]} == {"local"}
    again = CliRunner().invoke(app, [*base, "--results", str(tmp_path / "ray"), "--executor", "ray"])
    assert again.exit_code == 0 and again.output.count("finished already") == 4  # found whichever executor made them


def test_two_node_cluster_runs_cells_on_both_nodes(tmp_path, world):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        with RayExecutor(RaySettings(), PoolSettings(opener=OPENER)) as ex:
            assert ex.parallelism(4) == 2
            settings = GridSettings(preset="smoke", backend="hf")
            records = run_grid(resolve_grid(METHODS, [world], ["fake-a"], [0, 1], settings), out=tmp_path / "ray",
                               executor=ex)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(records) == 4 and all("error" not in r for r in records)
    assert len({p["node"] for p in ran_on(tmp_path / "ray")}) == 2  # both nodes ran cells, into one results folder
    local_grid(world, tmp_path / "local")
    assert comparable(snapshot(tmp_path / "ray")) == comparable(snapshot(tmp_path / "local"))


def test_killed_workers_are_replaced_and_the_cell_resumes(tmp_path, world, monkeypatch):
    """SIGKILL the worker running a multi-step cell at three points (after its 1st, 2nd and 3rd logged step):
    Ray replaces it, the cell resumes from its step log, and the records equal an uninterrupted run's."""
    local_grid(world, tmp_path / "local", seeds=(0,))
    monkeypatch.setenv("GRIDWORLD_SLOW", "0.02")
    out = tmp_path / "ray"
    log = Path(os.environ["GRIDWORLD_OPEN_LOG"])
    kills: list[tuple[int, int]] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and len(kills) < 3:
            steps = list(out.glob("optimize-opro-*/steps.jsonl"))
            lines = len(steps[0].read_text().splitlines()) if steps else 0
            opened_pids = [pid for pid, _ in opened(log)]
            if lines >= len(kills) + 1 and opened_pids and (not kills or opened_pids[-1] != kills[-1][1]):
                os.kill(opened_pids[-1], signal.SIGKILL)
                kills.append((lines, opened_pids[-1]))
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    with RayExecutor(RaySettings(max_parallel=1), PoolSettings(opener=OPENER), ray_init={"num_cpus": 2}) as ex:
        thread.start()
        try:
            records = run_grid(resolve_grid(["opro"], [world], ["fake-a"], [0], GridSettings(preset="smoke", backend="hf")),
                               out=out, executor=ex)
        finally:
            stop.set()
            thread.join()
    assert [lines for lines, _ in kills] == [1, 2, 3], kills  # three kills, at three different points
    assert "error" not in records[0]
    ray_cells = comparable(snapshot(out))
    local_cells = {k: v for k, v in comparable(snapshot(tmp_path / "local")).items() if "opro" in k}
    assert ray_cells == local_cells
    for line in next(out.glob("optimize-opro-*/steps.jsonl")).read_text().splitlines():
        json.loads(line)  # every line parses: no torn or doubled line


def test_impossible_demand_fails_at_once_in_one_line(tmp_path, world, monkeypatch):
    import harness.cli.grid

    monkeypatch.setattr(harness.cli.grid, "check_model", lambda model, backend, base_url=None: None)  # scripted model
    res = CliRunner().invoke(app, ["run", "--methods", "zs-cot", "--tasks", world, "--models", "fake-a", "--preset", "smoke",
                                   "--backend", "hf", "--results", str(tmp_path / "r"), "--executor", "ray",
                                   "--cell-gpus", "1"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "no node can run a cell that needs 1 CPU and 1 GPU" in text and "--cell-gpus" in text
    with pytest.raises(BenchError, match="--max-parallel must be at least 1"):
        RaySettings(max_parallel=0)


def test_ctrl_c_leaves_resumable_folders(tmp_path, world, monkeypatch):
    local_grid(world, tmp_path / "local", seeds=(0,))
    monkeypatch.setenv("GRIDWORLD_SLOW", "0.02")
    out = tmp_path / "ray"

    def interrupt_on_second_step(event):
        if "step" in event.text and list(out.glob("optimize-opro-*/steps.jsonl")):
            raise KeyboardInterrupt

    settings = GridSettings(preset="smoke", backend="hf")
    with RayExecutor(RaySettings(), PoolSettings(opener=OPENER), ray_init={"num_cpus": 2}) as ex:
        with pytest.raises(KeyboardInterrupt):
            run_grid(resolve_grid(METHODS, [world], ["fake-a"], [0], settings), out=out, executor=ex,
                     progress=interrupt_on_second_step)
    partial = next(out.glob("optimize-opro-*"))
    assert (partial / "steps.jsonl").exists() and not (partial / "summary.json").exists()
    monkeypatch.delenv("GRIDWORLD_SLOW")
    with RayExecutor(RaySettings(), PoolSettings(opener=OPENER), ray_init={"num_cpus": 2}) as ex:
        run_grid(resolve_grid(METHODS, [world], ["fake-a"], [0], settings), out=out, executor=ex)
    assert comparable(snapshot(out)) == comparable(snapshot(tmp_path / "local"))


def test_sigterm_on_the_driver_stops_like_ctrl_c(tmp_path, world, monkeypatch):
    """A scheduler's SIGTERM reaches the command's handler (ray.init installs its own; the executor puts the
    command's back), so the grid stops as on Ctrl-C and leaves a resumable folder."""
    from harness.cli.options import Terminated, _terminate

    monkeypatch.setenv("GRIDWORLD_SLOW", "0.02")
    out = tmp_path / "ray"

    def terminate_on_second_step(event):
        if "step" in event.text and list(out.glob("optimize-opro-*/steps.jsonl")):
            os.kill(os.getpid(), signal.SIGTERM)

    settings = GridSettings(preset="smoke", backend="hf")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with RayExecutor(RaySettings(), PoolSettings(opener=OPENER), ray_init={"num_cpus": 2}) as ex:
            assert signal.getsignal(signal.SIGTERM) is _terminate
            with pytest.raises(Terminated):
                run_grid(resolve_grid(METHODS, [world], ["fake-a"], [0], settings), out=out, executor=ex,
                         progress=terminate_on_second_step)
    finally:
        signal.signal(signal.SIGTERM, previous)
    partial = next(out.glob("optimize-opro-*"))
    assert (partial / "steps.jsonl").exists() and not (partial / "summary.json").exists()
