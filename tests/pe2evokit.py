"""What the PE2 and EvoPrompt tests share: the parity task, a run of one method with scripted models, the texts
the optimizer LLM was sent, and reply scripts (varied usable proposals; a fixed sequence)."""

from __future__ import annotations

import zlib

from fakeworld import make_ctx, messy_optimizer, parity_task, scripted_models

from baselines import evoprompt, pe2
from harness.core.types import ZERO_SHOT_COT

TASK = parity_task()
SPLITS = TASK.load()
SEED_PROMPT = ZERO_SHOT_COT
FACTORIES = {"pe2": pe2.make, "evoprompt-ga": evoprompt.make_ga, "evoprompt-de": evoprompt.make_de}
STAGE2 = "Your answer to stage 1 was"  # only PE2's stage-2 request holds this
VARIATION = "Write a variation"  # APE's paraphrase request (EvoPrompt's initial population)


def run(method, preset="smoke", optimizer=messy_optimizer, quality=None, seed=0, steps_path=None, task_model=None,
        budget=None, **over):
    tm, om = scripted_models(optimizer, **({"quality": quality} if quality else {}))
    ctx = make_ctx(task_model or tm, om, seed=seed, steps_path=steps_path, budget=budget)
    result = FACTORIES[method](preset, **over).optimize(TASK, SPLITS.train, SPLITS.dev, ctx)
    return result, ctx, om


def user_texts(gen) -> list[str]:
    return [p.removeprefix("USER: ").split("\nASSISTANT: ")[0] for prompts, _ in gen.calls for p in prompts]


def lively(rendered, params, index):
    """Varied usable proposals for every method (tagged for PE2, EvoPrompt and APE's paraphrase), some empty."""
    key = zlib.crc32(f"{rendered}|{params.seed}|{index}".encode()) % 1000
    if key % 3 == 0:
        return ""
    text = f"Think about the {['step', 'check', 'careful', 'digit'][key % 4]}s and answer, version {key}."
    return f"Analysis {key}." if "Stage 1:" in rendered and STAGE2 not in rendered else f"<prompt>{text}</prompt> <INS>{text}</INS>"


def cycle(replies):
    """A reply function that hands out `replies` in order (then repeats the last one)."""
    it = iter(replies)
    last = [replies[-1]]

    def next_reply():
        last[0] = next(it, last[0])
        return last[0]

    return next_reply
