"""A ring all-reduce simulated in one process, message by message: what the collective does, step by step.

`w` ranks each hold a vector of n numbers and must all end with their sum. Rank r sends only to rank (r + 1) % w.
Every vector is cut into w pieces, and the ring takes 2(w − 1) steps; in each step every rank sends one piece:

    reduce-scatter, step s = 0 .. w − 2   rank r sends its piece (r − s) % w; the next rank adds it to its own piece
                                          of that index. Afterwards rank r holds the complete sum of piece (r + 1) % w.
    all-gather, step s = 0 .. w − 2       rank r sends its piece (r + 1 − s) % w, complete; the next rank replaces its
                                          own piece of that index with it.

So each rank sends 2(w − 1) pieces of n/w numbers: 2(w − 1)/w · n numbers (`mha.parallel.cost.allreduce_bytes`).

    wire = Wire(world)                 carries and records every message: step, sender, receiver, piece, numbers
    ring_all_reduce(tensors, wire)     every rank's vector summed, through the wire only
    wire.steps()                       the messages step by step, to check or to draw (`plots.show_ring`)

Lesson 08's exercise asks for `ring_all_reduce`; its check hands the learner's function a `Wire` and follows the
messages.
"""

import torch


class Wire:
    """The links of a ring of `world` ranks in one process: `send(sender, receiver, index, piece)` delivers a copy.

    Every message is recorded in order (`messages`), and the numbers each rank sent are counted (`sent`).

    Args:
        world: the number of ranks.
    """

    def __init__(self, world: int):
        if not isinstance(world, int) or isinstance(world, bool) or world < 1:
            raise ValueError(f"world must be a positive integer, got {world!r}")
        self.world = world
        self.messages: list[tuple[int, int, int, torch.Tensor]] = []
        self.sent = [0] * world

    def __call__(self, sender: int, receiver: int, index: int, piece: torch.Tensor) -> torch.Tensor:
        """Send piece number `index` of rank `sender`'s vector to rank `receiver`; returns the copy it receives."""
        for name, value in (("sender", sender), ("receiver", receiver), ("index", index)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < self.world:
                raise ValueError(
                    f"send(sender, receiver, index, piece): {name} must be an integer from 0 to world − 1 = "
                    f"{self.world - 1}, got {value!r}"
                )
        if not isinstance(piece, torch.Tensor) or piece.ndim != 1:
            shape = f"a tensor of shape {tuple(piece.shape)}" if isinstance(piece, torch.Tensor) else type(piece)
            raise ValueError(
                f"send(sender, receiver, index, piece): piece must be one piece of a vector, a 1-d tensor; got {shape}"
            )
        copy = piece.detach().clone()  # what travels: later changes to either side do not reach the other
        self.messages.append((sender, receiver, index, copy))
        self.sent[sender] += copy.numel()
        return copy.clone()

    def state(self) -> dict:
        """The record of every message, as plain data: {"messages": [[sender, receiver, index, piece], ...]}."""
        return {"messages": [[s, r, i, p] for s, r, i, p in self.messages]}

    def steps(self) -> list[list[tuple[int, int, int, torch.Tensor]]]:
        """The messages cut into steps of `world` messages each, in the order they were sent."""
        w = self.world
        return [self.messages[i : i + w] for i in range(0, len(self.messages), w)]


def ring_all_reduce(tensors: list[torch.Tensor], send: Wire) -> list[torch.Tensor]:
    """Every rank's vector summed over ranks, computed the way a ring all-reduce does, each message through `send`.

    Args:
        tensors: rank r's vector at tensors[r], all of n numbers, n a multiple of len(tensors). Not changed.
        send: a `Wire` of len(tensors) ranks (or any function send(sender, receiver, index, piece) returning what
            the receiver gets).

    Returns:
        the list of every rank's vector after the all-reduce, each the sum of all.
    """
    w = len(tensors)
    if w < 1 or tensors[0].numel() % w:
        raise ValueError(f"each vector must cut into {w} equal pieces; got {tensors[0].numel() if w else 0} numbers")
    pieces = [[p.clone() for p in t.chunk(w)] for t in tensors]  # pieces[rank][index]; chunk gives views: clone
    for step in range(w - 1):  # reduce-scatter: add up
        outgoing = [(r, (r - step) % w) for r in range(w)]
        received = [(r, i, send(r, (r + 1) % w, i, pieces[r][i])) for r, i in outgoing]  # all send, then all add
        for r, i, piece in received:
            pieces[(r + 1) % w][i] = pieces[(r + 1) % w][i] + piece
    for step in range(w - 1):  # all-gather: hand out the complete sums
        outgoing = [(r, (r + 1 - step) % w) for r in range(w)]
        received = [(r, i, send(r, (r + 1) % w, i, pieces[r][i])) for r, i in outgoing]
        for r, i, piece in received:
            pieces[(r + 1) % w][i] = piece
    return [torch.cat(p) for p in pieces]
