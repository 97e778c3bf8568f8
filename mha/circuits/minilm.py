"""Induction in a real model: all-MiniLM-L6-v2's 72 heads on repeated random words (lesson 05's model).

Each sequence is [CLS], a pattern of `length` distinct random words, the same pattern again, [SEP]. The words are
whole words of the model's vocabulary (no "##" pieces, no special tokens), so that each is one token. For every head
it measures, over a batch of such sequences (`mha.circuits.scores`):

  previous    the weight a query puts on the token just before it
  induction   in the second copy, the weight on the token just after the earlier occurrence of the query's word
  duplicate   in the second copy, the weight on the earlier occurrence itself (the same word)
  look-ahead  in the first copy, the weight on the token just after the *later* occurrence of the query's word:
              an encoder sees both ways, so a head can copy forward as well as back

A uniform head would put about 1 / seq on any one key: the baseline every score is read against. Then the heads
with the highest induction scores are measured again with each head of layer 0 removed in turn (lesson 05's
ablation, `head_mask`): does removing the previous-token head L0.H2 weaken them, as it would in a causal model?

Command: `python -m mha.circuits minilm --json PATH`.
"""

import torch

from ..pretrained.encoder import Encoder
from .scores import head_name, induction_scores, previous_token_scores

LENGTH = 20  # words in the pattern
BATCH = 64
SEED = 11
OFFSETS = (-2, -1, 0, 1, 2)  # keys around the other occurrence of the query's word


def word_ids(tokenizer) -> torch.Tensor:
    """The ids of the vocabulary's whole words: letters only, at least three, no "##" piece, nothing in brackets.

    Shape:
        returns (words,) int64, in increasing order.
    """
    vocab = tokenizer.get_vocab()  # token -> id
    return torch.tensor(sorted(i for t, i in vocab.items() if t.isalpha() and t.isascii() and len(t) >= 3))


def repeated_words(tokenizer, batch: int = BATCH, length: int = LENGTH, seed: int = SEED) -> torch.Tensor:
    """[CLS] w_1 .. w_n w_1 .. w_n [SEP]: a batch of random patterns of distinct whole words, each said twice.

    Shape:
        returns input_ids (batch, 2 * length + 2) int64.
    """
    g = torch.Generator().manual_seed(seed)
    words = word_ids(tokenizer)
    picks = torch.stack([torch.randperm(len(words), generator=g)[:length] for _ in range(batch)])  # (batch, length)
    pattern = words[picks]  # (batch, length)
    cls = torch.full((batch, 1), tokenizer.token_to_id("[CLS]"))
    sep = torch.full((batch, 1), tokenizer.token_to_id("[SEP]"))
    return torch.cat([cls, pattern, pattern, sep], dim=1)


def twin_profile(weights: torch.Tensor, input_ids: torch.Tensor, offsets=OFFSETS) -> torch.Tensor:
    """Each head's weight on the keys near the other occurrence ("twin") of the query's word.

    Entry [0, j] is for queries in the second copy, at the key `offsets[j]` positions from the earlier occurrence
    (+1: the induction head's key, 0: the same word); entry [1, j] for queries in the first copy, near the later
    occurrence (+1: a head that copies forward). Averaged over the queries and the batch.

    Shape:
        weights (batch, layers, heads, seq, seq), input_ids (batch, seq); returns (2, len(offsets), layers, heads).
    """
    seq = input_ids.shape[1]
    same = input_ids[:, :, None] == input_ids[:, None, :]  # (batch, q_pos, k_pos)
    out = []
    for side in (torch.ones(seq, seq, dtype=torch.bool).tril(-1), torch.ones(seq, seq, dtype=torch.bool).triu(1)):
        twin = same & side  # (batch, q_pos, k_pos): the earlier (or the later) occurrence
        has = twin.any(dim=-1)  # (batch, q_pos)
        rows = []
        for offset in offsets:
            keys = torch.zeros_like(twin)  # the key `offset` positions from the twin
            if offset >= 0:
                keys[..., offset:] = twin[..., : seq - offset]
            else:
                keys[..., :offset] = twin[..., -offset:]
            on = (weights * keys[:, None, None].to(weights.dtype)).sum(-1)  # (batch, layers, heads, q_pos)
            rows.append(on.movedim(0, -2)[..., has].mean(-1))  # (layers, heads)
        out.append(torch.stack(rows))
    return torch.stack(out)  # (2, offsets, layers, heads)


def head_scores(weights: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four scores of every head (see the module docstring).

    Shape:
        weights (batch, layers, heads, seq, seq), input_ids (batch, seq); returns a dict of (layers, heads).
    """
    profile = twin_profile(weights, input_ids)  # (2, offsets, layers, heads)
    at = {offset: j for j, offset in enumerate(OFFSETS)}
    return {
        "previous": previous_token_scores(weights),
        "induction": induction_scores(weights, input_ids),
        "duplicate": profile[0, at[0]],
        "look-ahead": profile[1, at[1]],
    }


def _best(table: torch.Tensor, n: int | None = None):
    """The (layer, head) of the highest entry of a (layers, heads) table, or of the n highest."""
    order = [divmod(int(i), table.shape[1]) for i in table.flatten().argsort(descending=True)]
    return order[0] if n is None else order[:n]


@torch.no_grad()
def analyse(model: Encoder, tokenizer, batch: int = BATCH, length: int = LENGTH, seed: int = SEED) -> dict:
    """Every head's scores on repeated random words; the best induction head and the two best duplicate-token
    heads measured again with each head of layer 0 removed in turn.

    Returns:
        plain data: "scores" {name: (layers, heads)}, "profile" (2, offsets, layers, heads) from `twin_profile`,
        "followed" [[score name, [layer, head]], ...], "ablation" [{"removed": [0, h], "scores": [each followed
        head's own score]}, ...], "example" (one sequence's tokens and the best duplicate head's weights on it).
    """
    input_ids = repeated_words(tokenizer, batch, length, seed)
    out = model(input_ids)
    scores = head_scores(out.weights, input_ids)
    layers, heads = model.config.layers, model.config.heads
    followed = [("induction", _best(scores["induction"])), *(("duplicate", h) for h in _best(scores["duplicate"], 2))]
    ablation = []
    for h in range(heads):
        mask = torch.ones(layers, heads)
        mask[0, h] = 0.0
        moved = head_scores(model(input_ids, head_mask=mask).weights, input_ids)
        ablation.append({"removed": [0, h], "scores": [moved[name][pair].item() for name, pair in followed]})
    example_layer, example_head = followed[1][1]
    return {
        "seq": input_ids.shape[1],
        "length": length,
        "batch": batch,
        "scores": {name: value.tolist() for name, value in scores.items()},
        "profile": twin_profile(out.weights, input_ids).tolist(),
        "offsets": list(OFFSETS),
        "followed": [[name, list(pair)] for name, pair in followed],
        "ablation": ablation,
        "example": {
            "tokens": [tokenizer.id_to_token(int(i)) for i in input_ids[0]],
            "weights": out.weights[0, example_layer, example_head].tolist(),
            "head": [example_layer, example_head],
        },
    }


def format_report(report: dict) -> str:
    """The best heads of each score, the best head at each offset from the twin, and the ablation table."""
    seq = report["seq"]
    lines = [
        f"{report['batch']} sequences of [CLS] + {report['length']} random words + the same words again + [SEP] "
        f"({seq} tokens); a uniform head puts 1/{seq} = {1 / seq:.3f} on any one key",
        "",
        "the three highest heads of each score (layer.head score):",
    ]
    for name, table in report["scores"].items():
        t = torch.tensor(table)
        cells = "   ".join(f"L{layer}.H{head} {t[layer, head].item():.2f}" for layer, head in _best(t, 3))
        lines.append(f"  {name:<11} {cells}")
    profile = torch.tensor(report["profile"])  # (2, offsets, layers, heads)
    lines += ["", "the head with the most weight at each key near the other occurrence (the twin) of the query's word:"]
    for side, name in enumerate(("second copy, near the earlier twin", "first copy, near the later twin")):
        cells = []
        for j, offset in enumerate(report["offsets"]):
            layer, head = _best(profile[side, j])
            cells.append(f"{offset:+d}: L{layer}.H{head} {profile[side, j, layer, head].item():.2f}")
        lines.append(f"  {name:<36} " + "   ".join(cells))
    followed = report["followed"]
    lines += ["", "each followed head's own score with one head of layer 0 removed:"]
    lines.append(f"  {'removed':<9}" + "".join(f"{head_name(*pair) + ' ' + name[:3]:>14}" for name, pair in followed))
    base = [torch.tensor(report["scores"][name])[pair[0], pair[1]].item() for name, pair in followed]
    lines.append(f"  {'none':<9}" + "".join(f"{x:>14.2f}" for x in base))
    for row in report["ablation"]:
        lines.append(f"  {head_name(*row['removed']):<9}" + "".join(f"{x:>14.2f}" for x in row["scores"]))
    return "\n".join(lines)
