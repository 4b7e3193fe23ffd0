"""Record files: atomic writes with the process umask's permissions, strict JSON, append-only JSON lines.

Every file is written to a temporary name and renamed, so a killed process never leaves a torn file; a
filesystem error (full disk, read-only folder, a file where a folder should be) becomes one `BenchError`
line naming the path, and the temporary file is removed. JSON is strict: NaN and infinities are written as
null (JSON has no such numbers and strict readers reject them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.core.types import SCHEMA_VERSION, BenchError


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask would, briefly, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FIXES = {
    errno.ENOSPC: "free some disk space or choose another folder",
    errno.EDQUOT: "free some disk space or choose another folder",
    errno.EROFS: "the filesystem is read-only: choose another folder",
    errno.EACCES: "no permission: choose a folder you can write to",
    errno.EPERM: "no permission: choose a folder you can write to",
    errno.ENOTDIR: "a file is in the way where a folder is needed: choose another folder",
    errno.EEXIST: "a file is in the way where a folder is needed: choose another folder",
    errno.EISDIR: "a folder is in the way where a file is needed: choose another path",
}


def fs_error(e: OSError, path: Path | str, doing: str = "write") -> BenchError:
    """One line for a filesystem error, naming the path and what to do."""
    return BenchError(f"cannot {doing} {path}: {e.strerror or e}; {FIXES.get(e.errno or 0, 'check the path')}")


def ensure_dir(path: Path | str) -> Path:
    """Create a folder (and parents); a file in the way or a read-only parent is one line."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise fs_error(e, p, "create the folder") from None
    except OSError as e:
        raise fs_error(e, p, "create the folder") from None
    if not p.is_dir():
        raise BenchError(f"cannot create the folder {p}: a file is in the way; choose another folder")
    return p


def check_writable(folder: Path | str, what: str = "output") -> Path:
    """Fail now (before any model loads) if `folder` cannot be created and written to.

    The probe is written the way every record is (a temporary file, written and synced, renamed into place)
    and then removed, so a read-only folder, missing permissions or a full disk show here, not after a run."""
    p = ensure_dir(folder)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", dir=p)
        with os.fdopen(fd, "wb") as f:
            f.write(b"greater-bench write probe\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, tmp + ".done")
        tmp += ".done"
    except OSError as e:
        fix = FIXES[errno.ENOSPC] if e.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another folder"
        raise BenchError(f"the {what} folder {p} is not writable ({e.strerror or e}): {fix}") from None
    finally:
        for name in (tmp, tmp.removesuffix(".done")) if tmp is not None else ():
            with contextlib.suppress(OSError):
                Path(name).unlink(missing_ok=True)
    return p


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise fs_error(e, path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a record is an ordinary file
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise fs_error(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON (no NaN/Infinity: they become null)."""
    return json.dumps(finite(obj), allow_nan=False, default=str, **kw)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(dumps({"schema": SCHEMA_VERSION, **r}) + "\n" for r in rows))


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one record as one line (a single write of a complete line, then fsync)."""
    path = Path(path)
    ensure_dir(path.parent)
    line = dumps({"schema": SCHEMA_VERSION, **row}) + "\n"
    try:
        _drop_torn_tail(path)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise fs_error(e, path) from None


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline, so the next line starts clean."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


def read_json(path: Path | str) -> dict[str, Any]:
    """A run folder's JSON record (spec.json, summary.json); a missing, unreadable or corrupt one is one line."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"missing record {path}: the run folder is incomplete; delete it and re-run") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BenchError(f"corrupt or truncated record {path}: restore it or delete the run folder, and re-run") from None
    except OSError as e:
        raise fs_error(e, path, "read") from None
    if not isinstance(obj, dict):
        raise BenchError(f"corrupt record {path}: expected a JSON object; restore it or delete the run folder")
    return obj


def read_jsonl(path: Path, *, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    """Read a JSON-lines record file; a corrupt line is an error naming file and line.

    `torn_tail_ok` (append-only logs): a last line without its newline is what a kill during `append_jsonl`
    leaves; it is ignored (the step it recorded was not finished), so a resumed run redoes that step."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if torn_tail_ok and n == len(lines) and not line.endswith("\n"):
            break
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise BenchError(f"corrupt record in {path} line {n}: delete the run folder or that line and re-run") from None
        if not isinstance(row, dict) or row.get("schema") != SCHEMA_VERSION:
            found = row.get("schema") if isinstance(row, dict) else "?"
            raise BenchError(f"record in {path} line {n} has schema {found}, expected {SCHEMA_VERSION}")
        rows.append(row)
    return rows
