"""Repeated random tokens: a task that only heads working together can solve.

Each sequence is a pattern of `period` distinct random tokens, repeated until the sequence is full, with a period
drawn afresh for every sequence:

    period 6:   17  3 29  8 21 12 | 17  3 29  8 21 12 | 17  3 29  8 ...
    period 9:    5 30  1 22 14  9 27 11  0 |  5 30  1 22 14  9 27 11  0 | 5 ...

The model predicts the next token at every position, as a language model does. Once the current token has been
seen before, the next one is known: it is the token that followed the earlier occurrence. Before that (the first
period) nothing predicts it. Which position to copy from depends on the period, and the period on the sequence, so
no fixed offset and no position answers it: the model must find the earlier occurrence of the current token and
read the token just *after* it.

`predictable(tokens)` marks the positions whose next token is determined (the current token occurred before, and
there is a next token); the lesson reports accuracy over those. `chance_levels` gives three guesses that do not
find the earlier occurrence, to read the accuracies against.
"""

from dataclasses import dataclass

import torch

from .._validate import check_rank
from ..toy.tasks import IGNORE_INDEX


@dataclass(frozen=True)
class RepeatedTokens:
    """Sequences that repeat a pattern of distinct random tokens, a period drawn per sequence; next-token targets.

    The interface of `mha.toy.train.train`: one relationship, "next token".

    Args:
        vocab: distinct tokens (at least the longest period).
        seq: tokens per sequence (more than the longest period, so that every sequence repeats).
        periods: (shortest, longest) period, both included; each sequence draws one uniformly.
    """

    vocab: int = 32
    seq: int = 32
    periods: tuple[int, int] = (6, 16)

    relations = 1
    names = ["next token"]

    def __post_init__(self):
        periods = tuple(self.periods)
        object.__setattr__(self, "periods", periods)
        if len(periods) != 2 or not all(isinstance(p, int) for p in periods) or not 2 <= periods[0] <= periods[1]:
            raise ValueError(f"periods must be (shortest, longest) with 2 <= shortest <= longest, got {periods!r}")
        if not isinstance(self.vocab, int) or self.vocab < periods[1]:
            raise ValueError(
                f"vocab must be at least the longest period ({periods[1]}): a pattern holds distinct tokens; "
                f"got vocab={self.vocab!r}"
            )
        if not isinstance(self.seq, int) or self.seq <= periods[1]:
            raise ValueError(
                f"seq must exceed the longest period ({periods[1]}) so that every sequence repeats, "
                f"got seq={self.seq!r}"
            )

    def sample_periods(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of sequences and the period of each.

        Shape:
            returns tokens (batch, seq) int64 and periods (batch,) int64.
        """
        low, high = self.periods
        periods = torch.randint(low, high + 1, (batch,), generator=generator)  # (batch,)
        patterns = torch.rand(batch, self.vocab, generator=generator).argsort(dim=-1)  # (batch, vocab): shuffled ids
        where = torch.arange(self.seq)[None, :] % periods[:, None]  # (batch, seq): index into the pattern
        return patterns.gather(1, where), periods  # the first `period` ids of each shuffle, over and over

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of sequences and the next token at every position; the interface of `mha.toy.train.train`.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, 1), int64; the last position has no next token
            (IGNORE_INDEX).
        """
        tokens, _ = self.sample_periods(batch, generator)
        return tokens, next_tokens(tokens)


def next_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """The target of every position: the token after it; IGNORE_INDEX at the last position.

    Shape:
        tokens (batch, seq); returns (batch, seq, 1) int64.
    """
    check_rank("tokens", tokens, (2,), "(batch, seq)")
    targets = torch.full((*tokens.shape, 1), IGNORE_INDEX, dtype=torch.int64)
    targets[:, :-1, 0] = tokens[:, 1:]
    return targets


def earlier_occurrence(tokens: torch.Tensor) -> torch.Tensor:
    """Where each position's token occurred before: True at (q, k) when k < q and tokens[k] == tokens[q].

    Shape:
        tokens (..., seq); returns (..., seq, seq) bool, indexed (q_pos, k_pos).
    """
    seq = tokens.shape[-1]
    same = tokens[..., :, None] == tokens[..., None, :]  # (..., q_pos, k_pos)
    before = torch.ones(seq, seq, dtype=torch.bool, device=tokens.device).tril(-1)  # k < q
    return same & before


def predictable(tokens: torch.Tensor) -> torch.Tensor:
    """The positions whose next token is determined: the current token occurred before, and a next token exists.

    In a repeated sequence of period p these are the positions p .. seq - 2.

    Shape:
        tokens (batch, seq); returns (batch, seq) bool.
    """
    check_rank("tokens", tokens, (2,), "(batch, seq)")
    seen = earlier_occurrence(tokens).any(dim=-1)  # (batch, seq)
    seen[:, -1] = False  # no next token to predict
    return seen


def chance_levels(task: RepeatedTokens) -> dict[str, float]:
    """Accuracy on the predictable positions of three guesses that do not find the earlier occurrence.

    - uniform: any token, 1 / vocab.
    - current token: the best guess from the current token (and its position) alone: any other token,
      1 / (vocab - 1), since a pattern never holds a token twice.
    - a seen token: a guess among the other tokens seen so far in the sequence, 1 / (period - 1), averaged over
      the predictable positions of every period (the most that looking back without order gives).

    Returns:
        {"uniform": float, "current token": float, "a seen token": float}.
    """
    low, high = task.periods
    counts = {p: task.seq - 1 - p for p in range(low, high + 1)}  # predictable positions of a sequence of period p
    seen = sum(n / (p - 1) for p, n in counts.items()) / sum(counts.values())
    return {"uniform": 1 / task.vocab, "current token": 1 / (task.vocab - 1), "a seen token": seen}
