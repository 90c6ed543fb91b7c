"""Captions and question-answer turns about scenes, with one fixed phrasing per answer.

Questions come in a few paraphrases; answers never do, so exact-match accuracy measures whether the model saw the
image right, not whether it guessed the wording. `QUESTION_KINDS` are the ones the held-out set asks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mmv.synth.scenes import Scene

NUMBERS = ("zero", "one", "two", "three", "four", "five")
QUESTION_KINDS = ("colour", "shape", "count")  # asked in eval.parquet; SFT also asks size and side

CAPTION_PROMPTS = (
    "Describe the image.",
    "What is in this picture?",
    "Describe this picture briefly.",
    "What do you see?",
)
QUESTIONS: dict[str, tuple[str, ...]] = {
    "colour": ("What colour are the shapes?", "Which colour do the shapes have?", "What colour is shown?"),
    "shape": ("What shape are the objects?", "Which shape is shown?", "What kind of shape do you see?"),
    "count": ("How many shapes are there?", "How many objects can you count?", "Count the shapes."),
    "size": ("Are the shapes small or large?", "How big are the shapes?"),
    "side": ("Is the shape on the left or the right?", "On which side is the shape?"),
}
# Text-only rows (no image): general knowledge in the same small vocabulary.
TEXT_ONLY: tuple[tuple[str, str], ...] = (
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("How many sides does a square have?", "A square has four sides."),
    ("How many corners does a circle have?", "A circle has zero corners."),
    ("What colour do you get from blue and yellow?", "You get green."),
    ("What colour do you get from red and yellow?", "You get orange."),
    ("What colour do you get from red and blue?", "You get purple."),
    ("What comes after two?", "Three comes after two."),
    ("What comes after three?", "Four comes after three."),
    ("Hello!", "Hello! Show me a picture and ask about its shapes."),
)


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    kind: str


def plural(shape: str, count: int) -> str:
    return shape if count == 1 else f"{shape}s"


def caption(scene: Scene) -> str:
    """'Three large red circles on a light background.'"""
    n = scene.count
    return f"{NUMBERS[n].capitalize()} {scene.size} {scene.colour} {plural(scene.shape, n)}."


def answer(scene: Scene, kind: str) -> str:
    """Each answer depends on its own property only (no 'it is' / 'they are' giving the count away)."""
    n = scene.count
    if kind == "colour":
        return f"The colour is {scene.colour}."
    if kind == "shape":
        return f"The shape is a {scene.shape}."
    if kind == "count":
        return f"There {'is' if n == 1 else 'are'} {NUMBERS[n]} {plural('shape', n)}."
    if kind == "size":
        return f"The size is {scene.size}."
    if kind == "side":
        return f"It is on the {scene.side}."
    raise ValueError(f"unknown question kind {kind!r}")


def ask(scene: Scene, kind: str, rng: random.Random) -> Turn:
    return Turn(rng.choice(QUESTIONS[kind]), answer(scene, kind), kind)


def kinds_for(scene: Scene) -> tuple[str, ...]:
    """Every question that has a well-defined answer for this scene."""
    return (*QUESTION_KINDS, "size", *(("side",) if scene.side else ()))


def compare_two(first: Scene, second: Scene, rng: random.Random) -> Turn:
    """A question about two images at once."""
    if rng.random() < 0.5:
        if first.count == second.count:
            reply = f"Both have {NUMBERS[first.count]}."
        else:
            reply = f"The {'first' if first.count > second.count else 'second'} image has more."
        return Turn("Which image has more shapes?", reply, "compare-count")
    same = first.colour == second.colour
    reply = f"Yes, both are {first.colour}." if same else f"No, {first.colour} and {second.colour}."
    return Turn("Do both images have the same colour?", reply, "compare-colour")


def describe_two(first: Scene, second: Scene) -> str:
    return f"First: {caption(first)[:-1].lower()}. Second: {caption(second)[:-1].lower()}."
