"""``tinytext``: character-level next-token windows of sentences drawn from a small hand-written grammar.

The text is generated, not shipped or downloaded: each sentence is a noun
phrase and a verb phrase, e.g. ``"the quick fox follows a red boat."`` or
``"every child sleeps near the old house."``, with every choice drawn from a
``random.Random(data_seed)``. The same seed gives the same text on every
machine. Its grammar leaves plenty to learn (spelling, which word may follow
which) in a few thousand windows.

Tokens are the characters of :data:`VOCABULARY` (space, full stop and the
26 lower-case letters; the token id is the index). A window is ``context``
consecutive characters; its targets are the same characters one position
later, so position ``t`` of a causal model predicts token ``t + 1``.
Windows do not overlap, and the test windows come from text after the
training windows'.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np
import torch

from ..._validate import non_negative_int, positive_int

__all__ = ["VOCABULARY", "TokenWindows", "grammar_text", "token_windows"]

#: The characters of ``tinytext``; a character's token id is its index.
VOCABULARY = " .abcdefghijklmnopqrstuvwxyz"

_DETERMINERS = ("the", "a", "every", "some", "one")
_ADJECTIVES = ("small", "red", "quiet", "old", "bright", "green", "lazy", "quick", "tall", "happy")
_NOUNS = ("cat", "dog", "bird", "fox", "child", "farmer", "river", "garden", "house", "tree", "stone", "boat")
_TRANSITIVE = ("sees", "finds", "follows", "likes", "paints", "carries", "watches")
_INTRANSITIVE = ("sleeps", "runs", "waits", "sings", "jumps")
_ADVERBS = ("slowly", "quietly", "today", "again", "often")
_PREPOSITIONS = ("near", "under", "behind", "over", "beside")


def _noun_phrase(rng: random.Random) -> str:
    """A determiner, none to two adjectives and a noun."""
    adjectives = rng.sample(_ADJECTIVES, rng.choice((0, 0, 1, 1, 2)))
    return " ".join((rng.choice(_DETERMINERS), *adjectives, rng.choice(_NOUNS)))


def _sentence(rng: random.Random) -> str:
    """``noun phrase`` + ``verb phrase`` + ``"."``, the verb phrase one of three forms."""
    form = rng.randrange(3)
    if form == 0:
        verb_phrase = f"{rng.choice(_TRANSITIVE)} {_noun_phrase(rng)}"
    elif form == 1:
        verb_phrase = f"{rng.choice(_INTRANSITIVE)} {rng.choice(_ADVERBS)}"
    else:
        verb_phrase = f"{rng.choice(_INTRANSITIVE)} {rng.choice(_PREPOSITIONS)} {_noun_phrase(rng)}"
    return f"{_noun_phrase(rng)} {verb_phrase}."


def grammar_text(length: int, data_seed: int = 0) -> str:
    """The first ``length`` characters of the sentences drawn with ``data_seed``, separated by spaces."""
    length = positive_int("length", length)
    rng = random.Random(non_negative_int("data_seed", data_seed))
    sentences: list[str] = []
    total = 0
    while total < length:
        sentences.append(_sentence(rng))
        total += len(sentences[-1]) + 1
    return " ".join(sentences)[:length]


class TokenWindows(NamedTuple):
    """Next-token windows of both splits: int64 ``inputs`` and ``targets`` of shape ``(N, context)`` each."""

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor


def token_windows(num_samples: int = 2000, num_test: int = 400, context: int = 32, data_seed: int = 0) -> TokenWindows:
    """``num_samples`` training and ``num_test`` test windows of ``context`` tokens of :func:`grammar_text`.

    ``targets[n, t] == inputs[n, t + 1]`` for ``t < context - 1``, and
    ``targets[n, -1]`` is the character after the window.
    """
    num_samples = positive_int("num_samples", num_samples)
    num_test = positive_int("num_test", num_test)
    context = positive_int("context", context)
    span = num_samples * context + 1  # the training windows' characters and the one after them
    text = grammar_text(span + num_test * context, data_seed)
    lookup = np.zeros(128, dtype=np.int64)
    lookup[np.frombuffer(VOCABULARY.encode("ascii"), dtype=np.uint8)] = np.arange(len(VOCABULARY))
    tokens = torch.from_numpy(lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)])

    def windows(stream: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = count * context
        return stream[:size].reshape(count, context), stream[1 : size + 1].reshape(count, context)

    return TokenWindows(*windows(tokens[:span], num_samples), *windows(tokens[span - 1 :], num_test))
