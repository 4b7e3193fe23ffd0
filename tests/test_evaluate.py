"""The evaluator's control flow with a scripted generator, run folders, and the CLI's error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.backends.fake import ScriptedGenerator
from harness.cli import app
from harness.core.io import read_jsonl
from harness.core.spec import RunSpec
from harness.core.types import BenchError, ChatPrompt, Example, PromptPosition
from harness.evaluation.evaluate import bootstrap_ci, build_prompt, evaluate, with_extractor
from harness.runner.run import run_eval
from tasks import custom_task, get_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def yes_no_task(tmp_path):
    rows = [
        {"input": f"Question {i}: is it so?", "target": gold}
        for i, gold in enumerate(["Yes", "No", "Yes", "No", "Yes", "No", "Yes", "Yes", "No", "No"])
    ]
    path = tmp_path / "yn.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return custom_task(path, answer_format="yes_no")


def test_prompt_positions():
    ex = Example(id="1", input="Q?", target="A")
    assert build_prompt(ex, "Think.", PromptPosition.AFTER) == ChatPrompt("Q? Think.")
    assert build_prompt(ex, "Think.", "before") == ChatPrompt("Think.\n\nQ?")
    assert build_prompt(ex, "Think.", "assistant") == ChatPrompt("Q?", "Think.")
    assert build_prompt(ex, None, "after") == ChatPrompt("Q?")
    assert with_extractor(ChatPrompt("Q?", "Think."), " it is so. ", "Answer: $") == ChatPrompt("Q?", "Think. it is so. Answer: $")
    assert with_extractor(ChatPrompt("Q?"), "", "Answer: $") == ChatPrompt("Q?", "Answer: $")


def _script(reasoning_for, answer_for):
    """Reasoning on the first call (no extractor yet), the answer after the extractor."""

    def reply(rendered, params, index):
        if "final answer" in rendered:
            return answer_for(rendered)
        return reasoning_for(rendered)

    return reply


def test_three_readings_side_by_side(yes_no_task):
    splits = yes_no_task.load()
    examples = list(splits.test)  # 6 rows
    golds = [e.target for e in examples]

    def reasoning(rendered):  # claims Yes in the text for even question numbers
        n = int(rendered.split("Question ")[1].split(":")[0])
        return f"Step one. So the answer is {'Yes' if n % 2 == 0 else 'No'}."

    # greedy reading always says "1" (what SmolLM2 does): never valid
    gen = ScriptedGenerator(
        _script(reasoning, lambda r: "1"),
        loglik=lambda rendered, cont: 1.0 if cont.strip() == "Yes" else 0.0,  # options: always Yes
    )
    res = evaluate(yes_no_task, examples, "Think.", gen, max_new_tokens=32)
    assert res.readings["greedy"].accuracy == 0.0 and res.readings["greedy"].invalid == 1.0
    assert res.readings["options"].accuracy == pytest.approx(golds.count("Yes") / len(golds))
    assert res.readings["options"].invalid == 0.0
    want_fallback = [("Yes" if int(e.input.split()[1][:-1]) % 2 == 0 else "No") == e.target for e in examples]
    assert res.readings["fallback"].accuracy == pytest.approx(sum(want_fallback) / len(examples))
    assert res.primary == "options"  # closed answer set
    assert any("no parseable answer" in n for n in res.notes)
    # batching: one reasoning call and one answer call for all examples; options scored in one call
    assert len(gen.calls) == 2 and len(gen.calls[0][0]) == len(examples)
    assert len(gen.loglik_calls) == 1 and len(gen.loglik_calls[0]) == 2 * len(examples)
    # the answer prompt is the reasoning continued by the task's extractor
    ctx = gen.calls[1][0][0]
    assert ctx.endswith(yes_no_task.extractor(examples[0])) and "So the answer is" in ctx
    assert gen.calls[0][1].greedy and gen.calls[0][1].max_tokens == 32
    rec = res.examples[0]
    assert set(rec) >= {"id", "input", "reasoning", "gold", "greedy", "options", "fallback", "options_correct"}


def test_a_constant_answer_is_flagged_beside_the_majority_class(tmp_path):
    golds = ["Yes", "No", "Yes", "No", "Yes", "No", "Yes", "Yes", "No", "Yes"]  # 6 Yes, 4 No
    path = tmp_path / "yn.jsonl"
    path.write_text("".join(json.dumps({"input": f"Question {i}: is it so?", "target": g}) + "\n" for i, g in enumerate(golds)))
    yes_no_task = custom_task(path, answer_format="yes_no")
    splits = yes_no_task.load()
    examples = [*splits.train, *splits.dev, *splits.test]
    assert len(examples) == 10

    def reasoning(rendered):
        n = int(rendered.split("Question ")[1].split(":")[0])
        return f"So the answer is {'Yes' if n % 3 == 0 else 'No'}."  # Yes for questions 0, 3, 6, 9

    gen = ScriptedGenerator(_script(reasoning, lambda r: "1"), loglik=lambda rendered, cont: float(cont.strip() == "No"))
    res = evaluate(yes_no_task, examples, "Think.", gen, max_new_tokens=8)
    assert res.majority == {"answer": "Yes", "accuracy": 0.6}
    opt, fb, greedy = res.readings["options"], res.readings["fallback"], res.readings["greedy"]
    assert (opt.top_answer, opt.top_share, opt.accuracy) == ("No", 1.0, 0.4)  # always "No": the No share
    assert (fb.top_answer, fb.top_share) == ("No", 0.6)
    assert greedy.top_answer is None and greedy.top_share != greedy.top_share  # nothing parseable: NaN
    flagged = [n for n in res.notes if "answers 'No' on 100% of examples" in n]
    assert len(flagged) == 1 and "majority class scores 60%" in flagged[0]
    summary = res.summary()
    assert summary["majority"] == {"answer": "Yes", "accuracy": 0.6}
    assert summary["readings"]["options"]["top_answer"] == "No" and summary["readings"]["options"]["top_share"] == 1.0

    varied = ScriptedGenerator(_script(reasoning, lambda r: "1"),
                               loglik=lambda rendered, cont: float((cont.strip() == "Yes") == ("Question 1:" in rendered)))
    res = evaluate(yes_no_task, examples, "Think.", varied, max_new_tokens=8)
    assert res.readings["options"].top_share == 0.9 and not any("of examples, so" in n for n in res.notes)
    gsm = get_task("gsm8k")
    assert gsm.options_for(Example(id="1", input="1+1?", target="2")) == ()
    from harness.evaluation.evaluate import majority_class
    assert majority_class(gsm, [Example(id="1", input="1+1?", target="2")]) is None  # open answers: no majority row


def test_greedy_reading_and_missing_loglikelihood(yes_no_task):
    examples = list(yes_no_task.load().test)
    gen = ScriptedGenerator(_script(lambda r: "Hmm.", lambda r: " Yes"))  # no loglik: cannot score
    res = evaluate(yes_no_task, examples, None, gen)
    assert "options" not in res.readings
    assert res.primary == "greedy"
    assert res.readings["greedy"].accuracy == pytest.approx([e.target for e in examples].count("Yes") / len(examples))
    assert any("options reading skipped" in n for n in res.notes)


def test_bootstrap_interval():
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    lo, hi = bootstrap_ci([True, False] * 50)
    assert lo < 0.5 < hi and 0.35 < lo and hi < 0.65
    assert bootstrap_ci([True, False, True]) == bootstrap_ci([True, False, True])  # seeded


def test_run_folder_written_once(tmp_path, yes_no_task, monkeypatch):
    import tasks

    monkeypatch.setattr(tasks, "get_task", lambda name: yes_no_task)
    gen = ScriptedGenerator(_script(lambda r: "So Yes.", lambda r: "Yes"), loglik=lambda r, c: 0.0)
    from harness.runner.data import RunData

    data = RunData().eval_fingerprint(yes_no_task.name, "test", 4)
    spec = RunSpec(kind="eval", task=yes_no_task.name, model="fake", data=data, prompt="Think.", limit=4)
    s1 = run_eval(spec, gen, out=tmp_path)
    folder = tmp_path / spec.run_id
    assert {p.name for p in folder.iterdir()} == {"spec.json", "summary.json", "predictions.jsonl"}
    meta = json.loads((folder / "spec.json").read_text())
    assert meta["spec"]["seed"] == 0 and "torch" in meta["versions"] and meta["generator"] == "fake"
    import sys

    if "torch" in sys.modules:  # the thread count is recorded when torch computed anything in this process
        assert meta["threads"]["torch_threads"] == sys.modules["torch"].get_num_threads()
    else:
        assert "torch_threads" not in meta["threads"]
    assert len(read_jsonl(folder / "predictions.jsonl")) == 4
    calls = len(gen.calls)
    s2 = run_eval(spec, gen, out=tmp_path)  # finished: read back, nothing recomputed
    assert s2 == s1 and len(gen.calls) == calls
    assert not list(tmp_path.rglob(".*.tmp*")) and not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_corrupt_record_names_file(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text('{"schema": 1, "a": 1}\n{"schema": 1, "a"\n')
    with pytest.raises(BenchError, match=r"steps.jsonl line 2"):
        read_jsonl(path)


def test_run_spec_hash_changes_with_settings():
    a = RunSpec(kind="eval", task="bbh:navigate", model="m", data="d", prompt="x")
    assert a.run_id == RunSpec(kind="eval", task="bbh:navigate", model="m", data="d", prompt="x").run_id
    assert a.run_id != RunSpec(kind="eval", task="bbh:navigate", model="m", data="d", prompt="y").run_id
    assert a.run_id != RunSpec(kind="eval", task="bbh:navigate", model="m", data="d", prompt="x", max_new_tokens=9).run_id
    assert a.run_id != RunSpec(kind="eval", task="bbh:navigate", model="m", data="e", prompt="x").run_id  # other rows


runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--tasks", "bbh:navigat"], "did you mean 'bbh:navigate'"),
        (["eval", "--tasks", "bbh:navigate", "--model", "smollm2-13m"], "did you mean 'smollm2-135m'"),
        (["eval", "--reading", "vibes"], "'vibes' is not one of 'greedy', 'options', 'fallback'."),
        (["eval", "--reading", "optons"], "'optons' is not one of 'greedy', 'options', 'fallback'; did you mean 'options'?"),
        (["eval", "--backend", "vlm"], "'vlm' is not one of 'hf', 'vllm', 'openai', 'auto'; did you mean 'vllm'?"),
        (["eval", "--backend", "openai"], "needs --base-url"),
    ],
)
def test_cli_bad_input_one_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--out", str(tmp_path), "--data-dir", str(DATA)])
    assert result.exit_code == 2
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert message in " ".join(text.split())
    assert "Traceback" not in text
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_cli_lists_tasks_and_models():
    r = runner.invoke(app, ["tasks"])
    assert r.exit_code == 0 and "bbh:navigate" in r.output and "gsm8k" in r.output and "folio" in r.output
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "smollm2-135m" in r.output and "gemma3-270m" in r.output


def test_real_task_prompt_has_extractor_of_the_example():
    task = get_task("bbh:date_understanding")
    ex = task.load(data_dir=DATA).test[0]
    assert "'$A' or '$B'" in task.extractor(ex) and task.extractor(ex).endswith("is $")


def test_run_id_is_one_safe_folder_name():
    spec = RunSpec(kind="eval", task="custom:/tmp/some dir/qa.jsonl", model="/models/my-model/", data="d", prompt="x")
    assert "/" not in spec.run_id and " " not in spec.run_id
    assert spec.run_id.startswith("eval-zs-cot-qa-my-model-")


def test_choice_message_drops_the_validator_prefix_and_names_the_closest_value():
    from harness.cli import choice_message

    assert choice_message("Value error, 'csvv' is not one of 'md', 'csv', 'html'.") == (
        "'csvv' is not one of 'md', 'csv', 'html'; did you mean 'csv'?")
    assert choice_message("Value error, 'zzz' is not one of 'md', 'csv'.") == "'zzz' is not one of 'md', 'csv'."
    assert choice_message("'-1' is not in the range x>=1.") == "'-1' is not in the range x>=1."  # others unchanged
