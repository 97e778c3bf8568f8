"""Synthetic sequence tasks whose answers live at known positions, generated on the fly from a seed.

A task answers a fixed set of questions ("relationships") at every position of a random sequence, one target per
relationship, so that a model needs one readout per relationship and the experiments can score each one apart.

Positions where a relationship has no answer (e.g. "the token 3 back" at position 1) get the target
`IGNORE_INDEX` (-100): `torch.nn.functional.cross_entropy` skips it by default, and `mha.toy.train` leaves it out of
every accuracy.
"""

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # target of a position where a relationship has no answer; cross_entropy's default ignore_index


@dataclass(frozen=True)
class OffsetCopyTask:
    """At every position i, name the tokens at positions i - offset, one relationship per offset.

    Tokens are drawn uniformly and independently, so nothing about the token at i - offset can be guessed from
    anything but that position itself: a model must look there.

    Args:
        offsets: how far back each relationship looks; one target per offset, in this order.
        vocab: number of distinct tokens.
        seq: tokens per sequence.
    """

    offsets: tuple[int, ...] = (1, 2, 3)
    vocab: int = 64
    seq: int = 32

    def __post_init__(self):
        offsets = tuple(self.offsets)
        object.__setattr__(self, "offsets", offsets)  # accept a list, store a tuple (hashable, printable)
        if not offsets or any(not isinstance(o, int) or o < 1 for o in offsets) or len(set(offsets)) != len(offsets):
            raise ValueError(f"offsets must be distinct positive integers, got {offsets!r}")
        if self.vocab < 2:
            raise ValueError(f"vocab must be at least 2, got {self.vocab!r}")
        if self.seq <= max(offsets):
            raise ValueError(
                f"seq must exceed the largest offset so that some position has every answer, "
                f"got seq={self.seq!r} and offsets={offsets!r}"
            )

    @property
    def relations(self) -> int:
        """Number of relationships, i.e. of targets per position."""
        return len(self.offsets)

    @property
    def chance(self) -> float:
        """The accuracy of a guess that ignores the sequence: tokens are drawn uniformly, so any fixed answer is
        right 1 time in vocab."""
        return 1 / self.vocab

    @property
    def names(self) -> list[str]:
        """A short name per relationship, e.g. "i-1"."""
        return [f"i-{o}" for o in self.offsets]

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of random sequences and, for each relationship, the token it must name at every position.

        Args:
            batch: number of sequences.
            generator: the source of randomness; the same generator state gives the same batch.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, relations), both int64; targets[b, i, r] is
            tokens[b, i - offsets[r]], or IGNORE_INDEX where i < offsets[r].
        """
        tokens = torch.randint(self.vocab, (batch, self.seq), generator=generator)  # (batch, seq)
        targets = torch.full((batch, self.seq, self.relations), IGNORE_INDEX)  # (batch, seq, relations)
        for r, offset in enumerate(self.offsets):
            targets[:, offset:, r] = tokens[:, :-offset]  # position i answers with the token at i - offset
        return tokens, targets
