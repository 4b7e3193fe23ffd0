"""lm-eval export and cross-check: the exported tasks feed lm-eval exactly what the harness feeds the model.

Export content is checked against `HFGenerator.render`/`encode` and against lm-eval's own tokenisation
(HFLM over the same model object) for every prompt position, on the tiny random model and on SmolLM2;
round trips run lm-eval 0.4 for real (tiny model via the CLI, SmolLM2 on 3 examples) and must reproduce the
harness's reasoning token for token and its readings example for example.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from tiny import tiny_generator
from typer.testing import CliRunner

from harness.cli import app
from harness.core.records import PredictionRecord
from harness.core.spec import RunSpec
from harness.core.types import BenchError, GenParams, PromptPosition
from harness.evaluation.evaluate import build_prompt, with_extractor
from harness.lmeval.export import LMEVAL_FIX, build_export, export_run, require_lm_eval
from harness.lmeval.runs import StoredRun, load_stored_run
from tasks import get_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INSTRUCTION = "Let's think step by step."


@pytest.fixture(scope="module")
def tiny():
    return tiny_generator()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny):
    """The tiny model as a local model folder, so the CLI and lm-eval's `hf` model can load it by path."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def smollm():
    from harness.backends.hf import HFGenerator

    return HFGenerator("smollm2-135m", threads=1)


def _hflm(gen):
    """lm-eval's HF model over the generator's own model object (tokenisation is what we compare)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=gen.model, tokenizer=gen.tokenizer, batch_size=4, device="cpu", add_bos_token=False)


def _stored_run(tmp_path, task_name, position, examples, model="smollm2-135m", kind="eval", prompt=INSTRUCTION):
    spec = RunSpec(kind=kind, task=task_name, model=model, data="d", method="prompt" if kind == "eval" else "greater",
                   prompt=prompt if kind == "eval" else None, position=position, limit=len(examples), max_new_tokens=24,
                   preset="smoke" if kind == "optimize" else None)
    preds = [PredictionRecord(id=ex.id, input=ex.input, reasoning=f" Step one of {i}. So the answer is") for i, ex in enumerate(examples)]
    return StoredRun(path=tmp_path, spec=spec, instruction=prompt, readings={}, predictions=preds)


def _read(folder, fname):
    text = (folder / fname).read_text()
    return yaml.safe_load(text) if fname.endswith(".yaml") else [json.loads(x) for x in text.splitlines()]


@pytest.mark.parametrize("position", list(PromptPosition))
@pytest.mark.parametrize("which", ["tiny", "smollm"])
def test_export_renders_and_tokenises_exactly_as_the_harness(tmp_path, position, which, request):
    gen = request.getfixturevalue(which)
    lm = _hflm(gen)
    for task_name in ("bbh:navigate", "bbh:date_understanding"):  # words after "$ ", letters after "$"
        task = get_task(task_name)
        examples = list(task.load(data_dir=DATA).test[:2])
        run = _stored_run(tmp_path, task_name, position, examples)
        export = build_export(run, task, examples, gen.codec, tmp_path / task.name.replace(":", "_"),
                              model_args=("hf", {"add_bos_token": False}))
        folder = export.write()
        name = export.name

        cot = _read(folder, f"{name}_cot.yaml")
        assert cot["output_type"] == "generate_until" and cot["doc_to_text"] == "prompt"
        assert cot["generation_kwargs"] == {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 24}
        assert cot["dataset_path"] == "json" and Path(cot["dataset_kwargs"]["data_files"]["test"]) == folder / f"{name}_cot.jsonl"
        options = _read(folder, f"{name}_options.yaml")
        assert options["output_type"] == "multiple_choice" and options["target_delimiter"] == ""
        greedy = _read(folder, f"{name}_greedy.yaml")
        assert greedy["generation_kwargs"]["until"] == ["\n"]
        assert greedy["generation_kwargs"]["max_gen_toks"] == task.answer_max_tokens

        for row, ex, pred in zip(_read(folder, f"{name}_cot.jsonl"), examples, run.predictions):
            prompt = build_prompt(ex, INSTRUCTION, position)
            assert row["prompt"] == gen.render(prompt)
            assert row["harness_reasoning"] == pred.reasoning
            ids = lm.tok_batch_encode([row["prompt"]])[0][0].tolist()
            assert ids == gen.encode(gen.render(prompt))  # same ids, no doubled BOS
        for row, ex, pred in zip(_read(folder, f"{name}_answer.jsonl"), examples, run.predictions):
            prompt = with_extractor(build_prompt(ex, INSTRUCTION, position), pred.reasoning, task.extractor(ex))
            assert row["context"] == gen.render(prompt)
            assert row["choices"] == list(task.options_for(ex)) and row["choices"][row["gold_index"]] == ex.target
            assert lm.tok_batch_encode([row["context"]])[0][0].tolist() == gen.encode(gen.render(prompt))
            for choice in row["choices"]:  # lm-eval's log-likelihood split (target_delimiter "") = the harness's
                ((ctx, cont),) = gen.codec.loglikelihood_split([(prompt, choice)])
                assert lm._encode_pair(row["context"], choice) == (gen.encode(ctx), gen.codec.continuation(cont))


def test_greedy_filter_mirrors_the_harness_extraction():
    """The exported regex reads what `task.extract` reads (letters outside the options score wrong either way)."""
    import re

    from harness.lmeval.export import greedy_filter
    from tasks.formats import normalise_number

    cases = {
        "bbh:navigate": [" Yes.", "$ no", "Yesterday", "(Yes)", "1", "**No**", "\nYes"],
        "bbh:date_understanding": ["A", "(B) 12/01", "$C$", "Ab", "a", "Z"],
        "bbh:boolean_expressions": [" True", "false.", "Truex"],
        "bbh:object_counting": ["12", "12x", " $-3 apples", "7.", "1,234", "12.5x"],
    }
    for name, texts in cases.items():
        task = get_task(name)
        pattern, _ = greedy_filter(task)
        ex = task.load(data_dir=DATA).test[0]
        for text in texts:
            found = re.findall(pattern, text)
            got = found[0].strip() if found else None
            want = task.extract(text, ex)
            if task.answer_format.name == "LETTER" and got not in task.options_for(ex):
                got = None
            elif task.answer_format.name == "INTEGER" and got is not None:
                got = normalise_number(got)
            assert (got and got.lower()) == (want and want.lower()), (name, text, got, want)


def _eval_cli(args, out):
    return CliRunner().invoke(app, ["eval", *args, "--out", str(out), "--data-dir", str(DATA), "--no-cache",
                                    "--threads", "1", "--backend", "hf"])


def test_round_trip_with_lm_eval_on_the_tiny_model(tmp_path, tiny_folder):
    """`bench eval --engine lm-eval`: lm-eval's `hf` model over the same folder reproduces every reading."""
    res = _eval_cli(["--engine", "lm-eval", "--model", str(tiny_folder), "--tasks", "bbh:navigate,bbh:date_understanding",
                     "--limit", "3", "--max-new-tokens", "12", "--position", "assistant"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "harness vs lm-eval" in res.output
    for folder in sorted(tmp_path.iterdir()):
        rec = json.loads((folder / "lmeval.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        assert rec["n"] == 3 and rec["reasoning"]["identical"] == 3 and rec["answer_text"]["identical"] == 3
        assert set(rec["readings"]) == {"greedy", "options", "fallback"}
        for name, r in rec["readings"].items():
            assert r["agreement"] == 1.0 and r["differ"] == [] and r["within_harness_ci"], (name, r)
            assert r["lm_eval"] == r["harness"] == summary["readings"][name]["accuracy"]
        assert rec["max_option_loglik_difference"] < 1e-4
        metrics = rec["lm_eval_metrics"]
        name = rec["tasks"][0].removesuffix("_cot")
        assert metrics[f"{name}_cot"]["exact_match,none"] == 1.0  # lm-eval's own check of the reasoning
        assert metrics[f"{name}_options"]["acc,none"] == summary["readings"]["options"]["accuracy"]
        assert metrics[f"{name}_greedy"]["exact_match,greedy"] == summary["readings"]["greedy"]["accuracy"]
        assert rec["model_args"]["pretrained"] == str(tiny_folder.resolve()) and rec["model_args"]["add_bos_token"] is False


@pytest.mark.slow
def test_round_trip_with_lm_eval_on_smollm2(tmp_path, smollm):
    """SmolLM2 on 3 navigate examples: lm-eval's reasoning token ids and options reading equal the harness's."""
    res = _eval_cli(["--engine", "lm-eval", "--tasks", "bbh:navigate", "--limit", "3", "--max-new-tokens", "24",
                     "--prompt", "Think step by step.", "--position", "before"], tmp_path)
    assert res.exit_code == 0, res.output
    (folder,) = list(tmp_path.iterdir())
    rec = json.loads((folder / "lmeval.json").read_text())
    assert rec["model"] == "hf" and rec["reasoning"]["identical"] == 3 and rec["answer_text"]["identical"] == 3
    assert rec["readings"]["options"]["agreement"] == 1.0 and rec["readings"]["greedy"]["agreement"] == 1.0
    assert rec["max_option_loglik_difference"] < 1e-4

    # Token level: record what lm-eval's generate call returns, on the generator's own model object.
    from harness.lmeval.check import cross_check_run

    lm = _hflm(smollm)
    generated = []
    model_generate = lm._model_generate

    def recording(context, max_length, stop, **kw):
        out = model_generate(context, max_length, stop, **kw)
        generated.extend(out[:, context.shape[1]:].tolist())
        return out

    lm._model_generate = recording
    again = cross_check_run(folder, data_dir=DATA, lm=lm, codec=smollm.codec, skip_finished=False)
    assert again["readings"]["options"]["agreement"] == 1.0
    run = load_stored_run(folder)
    task = get_task("bbh:navigate")
    examples = list(task.load(data_dir=DATA).test[:3])
    ours = smollm.generate([build_prompt(ex, run.instruction, "before") for ex in examples], GenParams(max_tokens=24))
    eos = smollm.tokenizer.eos_token_id
    theirs = {tuple(ids[: ids.index(eos)] if eos in ids else ids) for ids in generated}
    assert all(len(g.samples[0].token_ids) > 5 for g in ours)  # real reasoning, not an empty answer
    assert {g.samples[0].token_ids for g in ours} <= theirs


def test_export_cli_from_run_folders(tmp_path, tiny_folder):
    res = _eval_cli(["--model", str(tiny_folder), "--tasks", "bbh:navigate", "--limit", "2", "--max-new-tokens", "8"], tmp_path / "runs")
    assert res.exit_code == 0, res.output
    (run_dir,) = list((tmp_path / "runs").iterdir())
    res = CliRunner().invoke(app, ["export", "lm-eval", "--run", str(run_dir), "--out", str(tmp_path / "x"), "--data-dir", str(DATA)])
    assert res.exit_code == 0, res.output
    readme = (tmp_path / "x" / "README.md").read_text()
    assert "--include_path" in readme and "add_bos_token=False" in readme and "--apply_chat_template" in readme
    assert f"pretrained={tiny_folder.resolve()}" in readme
    preds = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    (cot_file,) = (tmp_path / "x").glob("*_cot.jsonl")
    assert [r["harness_reasoning"] for r in _read(cot_file.parent, cot_file.name)] == [p["reasoning"] for p in preds]

    # stage 2 from lm-eval's own reasoning: a samples file as `lm_eval --log_samples` writes it
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"doc": {"id": p["id"]}, "resps": [[f"lm-eval says {i}"]]}) + "\n" for i, p in enumerate(preds)))
    res = CliRunner().invoke(app, ["export", "lm-eval", "--run", str(run_dir), "--out", str(tmp_path / "y"),
                                   "--data-dir", str(DATA), "--reasoning", str(samples)])
    assert res.exit_code == 0, res.output
    (ans_file,) = (tmp_path / "y").glob("*_answer.jsonl")
    rows = _read(ans_file.parent, ans_file.name)
    assert [r["reasoning"] for r in rows] == ["lm-eval says 0", "lm-eval says 1"]
    assert "lm-eval says 0 Therefore, the final answer" in rows[0]["context"]


def test_export_of_an_optimize_run_uses_its_best_prompt(tmp_path, smollm):
    task = get_task("bbh:navigate")
    examples = list(task.load(data_dir=DATA).test[:2])
    spec = RunSpec(kind="optimize", task="bbh:navigate", model="smollm2-135m", data="d", method="greater", preset="cpu",
                   position="before", max_new_tokens=32)
    run_dir = tmp_path / spec.run_id
    run_dir.mkdir()
    (run_dir / "spec.json").write_text(json.dumps({"schema": 1, "run_id": spec.run_id, "spec": spec.to_dict()}))
    test = {"n": 2, "primary": "options", "readings": {}}  # as a run writes it (schema-1 records)
    (run_dir / "summary.json").write_text(json.dumps({"schema": 1, "run_id": spec.run_id, "prompt": "Use logic.", "test": test,
                                                      "test_accuracy": 0.5, "primary": "options"}))
    (run_dir / "predictions.jsonl").write_text("".join(
        json.dumps({"schema": 1, "id": ex.id, "input": ex.input, "reasoning": "So."}) + "\n" for ex in examples))
    export = export_run(run_dir, tmp_path / "out", data_dir=DATA)
    rows = _read(export.folder, f"{export.name}_cot.jsonl")
    assert rows[0]["prompt"] == smollm.render(build_prompt(examples[0], "Use logic.", "before"))
    assert _read(export.folder, f"{export.name}_cot.yaml")["generation_kwargs"]["max_gen_toks"] == 32
    assert export.name == f"gb_bbh_navigate_{spec.run_id[-10:]}"


def test_missing_lm_eval_is_one_line_naming_the_fix(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` now raises ImportError
    with pytest.raises(BenchError, match=r'pip install "greater-bench\[lmeval\]"'):
        require_lm_eval()
    res = _eval_cli(["--engine", "lm-eval", "--model", "/nonexistent", "--limit", "1"], tmp_path)
    assert res.exit_code == 2
    assert LMEVAL_FIX in res.output and len(res.output.strip().splitlines()) == 1  # before any model loads
    res = _eval_cli(["--engine", "lmeval", "--limit", "1"], tmp_path)
    assert res.exit_code == 2 and "'lmeval' is not one of 'harness', 'lm-eval'" in res.output
