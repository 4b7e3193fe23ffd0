"""`bench run --executor ray`: the grid's cells in parallel on one machine or across a Ray cluster.

Ray does the scheduling, resources, actors, restarts and cancellation; this module only says what a cell
needs and hands cells to actors:
- one `CellWorker` actor per model replica holds an open model pool (`ModelPool`) and runs `run_cell` for the
  cells it is given, so a model loads once per worker, not once per cell; a model's actors are created when
  its cells start and killed when they are done (models run one after another, as with `--executor local`);
- every actor asks for `cell_cpus` CPUs and `cell_gpus` GPUs; on a CPU node it pins itself to cores no other
  cell of that node holds (a lock file per core), so two cells never share a core, and vLLM binds the same
  cores (`VLLM_CPU_OMP_THREADS_BIND` follows the process's affinity);
- a worker or node that dies mid-cell is restarted by Ray (`max_restarts`) and the cell is retried there
  (`max_task_retries`); it resumes from its step log in the shared results folder, so it ends with the record
  an uninterrupted run writes. A cell that fails on its own returns its error: it is never retried;
- messages (start, the method's lines, evaluation progress) come back through a Ray queue, so the progress
  display, ETA and records are those of the local executor; records name the node and worker they ran on;
- the results folder must be one that every node sees: a probe file written from each node is read back by
  the driver before any cell starts. The response cache stays local to each node (sqlite must not live on a
  network filesystem).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import signal
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.env import env_path
from harness.core.spec import RunSpec
from harness.core.types import BenchError
from harness.runner.child import Send

if TYPE_CHECKING:
    from harness.runner.pool import PoolSettings

INSTALL_HINT = 'Ray is not installed: pip install "greater-bench[ray]" (or use --executor local)'
RESTARTS = 5  # a dead worker is replaced this many times (per actor); its cell is retried as often
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", "HF_HOME", "BENCH_VLLM_EAGER",
                 "VLLM_CPU_KVCACHE_SPACE", "TOKENIZERS_PARALLELISM", "BENCH_DATA_DIR",
                 "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")  # quiet logs (bench CLI)
LOCAL_ONLY_ENV = ("BENCH_CACHE_DIR", "PYTHONPATH")  # paths of this machine: forwarded to a local instance only


ADDRESS_HELP = ("use HEAD:PORT (what `ray start --head` prints, e.g. 10.0.0.5:6379), ray://HEAD:10001, auto (the "
                "cluster this machine joined), or leave --ray-address / RAY_ADDRESS out for a new local instance")
PROBE_SECONDS = 3.0  # a head that does not answer this fast is not there: Ray itself would retry for minutes
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_ray_address(address: str | None) -> str | None:
    """`--ray-address` / RAY_ADDRESS: None (blank) for a new local instance, "auto", "local", HOST:PORT or
    ray://HOST:PORT (HOST a name, an IPv4 address or an [IPv6] one). Anything else is a one-line BenchError
    here, before Ray would print its own multi-line warnings."""
    text = (address or "").strip()
    if not text:
        return None
    if text in ("auto", "local"):
        return text
    if _endpoint(text) is None:
        raise BenchError(f"bad Ray address {text!r}: {ADDRESS_HELP}")
    return text


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT or ray://HOST:PORT; None when `address` has neither form."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            return None
    if not host.isascii() or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return host, int(port)


def probe_ray(address: str | None, timeout: float = PROBE_SECONDS) -> None:
    """Fail in one line when nothing listens at a HOST:PORT address (Ray would retry for minutes, printing
    warnings); "auto", "local" and None are Ray's own to resolve."""
    endpoint = _endpoint(address) if address not in (None, "auto", "local") else None
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout):
            return
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise BenchError(f"no Ray cluster answers at {address} ({reason}): check --ray-address / RAY_ADDRESS "
                         "(`ray start --head` on the head node prints the address)") from None


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        if getattr(e, "name", None) == "ray":
            raise BenchError(INSTALL_HINT) from None
        raise
    return ray


@dataclass(frozen=True, kw_only=True)
class RaySettings:
    """How cells use a Ray cluster. None means: decided from the cluster (see `RayExecutor.plan`)."""

    address: str | None = None  # None: RAY_ADDRESS, else a new local instance sized to this machine
    cell_cpus: int | None = None  # None: 1 (each cell runs with one thread on its own core)
    cell_gpus: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_parallel: int | None = None  # None: as many as the cluster's resources allow

    def __post_init__(self) -> None:
        if self.cell_cpus is not None and self.cell_cpus < 1:
            raise BenchError(f"--cell-cpus must be at least 1 (got {self.cell_cpus})")
        if self.cell_gpus is not None and not (math.isfinite(self.cell_gpus) and self.cell_gpus >= 0):
            raise BenchError(f"--cell-gpus must be a number of GPUs of 0 or more, such as 1 or 0.5 (got {self.cell_gpus:g})")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise BenchError(f"--max-parallel must be at least 1 (got {self.max_parallel})")


# ------------------------------------------------------------------------------------------ the worker


def lock_folder() -> Path:
    """Where cells of a node lock their cores: `BENCH_CORE_LOCKS`, default /tmp/greater-bench-cores-UID (created)."""
    folder = env_path("BENCH_CORE_LOCKS") or Path(f"/tmp/greater-bench-cores-{os.getuid()}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create the core lock folder {folder} ({e.strerror or type(e).__name__}): set "
                         "BENCH_CORE_LOCKS to a writable local folder (or unset it)") from None
    return folder


def claim_cores(n: int) -> tuple[list[int], list[Any]]:
    """Pin this process to `n` cores that no other cell on this node holds: an exclusive lock per core, held
    as long as the returned files stay open and released by the OS when the process dies. Returns the cores
    and the open lock files (([], []) when fewer than `n` are free: the process is then not pinned)."""
    import fcntl

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    folder = lock_folder()
    held: list[tuple[int, Any]] = []
    for core in cores:
        f = open(folder / f"core-{core}.lock", "w")  # noqa: SIM115  (kept open: the lock lives as long as the file)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        held.append((core, f))
        if len(held) == n:
            break
    if len(held) < n:
        for _, f in held:
            f.close()
        return [], []
    mine = [c for c, _ in held]
    os.sched_setaffinity(0, mine)
    return mine, [f for _, f in held]


class CellWorker:
    """A Ray actor: one model pool in one process, running the cells it is given with `run_cell`. Its data rows
    (loaded and hashed once per task) and optimizers (configured once per method) serve every cell it runs."""

    def __init__(self, pool: PoolSettings, cell_cpus: int, pin: bool) -> None:
        self.cores, self._locks = claim_cores(cell_cpus) if pin else ([], [])
        os.environ["OMP_NUM_THREADS"] = str(cell_cpus)
        if self.cores:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, self.cores))
        from harness.runner.cell import Optimizers
        from harness.runner.pool import ModelPool

        self.pool = ModelPool(pool, threads=cell_cpus)
        self.optimizers = Optimizers()
        self.data: dict[str | None, Any] = {}  # data_dir -> RunData

    def where(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {"executor": "ray", "node": ctx.get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
                "worker": ctx.get_actor_id(), "cores": self.cores}

    def run(self, spec: dict[str, Any], k: int, data_dir: str | None, out: str, messages: Any) -> list[Any]:
        from harness.runner.cell import run_cell
        from harness.runner.data import RunData
        from harness.runner.progress import PhaseLines

        where = self.where()
        if data_dir not in self.data:
            self.data[data_dir] = RunData(data_dir)
        lines = PhaseLines(lambda e: messages.put(["say", k, e.text]))
        messages.put(["start", k, where])
        try:
            spec_ = RunSpec.from_dict(spec)
            record = run_cell(spec_, pool=self.pool, data=self.data[data_dir], optimizer=self.optimizers(spec_), out=out,
                              progress=lines, placement=where)
        except Exception as e:  # the cell's own failure: reported once, never retried
            return ["fail", k, f"{type(e).__name__}: {e}"]
        return ["finish", k, record]


def _probe(out: str, token: str) -> str:
    """Write a probe file into the results folder from this node; return the node id."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    path = Path(out) / f".bench-probe-{token}-{node}"
    path.write_text(node)
    return node


# ------------------------------------------------------------------------------------------ the driver


class RayExecutor:
    """Runs grid cells on Ray. Use as a context manager (it starts or joins Ray, and shuts down what it started)."""

    def __init__(self, settings: RaySettings, pool: PoolSettings | None = None, *, ray_init: dict | None = None) -> None:
        from harness.runner.pool import PoolSettings

        self.settings = settings
        self.pool = pool or PoolSettings()  # every worker's (its threads: cell_cpus)
        self.ray_init = dict(ray_init or {})
        self.ray: Any = None
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> RayExecutor:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            address = check_ray_address(self.settings.address or os.environ.get("RAY_ADDRESS"))
            probe_ray(address)
            lock_folder()  # this node's (a worker on it would fail with a traceback)
            local = address is None or address == "local"
            env = {k: os.environ[k] for k in FORWARDED_ENV + (LOCAL_ONLY_ENV if local else ()) if k in os.environ}
            main = threading.current_thread() is threading.main_thread()
            on_term = signal.getsignal(signal.SIGTERM) if main else None
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": env} if env else None, **self.ray_init)
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                raise BenchError(f"cannot start or join Ray at {address or 'a new local instance'} ({first}): check "
                                 "--ray-address / RAY_ADDRESS (`ray start --head` on the head node)") from None
            if callable(on_term):  # ray.init replaces SIGTERM's handler with sys.exit: keep the command's (a clean stop)
                signal.signal(signal.SIGTERM, on_term)
            self.started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    # ------------------------------------------------------------------ resources
    def plan(self, n_cells: int) -> tuple[int, float, int]:
        """(cpus, gpus) per cell and how many cells at once; an impossible demand fails here, in one line."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        gpus_total = sum(n["Resources"].get("GPU", 0) for n in nodes)
        cpus = self.settings.cell_cpus or 1
        gpus = self.settings.cell_gpus if self.settings.cell_gpus is not None else (1.0 if gpus_total else 0.0)
        fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus]
        if not fits:
            have = "; ".join(f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPU, "
                             f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes) or "no nodes"
            raise BenchError(f"no node can run a cell that needs {cpus} CPU and {gpus:g} GPU ({have}): lower "
                             "--cell-cpus / --cell-gpus or add such a node")
        slots = 0
        for n in fits:
            by_cpu = int(n["Resources"].get("CPU", 0) // cpus)
            by_gpu = int(n["Resources"].get("GPU", 0) // gpus) if gpus else by_cpu
            slots += min(by_cpu, by_gpu)
        parallel = max(1, min(slots, n_cells, self.settings.max_parallel or slots))
        return cpus, gpus, parallel

    def check_shared(self, out: str | Path) -> None:
        """Every alive node must see `out` as this driver does: a probe written from each node is read back."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        root = Path(out).resolve()
        root.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        probe = ray.remote(num_cpus=0)(_probe)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = {n["NodeManagerAddress"] + " (" + n["NodeID"][:8] + ")": probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(root), token)
            for n in nodes}
        try:
            for name, ref in refs.items():
                try:
                    node = ray.get(ref, timeout=120)
                except Exception as e:  # noqa: BLE001  (the node could not write there at all)
                    raise BenchError(f"node {name} cannot write the results folder {root} ({type(e).__name__}): "
                                     "--results must be on a filesystem every node shares") from None
                if not (root / f".bench-probe-{token}-{node}").exists():
                    raise BenchError(f"node {name} writes {root} somewhere this driver does not see: --results must "
                                     "be on a filesystem every node shares")
        finally:
            for p in root.glob(f".bench-probe-{token}-*"):
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ running cells
    def run(self, specs: Sequence[RunSpec], send: Send, *, keep_going: bool, data_dir: str | Path | None,
            out: str | Path) -> None:
        """Run `specs` (as `harness.runner.grid.run_cells` does, with the same messages to `send`), a model's
        cells on that model's actors, several at once."""
        from ray.util.queue import Empty, Queue

        ray = self.ray
        cpus, gpus, parallel = self.plan(len(specs))
        self.check_shared(out)
        messages = Queue()
        worker = ray.remote(CellWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=RESTARTS,
                                                max_task_retries=RESTARTS)
        job = {"data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None, "out": str(Path(out).resolve())}
        pin = gpus == 0
        actors: list[Any] = []

        def drain() -> None:
            while True:
                try:
                    send(messages.get_nowait())
                except Empty:
                    return

        try:
            for model in dict.fromkeys(s.model for s in specs):
                todo = [(k, s) for k, s in enumerate(specs) if s.model == model]
                actors = [worker.remote(self.pool, cpus, pin) for _ in range(min(parallel, len(todo)))]
                idle, inflight = list(actors), {}
                while todo or inflight:
                    while todo and idle:
                        k, spec = todo.pop(0)
                        actor = idle.pop(0)
                        inflight[actor.run.remote(spec.to_dict(), k, job["data_dir"], job["out"], messages)] = (k, actor)
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                    drain()
                    for ref in ready:
                        k, actor = inflight.pop(ref)
                        try:
                            event = ray.get(ref)
                        except Exception as e:  # noqa: BLE001  (the worker died more often than it may be replaced)
                            event = ["fail", k, f"worker lost ({type(e).__name__}): {str(e).splitlines()[0][:200]}"]
                        drain()
                        if event[0] == "fail" and not keep_going:
                            raise BenchError(f"cell {specs[k].run_id} failed: {event[2]}")
                        send(event)
                        idle.append(actor)
                for actor in actors:  # the model's last cell is done: free its workers before the next model
                    ray.kill(actor, no_restart=True)
                actors = []
        except BaseException:  # Ctrl-C or a failed cell: stop the cluster's work; every folder stays resumable
            for actor in actors:
                ray.kill(actor, no_restart=True)
            raise
        finally:
            ray.kill(messages.actor, no_restart=True)

    def parallelism(self, n_cells: int) -> int:
        return self.plan(max(1, n_cells))[2]
