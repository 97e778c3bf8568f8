"""What MiniLM's previous-token head does when the learned position table is moved (lesson 09).

all-MiniLM-L6-v2 adds a learned vector per position (rows 0..511 of `embeddings.position`) to each token's
embedding. Lesson 05 found a clean previous-token head, L0H2. Here the table is changed, without touching the
loaded model outside a `with` block (`position_table`):

  shifted    the token at position p gets row p + shift (as if the sentence sat further along a longer text);
  shuffled   the rows used by the sentence are permuted: the token at position p gets row perm[p].

If the head finds "the token before" through the position vectors, then under a shuffle it should look not at
the token before but at the token whose row is the one before its own: the key j with perm[j] = perm[i] - 1.
`moved_table_report` measures both, and how far the sentence vector moves.

Command: `python -m mha.pretrained positions --json PATH`.
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import fmt_shape
from .encoder import Encoder, encode

HEAD = (0, 2)  # (layer, head): the previous-token head of lesson 05
SHIFTS = (0, 1, 2, 5, 10, 50, 100, 200, 300, 400, 480)
SHUFFLE_SEEDS = (0, 1, 2)


@contextmanager
def position_table(model: Encoder, table: torch.Tensor):
    """Run `model` with `table` as its position table inside the block; its own table is back afterwards.

    The model's parameter is swapped, not overwritten: the original tensor is never written to, and it is put
    back even when the block raises.

    Args:
        model: the encoder (from `mha.pretrained.load`).
        table: the position vectors to use.

    Shape:
        table (max_positions, d_model), the shape of the model's own table.
    """
    embedding = model.embeddings.position
    original = embedding.weight
    if table.shape != original.shape:
        raise ValueError(
            f"table has shape {fmt_shape(table.shape)}: expected (max_positions, d_model) = {fmt_shape(original.shape)}"
        )
    embedding.weight = nn.Parameter(table.to(original), requires_grad=False)
    try:
        yield model
    finally:
        embedding.weight = original


def shifted(table: torch.Tensor, shift: int) -> torch.Tensor:
    """The table moved up by `shift` rows: position p gets row p + shift (rows past the end wrap around to 0).

    Shape:
        table (max_positions, d_model); returns the same shape. Positions below max_positions - shift never meet
        a wrapped row.
    """
    if not 0 <= shift < table.shape[0]:
        raise ValueError(f"shift must lie in 0..{table.shape[0] - 1}, got {shift}")
    return torch.roll(table, -shift, dims=0)


def shuffled(table: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The first len(perm) rows permuted: position p gets row perm[p]; the other rows stay where they are.

    Shape:
        table (max_positions, d_model), perm (n,) a permutation of 0..n-1; returns (max_positions, d_model).
    """
    n = perm.shape[0]
    if not torch.equal(perm.sort().values, torch.arange(n)):
        raise ValueError(f"perm must be a permutation of 0..{n - 1}, got {perm.tolist()}")
    moved = table.clone()
    moved[:n] = table[perm]
    return moved


def previous_score(weights: torch.Tensor) -> float:
    """Mean weight each query (but the first) puts on the key just before it.

    Shape:
        weights (seq, seq) of one head.
    """
    return weights.diagonal(offset=-1).mean().item()  # entries (i, i - 1)


def follows_table_score(weights: torch.Tensor, perm: torch.Tensor) -> float:
    """Mean weight each query i puts on the key j whose row is the one before its own (perm[j] = perm[i] - 1).

    Queries whose row is 0 have no such key and are left out.

    Shape:
        weights (seq, seq), perm (seq,); returns a float.
    """
    slot_of_row = perm.argsort()  # slot_of_row[r] = the position that got row r
    queries = [i for i in range(len(perm)) if perm[i] > 0]
    return sum(weights[i, slot_of_row[perm[i] - 1]].item() for i in queries) / len(queries)


@torch.no_grad()
def moved_table_report(
    model: Encoder,
    tokenizer,
    sentences: list[str],
    shifts=SHIFTS,
    shuffle_seeds=SHUFFLE_SEEDS,
    head: tuple[int, int] = HEAD,
) -> dict:
    """The head's previous-token score, and how far the sentence vector moves, with the table shifted or shuffled.

    Each sentence is run alone (no padding), so that a shuffle permutes exactly the rows it uses.

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        sentences: the sentences to average over.
        shifts: the shifts to try (0 is the model as trained).
        shuffle_seeds: one random permutation per sentence and seed.
        head: (layer, head) to watch.

    Returns:
        {"head": [layer, head], "sentences": n, "shift": [{"shift", "previous", "cosine"}, ...],
        "shuffle": {"previous", "follows_table", "cosine"}}: scores averaged over sentences (and seeds); cosine is
        between the sentence vector with the moved table and with the model's own.
    """
    layer, h = head
    table = model.embeddings.position.weight
    shift_rows = {s: {"previous": 0.0, "cosine": 0.0} for s in shifts}
    shuffle = {"previous": 0.0, "follows_table": 0.0, "cosine": 0.0}
    for sentence in sentences:
        plain = encode(model, tokenizer, [sentence])
        for s in shifts:
            with position_table(model, shifted(table, s)):
                moved = encode(model, tokenizer, [sentence])
            shift_rows[s]["previous"] += previous_score(moved.weights[0, layer, h]) / len(sentences)
            shift_rows[s]["cosine"] += F.cosine_similarity(moved.embeddings, plain.embeddings).item() / len(sentences)
        n = plain.weights.shape[-1]
        for seed in shuffle_seeds:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            with position_table(model, shuffled(table, perm)):
                moved = encode(model, tokenizer, [sentence])
            share = 1 / (len(sentences) * len(shuffle_seeds))
            shuffle["previous"] += previous_score(moved.weights[0, layer, h]) * share
            shuffle["follows_table"] += follows_table_score(moved.weights[0, layer, h], perm) * share
            shuffle["cosine"] += F.cosine_similarity(moved.embeddings, plain.embeddings).item() * share
    return {
        "head": [layer, h],
        "sentences": len(sentences),
        "shift": [{"shift": s, **row} for s, row in shift_rows.items()],
        "shuffle": shuffle,
    }


def format_report(report: dict) -> str:
    """The report as two small tables (from `moved_table_report`, or read back from the command's JSON)."""
    layer, h = report["head"]
    sentences = report["sentences"]  # a count, or the sentences themselves (as the command's JSON records them)
    count = len(sentences) if isinstance(sentences, list) else sentences
    lines = [
        f"L{layer}H{h}, averaged over {count} sentences",
        f"{'table':<22}{'weight on previous token':>26}{'cosine to own sentence vector':>32}",
    ]
    for row in report["shift"]:
        name = "as trained" if row["shift"] == 0 else f"shifted by {row['shift']}"
        lines.append(f"{name:<22}{row['previous']:>26.2f}{row['cosine']:>32.2f}")
    s = report["shuffle"]
    lines.append(f"{'shuffled':<22}{s['previous']:>26.2f}{s['cosine']:>32.2f}")
    lines.append(f"shuffled: weight on the key whose row is the one before the query's own: {s['follows_table']:.2f}")
    return "\n".join(lines)
