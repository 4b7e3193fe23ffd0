"""EvoPrompt's meta-prompts (baselines/evoprompt.py), kept apart from its control flow: the GA and DE operator
prompts with their worked examples, and the pool of chain-of-thought triggers of `init="pool"`."""

from __future__ import annotations

from harness.core.types import ZERO_SHOT_COT

GA_PROMPT = """Make a new prompt from two parent prompts by following these steps:
1. Cross over Prompt 1 and Prompt 2: combine parts of both into one new prompt.
2. Mutate the prompt from step 1 by changing some of its words or its phrasing. Write the final prompt between <prompt> and </prompt>.

Prompt 1: Read the movie review and decide how positive it is, choosing one label from terrible, bad, okay, good and great.
Prompt 2: Give the review a sentiment rating on the five-point scale of terrible, bad, okay, good or great.

1. Crossover prompt: Read the review and give it a rating on the five-point sentiment scale of terrible, bad, okay, good or great.
2. <prompt>Study each review closely and assign it one sentiment label out of terrible, bad, okay, good and great.</prompt>

Follow the same steps for the two prompts below.
Prompt 1: {prompt1}
Prompt 2: {prompt2}

1. """

DE_PROMPT = """Make a new prompt by following these steps:
1. Find the parts where Prompt 1 and Prompt 2 differ.
2. Mutate each of those parts at random.
3. Put the mutated parts into Prompt 3, replacing parts of it selectively, to get a new prompt.
4. Cross over the prompt from step 3 with the Basic Prompt. Write the final prompt between <prompt> and </prompt>.

Prompt 1: Rewrite the sentence in simpler words so that a young child could follow it.
Prompt 2: Make the text shorter and easier to read while keeping what it means.
Prompt 3: Simplify the passage by swapping every rare word for a common one.
Basic Prompt: Rewrite the input text so that it becomes easier to understand.

1. Parts that differ:
"Rewrite the sentence" vs "Make the text shorter"
"in simpler words" vs "easier to read"
"so that a young child could follow it" vs "while keeping what it means"
2. Mutated parts:
"Rewrite the sentence" -> "Restate the passage"
"in simpler words" -> "in plain language"
"while keeping what it means" -> "keeping all of its meaning"
3. New prompt: Restate the passage in plain language by swapping every rare word for a common one, keeping all of its meaning.
4. Final prompt: <prompt>Restate the input text in plain language so that it is easier to understand, keeping all its meaning.</prompt>

Follow the same steps for the prompts below.
Prompt 1: {prompt1}
Prompt 2: {prompt2}
Prompt 3: {prompt3}
Basic Prompt: {prompt0}

1. """

# Generic chain-of-thought triggers for init="pool" (the role of the reference's BBH/prompts.txt).
TRIGGER_POOL = (
    ZERO_SHOT_COT, "Let's work through this one step at a time.",
    "Let's work this out carefully to be sure we get the right answer.",
    "Let's think it through like a detective, one clue at a time.", "First,",
    "Let's break the problem into smaller parts and solve each one.",
    "Before answering, let's reason about the question step by step.",
    "Let's solve this carefully and check the answer at the end.", "Let's reason logically, one fact at a time.",
    "Let's read the question closely and think it over.", "Let's list what we know, then work towards the answer.",
    "Let's be careful and precise in every step.", "Let's write out the reasoning before giving the answer.",
    "Let's think about this the way a math teacher would.", "Let's calculate step by step and double-check each result.",
    "Let's go over the problem slowly.", "Let's start from the facts and reason our way to the answer.",
    "Let's consider each option in turn.", "To begin,", "Let's work out the numbers one at a time.",
)
