"""What the 72 heads of the pretrained encoder do: head types over sentences, the pronoun heads, and ablation.

- `head_types`: the scores of `mha.pretrained.head_scores` (previous token, next token, [CLS], [SEP], same word, ...),
  averaged over a set of sentences, one number per layer and head.
- `sink_shares`: how much of a head's weight goes to [CLS], against how much of what the head adds comes from it.
- `pronoun_links`: for sentences with a pronoun and two candidate nouns, how much weight "it" puts on the noun it
  refers to (the antecedent) and on the other one (the distractor), per head.
- `ablate_heads`: remove one head at a time (its output multiplied by 0) and measure how far the sentence
  embeddings move, and whether the similarity ranking of a set of sentence pairs changes.
- `prune`: remove many heads at once, least or most important first.

Command: `python -m mha.pretrained heads --json PATH` prints the tables the lesson prints and writes them to PATH.
"""

from typing import NamedTuple

import torch

from ..heads import split_heads
from .encoder import COURSE_SENTENCE, Encoder, encode, sentence_embeddings, tokenize
from .head_scores import head_type_scores, mean_over_sentences

# Sentences for the head-type scores: everyday syntax, several with a repeated word (for "same word").
TYPE_SENTENCES = [
    COURSE_SENTENCE,
    "The cat chased the other cat around the garden.",
    "She said that the plan was good, and he said that the plan was bad.",
    "My brother and my sister visited my parents last week.",
    "The train was late, so the people on the train were angry.",
    "We bought bread, milk and eggs, and then we went home.",
    "The old man walked slowly to the station in the rain.",
    "If it rains tomorrow, the game will be moved to Sunday.",
    "A dog barked at another dog in the park.",
    "Music makes people happy when they are sad.",
]

# (sentence, pronoun, antecedent, distractor): the pronoun refers to the antecedent, not to the distractor.
# In the first six the antecedent is the object just before the comma; in the last four it is the subject.
PRONOUN_SENTENCES = [
    (COURSE_SENTENCE, "it", "iphone", "apple"),
    ("Maria bought a new laptop, and it works well.", "it", "laptop", "maria"),
    ("Tom found an old coin, but it was fake.", "it", "coin", "tom"),
    ("The company launched a new app, but it crashes often.", "it", "app", "company"),
    ("Anna painted a small picture, and it sold quickly.", "it", "picture", "anna"),
    ("The chef cooked a big soup, but it was cold.", "it", "soup", "chef"),
    ("The printer made a loud noise because it was broken.", "it", "printer", "noise"),
    ("The phone fell into the water, but it still works.", "it", "phone", "water"),
    ("The dog dropped the ball because it was tired.", "it", "dog", "ball"),
    ("The car hit the wall, but it was not damaged.", "it", "car", "wall"),
]

# Sentence pairs from close paraphrases to unrelated, their similarities well apart (0.87 down to 0.02), so that
# their ranking only changes when a similarity really moves. The fifth pair is the other apple.
PAIRS = [
    (COURSE_SENTENCE, "The new iPhone from Apple costs a lot of money."),
    (COURSE_SENTENCE, "Apple's latest phone is pricey."),
    ("The cat sat on the mat.", "A cat is sleeping on a rug."),
    ("Python is a programming language.", "Java is used to write software."),
    (COURSE_SENTENCE, "I ate an apple for lunch."),
    ("A man is playing a guitar.", "A man is eating pasta."),
    ("The cat sat on the mat.", "The bank raised its interest rates."),
]


def head_types(model: Encoder, tokenizer, sentences=TYPE_SENTENCES) -> dict[str, torch.Tensor]:
    """Each head-type score of `mha.pretrained.head_scores`, averaged over sentences.

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        sentences: the sentences to average over.

    Shape:
        returns a dict of (layers, heads) tensors.
    """
    enc = encode(model, tokenizer, list(sentences))
    per_sentence = []
    for i, tokens in enumerate(enc.tokens):
        n = len(tokens)
        per_sentence.append(head_type_scores(enc.weights[i, :, :, :n, :n], tokens))  # padding cut off
    return mean_over_sentences(per_sentence)


def top_heads(scores: torch.Tensor, k: int = 3) -> list[tuple[int, int, float]]:
    """The k highest-scoring heads as (layer, head, score), best first.

    Shape:
        scores (layers, heads).
    """
    heads = scores.shape[1]
    values, flat = scores.flatten().topk(k)
    return [(int(i) // heads, int(i) % heads, float(v)) for v, i in zip(values, flat)]


class PronounLinks(NamedTuple):
    antecedent: torch.Tensor  # (sentences, layers, heads): weight from the pronoun to the noun it refers to
    distractor: torch.Tensor  # (sentences, layers, heads): weight from the pronoun to the other noun


def pronoun_links(model: Encoder, tokenizer, items=PRONOUN_SENTENCES) -> PronounLinks:
    """Weight from the pronoun to its antecedent and to the distractor, in every head, for each sentence.

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        items: (sentence, pronoun, antecedent, distractor), the three words as single tokens of the sentence.
    """
    enc = encode(model, tokenizer, [sentence for sentence, *_ in items])
    antecedent, distractor = [], []
    for i, (sentence, pronoun, right, wrong) in enumerate(items):
        tokens = enc.tokens[i]
        for word in (pronoun, right, wrong):
            if word not in tokens:
                raise ValueError(f"{word!r} is not one token of {sentence!r}, whose tokens are {tokens}")
        q = tokens.index(pronoun)
        antecedent.append(enc.weights[i, :, :, q, tokens.index(right)])  # (layers, heads)
        distractor.append(enc.weights[i, :, :, q, tokens.index(wrong)])
    return PronounLinks(torch.stack(antecedent), torch.stack(distractor))


def layer_inputs(model: Encoder, batch) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run the encoder with every head present, keeping the input of each layer; also return the last output.

    Shape:
        batch: from `mha.pretrained.tokenize`, input_ids (batch, seq). Returns `layers` tensors and the output,
        each (batch, seq, d_model).
    """
    x = model.embeddings(batch.input_ids, torch.zeros_like(batch.input_ids))  # (batch, seq, d_model)
    inputs = []
    for layer in model.layers:
        inputs.append(x)
        x, _ = layer(x, batch.mask)
    return inputs, x


def values_through_output(attention, x: torch.Tensor) -> torch.Tensor:
    """Each key's value in each head, carried through that head's slice of W_O: f_k = v_k W_O^h.

    The attention output is then sum over heads and keys of w_qk f_k, plus W_O's bias.

    Args:
        attention: an `mha.MultiHeadAttention`.
        x: its input (self-attention).

    Shape:
        x (batch, seq, d_model); returns (batch, heads, k_pos, d_model).
    """
    _, _, v = attention.project(x, x, x)  # (batch, seq, d_model)
    v = split_heads(v, attention.heads)  # (batch, heads, k_pos, d_head)
    w_o = attention.out_proj.weight.reshape(attention.d_model, attention.heads, attention.d_head)  # head h's columns
    return torch.einsum("bhkd,mhd->bhkm", v, w_o)  # (batch, heads, k_pos, d_model)


class SinkShares(NamedTuple):
    weight: torch.Tensor  # (layers, heads): share of the attention weight that goes to the token
    norm: torch.Tensor  # (layers, heads): share of the size of what the head adds that comes from the token


@torch.no_grad()
def sink_shares(model: Encoder, tokenizer, sentences=TYPE_SENTENCES, position: int = 0) -> SinkShares:
    """How much of each head's weight goes to one position ([CLS] at 0), and how much of its output comes from it.

    What key k adds to query q's output in head h is w_qk * f_k, where f_k = v_k W_O^h is k's value carried through
    head h's slice of W_O. Its size is w_qk * |f_k| (weights are positive): a large weight on a key whose f_k is
    short adds little (Kobayashi et al., 2020, "Attention is not only a weight").

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        sentences: the sentences to average over (all real query positions of all of them).
        position: the key position to measure, 0 = [CLS].
    """
    batch = tokenize(tokenizer, list(sentences))
    inputs, _ = layer_inputs(model, batch)
    real = batch.mask[:, None, :].float()  # (batch, 1, q_pos): real queries only
    weight_share, norm_share = [], []
    for x, layer in zip(inputs, model.layers):
        att = layer.attention
        _, weights = att(x, key_padding_mask=batch.mask, need_weights=True, average_weights=False)
        f = values_through_output(att, x)  # (batch, heads, k_pos, d_model)
        sizes = weights * f.norm(dim=-1)[:, :, None, :]  # (batch, heads, q_pos, k_pos): |w_qk f_k|
        shares = sizes[..., position] / sizes.sum(dim=-1)  # (batch, heads, q_pos)
        weight_share.append((weights[..., position] * real).sum(dim=(0, 2)) / real.sum())  # (heads,)
        norm_share.append((shares * real).sum(dim=(0, 2)) / real.sum())
    return SinkShares(torch.stack(weight_share), torch.stack(norm_share))


def unique_sentences(pairs) -> tuple[list[str], torch.Tensor]:
    """The distinct sentences of a list of pairs, and each pair as two row numbers into that list.

    Shape:
        returns the sentences and index (pairs, 2).
    """
    sentences = list(dict.fromkeys(s for pair in pairs for s in pair))  # keeps the first-seen order
    return sentences, torch.tensor([[sentences.index(a), sentences.index(b)] for a, b in pairs])


def pair_similarities(embeddings: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each pair of unit-length embeddings, the pairs given as row numbers.

    Shape:
        embeddings (..., sentences, d_model), index (pairs, 2); returns (..., pairs).
    """
    return (embeddings[..., index[:, 0], :] * embeddings[..., index[:, 1], :]).sum(dim=-1)


def rank_changes(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """How many of the pairs of items are ordered differently by `other` than by `reference` (Kendall distance).

    Shape:
        reference (items,), other (..., items); returns (...), an integer count in 0..items * (items - 1) / 2.
    """
    ref = (reference[:, None] - reference[None, :]).sign()  # (items, items): +1 where item i ranks above item j
    new = (other[..., :, None] - other[..., None, :]).sign()  # (..., items, items)
    return ((ref * new) < 0).sum(dim=(-2, -1)) // 2  # each discordant pair is counted twice


class Ablation(NamedTuple):
    shift: torch.Tensor  # (layers, heads): mean over sentences of 1 - cos(embedding without the head, with it)
    similarity_change: torch.Tensor  # (layers, heads): largest change of a pair's similarity
    rank_changes: torch.Tensor  # (layers, heads): pairs of pairs whose similarity order flips
    similarities: torch.Tensor  # (pairs,): each pair's similarity with every head present


@torch.no_grad()
def ablate_heads(model: Encoder, tokenizer, pairs=PAIRS) -> Ablation:
    """Remove one head at a time and measure how the sentence embeddings and the pair similarities change.

    Removing a head of layer l changes nothing before layer l, so each layer's 12 ablations start from that
    layer's input in the full model, run side by side as one batch (one copy of the sentences per head).

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        pairs: sentence pairs; their similarities are ranked with and without each head.
    """
    heads = model.config.heads
    sentences, index = unique_sentences(pairs)
    batch = tokenize(tokenizer, sentences)
    n = len(sentences)
    inputs, x = layer_inputs(model, batch)  # each layer's input, every head present
    base = sentence_embeddings(x, batch.mask)  # (n, d_model)

    mask = batch.mask.repeat(heads, 1)  # (heads * n, seq): copy h of the sentences ...
    head_mask = (1 - torch.eye(heads)).repeat_interleave(n, dim=0)  # (heads * n, heads): ... runs without head h
    ablated = []
    for first, layer in enumerate(model.layers):
        x, _ = layer(inputs[first].repeat(heads, 1, 1), mask, head_mask)  # (heads * n, seq, d_model)
        for later in model.layers[first + 1 :]:
            x, _ = later(x, mask)
        ablated.append(sentence_embeddings(x, mask).reshape(heads, n, -1))  # (heads, n, d_model)
    ablated = torch.stack(ablated)  # (layers, heads, n, d_model)

    sims = pair_similarities(base, index)  # (pairs,)
    new_sims = pair_similarities(ablated, index)  # (layers, heads, pairs)
    return Ablation(
        shift=1 - (ablated * base).sum(dim=-1).mean(dim=-1),
        similarity_change=(new_sims - sims).abs().amax(dim=-1),
        rank_changes=rank_changes(sims, new_sims),
        similarities=sims,
    )


@torch.no_grad()
def embed_with_head_masks(model: Encoder, tokenizer, sentences: list[str], head_masks: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings of every sentence under every head mask, all in one batch.

    Shape:
        head_masks (masks, layers, heads); returns (masks, sentences, d_model).
    """
    per_row = head_masks.repeat_interleave(len(sentences), dim=0)  # (masks * sentences, layers, heads)
    enc = encode(model, tokenizer, list(sentences) * len(head_masks), head_mask=per_row)
    return enc.embeddings.reshape(len(head_masks), len(sentences), -1)  # (masks, sentences, d_model)


PRUNE_COUNTS = (0, 12, 24, 36, 48, 60)  # numbers of heads to remove at once, of 72


class PruneRow(NamedTuple):
    removed: int  # heads removed
    order: str  # "least important first" or "most important first"
    similarity: float  # mean cos(embedding with the heads removed, with all heads)
    rank_changes: int  # pairs of pairs whose similarity order flipped


@torch.no_grad()
def prune(model: Encoder, tokenizer, importance: torch.Tensor, counts=PRUNE_COUNTS, pairs=PAIRS):
    """Remove many heads at once, in order of importance (least first, then most first), and measure the damage.

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        importance: one number per head, e.g. `Ablation.shift`.
        counts: how many heads to remove.
        pairs: as in `ablate_heads`.

    Shape:
        importance (layers, heads). Returns a list of `PruneRow`.
    """
    layers, heads = importance.shape
    sentences, index = unique_sentences(pairs)
    orders = {"least important first": importance.flatten().argsort(), "most important first": None}
    orders["most important first"] = orders["least important first"].flip(0)
    masks, labels = [torch.ones(layers * heads)], []
    for name, order in orders.items():
        for count in counts:
            mask = torch.ones(layers * heads)
            mask[order[:count]] = 0
            masks.append(mask)
            labels.append((count, name))
    emb = embed_with_head_masks(model, tokenizer, sentences, torch.stack(masks).reshape(-1, layers, heads))
    base = emb[0]  # (sentences, d_model)
    similarity = (emb[1:] * base).sum(dim=-1).mean(dim=-1)  # (rows,)
    changes = rank_changes(pair_similarities(base, index), pair_similarities(emb[1:], index))  # (rows,)
    return [PruneRow(c, name, float(s), int(r)) for (c, name), s, r in zip(labels, similarity, changes)]


def format_head_types(types: dict[str, torch.Tensor], k: int = 3) -> str:
    """The k highest-scoring heads of each head type, as the lesson and the command print them."""
    lines = []
    lines.append(f"head types, averaged over the sentences: the {k} highest-scoring heads (L = layer, H = head)")
    for name, scores in types.items():
        lines.append(
            f"  {name:<10} " + "   ".join(f"L{layer}H{head} {s:.2f}" for layer, head, s in top_heads(scores, k))
        )
    return "\n".join(lines)


def format_sink_shares(shares: SinkShares) -> str:
    """Per layer, the mean share of the weight on [CLS] and the mean share of the heads' output that comes from it."""
    lines = []
    lines.append(f"{'layer':>5} | {'weight on [CLS]':>15} | {'output from [CLS]':>17}")
    for layer, (weight, norm) in enumerate(zip(shares.weight.mean(dim=1), shares.norm.mean(dim=1))):
        lines.append(f"{layer:>5} | {weight:>15.2f} | {norm:>17.2f}")
    lines.append(f"{'all':>5} | {shares.weight.mean():>15.2f} | {shares.norm.mean():>17.2f}")
    return "\n".join(lines)


def format_pronoun_links(links: PronounLinks, k: int = 3) -> str:
    """The k heads that put the most weight from the pronoun on its antecedent, with the distractor beside it."""
    lines = []
    ahead = (links.antecedent > links.distractor).float().mean(dim=0)  # (layers, heads)
    lines.append(f"pronoun -> antecedent, over {len(links.antecedent)} sentences: the {k} heads with most weight on it")
    for layer, head, s in top_heads(links.antecedent.mean(dim=0), k):
        other = links.distractor[:, layer, head].mean()
        lines.append(
            f"  L{layer}H{head}: {s:.2f} on the antecedent, {other:.2f} on the distractor; "
            f"antecedent ahead in {ahead[layer, head]:.0%} of the sentences"
        )
    return "\n".join(lines)


def format_ablation(ablation: Ablation, k: int = 5) -> str:
    """The k heads whose removal moves the sentence embeddings most, and how many heads change the ranking."""
    lines = []
    lines.append(f"one head removed at a time: the {k} heads whose removal moves the embeddings most")
    for layer, head, s in top_heads(ablation.shift, k):
        lines.append(
            f"  L{layer}H{head}: 1 - cos = {s:.3f}, largest change of a pair's similarity "
            f"{ablation.similarity_change[layer, head]:.3f}, ranking flips {int(ablation.rank_changes[layer, head])}"
        )
    median = ablation.shift.flatten().median()
    lines.append(f"  the median head: 1 - cos = {median:.3f}")
    lines.append(f"  heads whose removal changes the ranking of the pairs: {int((ablation.rank_changes > 0).sum())}")
    return "\n".join(lines)


def format_prune(rows: list[PruneRow]) -> str:
    """The table of `prune`."""
    lines = []
    lines.append(f"{'removed':>7} | {'order':<22} | {'cos to full model':>17} | {'ranking flips':>13}")
    for row in rows:
        lines.append(f"{row.removed:>7} | {row.order:<22} | {row.similarity:>17.3f} | {row.rank_changes:>13}")
    return "\n".join(lines)
