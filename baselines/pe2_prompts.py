"""PE2's meta-prompts (baselines/pe2.py), kept apart from its control flow: the task description, the stage-1
material and form, the stage-2 request, and the pieces they are built from. The released code's wording is
followed; pe2.py's docstring lists where the harness departs from it."""

TASK_DESCRIPTION = """A prompt is a piece of text joined to an input: a language model reads the two together, then writes its output.

We will improve a prompt together, in two stages.
Stage 1: I give you the current prompt, the full template the model sees, and {n} example(s).
Each example shows its input, the model's reasoning, the model's final answer and the correct label.
You judge whether the prompt describes the task these examples show, and you suggest how to change it.
Stage 2: you use your analysis to write an improved prompt. I may add further constraints."""

STAGE1_PROMPT = """{description}

Here is the material for stage 1.

Current prompt:
"{prompt}"

Full template (<input> marks where each input goes):
\"\"\"
{template}
\"\"\"
The prompt may come before or after the input, and the template may contain other fixed text.

Examples:

{examples}

For some of these examples the model's answer differs from the label: the prompt may be misleading or not precise enough.
The labels are always correct; the prompt may be wrong. Go through the examples one by one and fill in this form for each:

Example <number>
Input: <the input>
Output: <the model's final answer>
Label: <the correct label>
Is the output correct? <yes or no, and why>
Did the output follow the prompt? <yes or no, and why>
Does the prompt describe the task that the input and label show? <yes or no, and why>
Does the prompt have to change for the model to give the label? <yes or no, and why>
If so, what should change? <a detailed analysis and concrete edits>"""

STAGE2_PROMPT = """{stage1}

Your answer to stage 1 was:
{analysis}

Now stage 2. Look back at your analysis and improve the prompt.

Current prompt:
"{prompt}"

Rules for the new prompt:
{rules}

Reply with the new prompt only, between <PROMPT> and </PROMPT>, and no other text."""

EXAMPLE_BLOCK = """Example {id}
Input: {input}
Model's reasoning: {reasoning}
Model's final answer: {prediction}
Label: {gold}"""

RULE_STEP_SIZE = "- Change at most {n} words of the current prompt."
RULE_LENGTH = "- Use fewer than {n} words."
RULE_FIX = "- With the new prompt, the model must no longer make the mistakes in the examples above."
NO_EXAMPLES = "(no examples this time)"
NO_ANALYSIS = "(no analysis)"
INPUT_SLOT = "<input>"
TEMPLATE_ANSWER = "<the model's reasoning, then its final answer>"
