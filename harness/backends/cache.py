"""A sqlite response cache and the `CachedGenerator` wrapper that reads and fills it.

Keys are the sha256 of a canonical JSON of everything that decides a result:

* generation: model identity (which names revision, dtype and backend), the exact rendered prompt, every
  `GenParams` field (temperature, top_p, max_tokens, stop, seed, n, ...) and the sample index;
* loglikelihood: model identity, the exact rendered prompt and the continuation.

Greedy results are deterministic, so serving them from the cache is exact; for sampling the seed is part of
the key, so a cached sample is the one that seed produced. The file is opened lazily (its parent folders are
created on first use, never on import), in WAL mode with a busy timeout, so several processes can share it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core.hashing import canonical_json, sha256_hex
from harness.core.io import ensure_dir
from harness.core.types import BenchError, Generation, Generator, GenParams, Prompt, Sample

KEY_VERSION = 2  # bump when the key layout or the stored values change meaning
BUSY_TIMEOUT_MS = 60_000
_CHUNK = 500  # keys per SELECT ... IN (...), below every sqlite variable limit

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS generations (
        key TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        text TEXT NOT NULL,
        token_ids TEXT NOT NULL,
        finish_reason TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER,
        created REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS loglikelihoods (
        key TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        value REAL NOT NULL,
        created REAL NOT NULL
    )""",
)


def _canonical(obj: Any) -> str:
    return canonical_json(obj, ascii=False, allow_nan=False)


def _digest(obj: Any) -> str:
    return sha256_hex(_canonical(obj))


def params_key(params: GenParams) -> dict[str, Any]:
    """Every GenParams field as JSON values; numbers are normalised by the field's default type, so
    `temperature=0` and `temperature=0.0` give the same key. A field whose value JSON cannot express
    raises TypeError (better than two different values sharing a key)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        default = f.default
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out[f.name] = value
        elif isinstance(value, (int, float)):
            out[f.name] = float(value) if isinstance(default, float) else value
        elif isinstance(value, (tuple, list)):
            out[f.name] = [v if isinstance(v, (str, int, float, bool)) else _reject(f.name, v) for v in value]
        else:
            _reject(f.name, value)
    return out


def _reject(name: str, value: Any) -> Any:
    raise TypeError(f"GenParams.{name}={value!r} cannot be part of a cache key (not a JSON scalar)")


def generation_key(identity: str, rendered: str, params: GenParams, sample_index: int) -> str:
    return _digest(
        {
            "v": KEY_VERSION,
            "kind": "generate",
            "identity": identity,
            "prompt": rendered,
            "params": params_key(params),
            "sample": int(sample_index),
        }
    )


def loglikelihood_key(identity: str, rendered: str, continuation: str) -> str:
    return _digest(
        {
            "v": KEY_VERSION,
            "kind": "loglikelihood",
            "identity": identity,
            "prompt": rendered,
            "cont": continuation,
        }
    )


class ResponseCache:
    """A sqlite file of generations and loglikelihoods. Thread-safe within a process; several processes
    may share one file (WAL journal, busy timeout, one short write transaction per batch)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------------- connection

    def _connection(self) -> sqlite3.Connection:
        # a connection must not cross a fork: reopen in a child process
        if self._conn is None or self._pid != os.getpid():
            ensure_dir(self.path.parent)
            try:
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
            except sqlite3.OperationalError as e:
                raise BenchError(f"cannot open the response cache {self.path} ({e}): set BENCH_CACHE_DIR to a "
                                 "writable folder, or pass --no-cache") from None
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            with _transaction(conn):
                for stmt in _SCHEMA:
                    conn.execute(stmt)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._pid = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # picklable (e.g. for multiprocessing): the path only
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    # ------------------------------------------------------------------------------------- generations

    def get_samples(self, keys: Iterable[str]) -> dict[str, tuple[Sample, int]]:
        """The stored (sample, prompt_tokens) of each key found; missing keys are absent."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, tuple[Sample, int]] = {}
        with self._lock:
            conn = self._connection()
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT key, text, token_ids, finish_reason, prompt_tokens, completion_tokens FROM generations "
                    f"WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, text, token_ids, finish, prompt_tokens, completion in rows:
                    found[key] = (Sample(text, tuple(json.loads(token_ids)), finish, completion), int(prompt_tokens))
        return found

    def put_samples(self, items: Iterable[tuple[str, str, Sample, int]]) -> None:
        """Store (key, identity, sample, prompt_tokens) rows in one transaction."""
        now = time.time()
        rows = [
            (key, identity, s.text, _canonical([int(t) for t in s.token_ids]), s.finish_reason, int(pt), s.completion_tokens, now)
            for key, identity, s, pt in items
        ]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                conn.executemany("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?)", rows)

    # --------------------------------------------------------------------------------- loglikelihoods

    def get_loglikelihoods(self, keys: Iterable[str]) -> dict[str, float]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, float] = {}
        with self._lock:
            conn = self._connection()
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, value in conn.execute(
                    f"SELECT key, value FROM loglikelihoods WHERE key IN ({marks})", chunk
                ):
                    found[key] = float(value)
        return found

    def put_loglikelihoods(self, items: Iterable[tuple[str, str, float]]) -> None:
        """Store (key, identity, value) rows in one transaction."""
        now = time.time()
        rows = [(key, identity, float(value), now) for key, identity, value in items]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                conn.executemany("INSERT OR REPLACE INTO loglikelihoods VALUES (?,?,?,?)", rows)

    def counts(self) -> Mapping[str, int]:
        """How many rows each table holds (for `bench cache` style reports and tests)."""
        with self._lock:
            conn = self._connection()
            return {
                "generations": conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0],
                "loglikelihoods": conn.execute("SELECT COUNT(*) FROM loglikelihoods").fetchone()[0],
            }


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (a persistent property of the file). When two processes open a new file at
    once, the switch can fail with "database is locked" without waiting on the busy timeout, so retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005 + 0.02 * random.random())


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock up front, so two writers wait
    on the busy timeout instead of failing on a read-to-write upgrade."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


class CachedGenerator:
    """A `Generator` that serves what `cache` holds and sends only the rest to `inner`, in one batched call.

    `cache=None` passes every call through (the CLI's `--no-cache`). Counters: `hits`/`misses` count
    prompts of `generate` (a prompt is a hit when all of its n samples are stored; a miss is a prompt sent
    to `inner`; a repeat of a missing prompt within one batch is sent once and counted as a hit);
    `ll_hits`/`ll_misses` count the requests of `loglikelihood` the same way.
    """

    def __init__(self, inner: Generator, cache: ResponseCache | None) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0
        self.misses = 0
        self.ll_hits = 0
        self.ll_misses = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    def render(self, prompt: Prompt) -> str:
        return self.inner.render(prompt)

    def __getattr__(self, name: str) -> Any:
        """The backend's extras (an HF model's `model`/`tokenizer`, `next_token_logprobs`) pass through, uncached."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self) -> None:
        """Close the wrapped backend (frees its weights or connections); the shared cache file stays."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        prompts = list(prompts)
        if self.cache is None:
            self.misses += len(prompts)
            return _checked(self.inner.generate(prompts, params), prompts, params)
        identity = self.inner.identity
        rendered = [self.inner.render(p) for p in prompts]
        keys = [[generation_key(identity, r, params, i) for i in range(params.n)] for r in rendered]
        stored = self.cache.get_samples(k for ks in keys for k in ks)

        results: list[Generation | None] = [None] * len(prompts)
        todo: dict[str, int] = {}  # first sample key of a missing prompt -> its index in the inner call
        todo_prompts: list[Prompt] = []
        todo_keys: list[list[str]] = []
        for pos, ks in enumerate(keys):
            if all(k in stored for k in ks):
                samples = tuple(stored[k][0] for k in ks)
                prompt_tokens = stored[ks[0]][1]
                results[pos] = Generation(prompt=rendered[pos], prompt_tokens=prompt_tokens, samples=samples)
                self.hits += 1
            elif ks[0] in todo:
                self.hits += 1  # the same rendered prompt twice in one batch: generated once
            else:
                todo[ks[0]] = len(todo_prompts)
                todo_prompts.append(prompts[pos])
                todo_keys.append(ks)
                self.misses += 1

        if todo_prompts:
            fresh = _checked(self.inner.generate(todo_prompts, params), todo_prompts, params)
            self.cache.put_samples(
                (k, identity, s, gen.prompt_tokens)
                for ks, gen in zip(todo_keys, fresh)
                for k, s in zip(ks, gen.samples)
            )
            for pos, ks in enumerate(keys):
                if results[pos] is None:
                    gen = fresh[todo[ks[0]]]
                    results[pos] = Generation(
                        prompt=rendered[pos], prompt_tokens=gen.prompt_tokens, samples=gen.samples
                    )
        return [g for g in results if g is not None]

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        requests = list(requests)
        if self.cache is None:
            self.ll_misses += len(requests)
            return _checked_ll(self.inner.loglikelihood(requests), requests)
        identity = self.inner.identity
        keys = [loglikelihood_key(identity, self.inner.render(p), c) for p, c in requests]
        stored = self.cache.get_loglikelihoods(keys)
        todo: dict[str, int] = {}
        todo_requests: list[tuple[Prompt, str]] = []
        for key, req in zip(keys, requests):
            if key in stored or key in todo:
                self.ll_hits += 1
            else:
                todo[key] = len(todo_requests)
                todo_requests.append(req)
                self.ll_misses += 1
        if todo_requests:
            fresh = _checked_ll(self.inner.loglikelihood(todo_requests), todo_requests)
            self.cache.put_loglikelihoods((key, identity, fresh[j]) for key, j in todo.items())
            stored.update({key: float(fresh[j]) for key, j in todo.items()})
        return [stored[k] for k in keys]


def _checked(out: Sequence[Generation], prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
    """The inner backend's answer, after checking it has one Generation of n samples per prompt."""
    out = list(out)
    if len(out) != len(prompts):
        raise RuntimeError(f"backend returned {len(out)} generations for {len(prompts)} prompts")
    for gen in out:
        if len(gen.samples) != params.n:
            raise RuntimeError(f"backend returned {len(gen.samples)} samples, n={params.n} were asked for")
    return out


def _checked_ll(out: Sequence[float], requests: Sequence[tuple[Prompt, str]]) -> list[float]:
    out = [float(v) for v in out]
    if len(out) != len(requests):
        raise RuntimeError(f"backend returned {len(out)} loglikelihoods for {len(requests)} requests")
    return out
