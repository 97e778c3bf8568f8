"""Learning in context on text: lesson 04's template language, written as short documents about one product.

A document picks one company and one product, then writes sentences of the language about them until it is
`seq` tokens long (the last sentence cut off), each sentence with its own verb, order, connective, adjective and
distractors:

    sony launched a new walkman , so it is great . a new walkman was unveiled by sony in paris , but it is slow .
    last week , sony released a new walkman ...

Trained to predict the next word, a model cannot know the product at its first mention (one of 10), but it can
at every later one, if it reads the document: that is learning in context. Each run trains a one-layer and a
two-layer model of the same parameter count (as `mha.circuits.induction`) and records the loss at every position,
Olsson et al.'s in-context score, the loss on the product at its first mention and at later ones, and the heads'
induction scores on the documents.

Example:
  python -m mha.circuits text --seeds 0 --json text.json
"""

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._portable import same_linears
from ..toy.language import (
    ADJECTIVES,
    ASIDES,
    COMPANIES,
    CONTRAST,
    INDEX,
    MIDDLES,
    OPENERS,
    PRODUCTS,
    SAME,
    VERBS,
    VOCAB,
    make_sentence,
)
from ..toy.models import AttentionOnlyConfig, build_model, count_parameters
from ..toy.train import TrainConfig, train
from .induction import in_context_score, position_losses
from .repeats import next_tokens
from .scores import head_name, induction_scores, previous_token_scores, spread_evenly

ANALYSIS_SEED = 2_000_003
EARLY, LATE = 4, 62  # the positions the in-context score compares
PRODUCT_IDS = torch.tensor([INDEX[p] for p in PRODUCTS])


@dataclass(frozen=True)
class Documents:
    """Documents of the template language about one company and one product; next-word targets.

    The interface of `mha.toy.train.train`: one relationship, "next word".

    Args:
        seq: tokens per document (at least 27, the longest sentence plus one).
    """

    seq: int = 64

    relations = 1
    names = ["next word"]
    vocab = len(VOCAB)

    def __post_init__(self):
        if not isinstance(self.seq, int) or self.seq < 27:
            raise ValueError(f"seq must be an integer of at least 27 (the longest sentence has 26), got {self.seq!r}")

    def document(self, generator: torch.Generator) -> list[str]:
        """The words of one document."""

        def pick(options):
            return options[int(torch.randint(len(options), (), generator=generator))]

        def coin():
            return bool(torch.rand((), generator=generator) < 0.5)

        company, product = pick(COMPANIES), pick(PRODUCTS)
        words: list[str] = []
        while len(words) < self.seq:
            words += make_sentence(
                company,
                product,
                pick(CONTRAST + SAME),
                pick(ADJECTIVES),
                pick(VERBS),
                passive=coin(),
                opener=pick(OPENERS) if coin() else None,
                middle=pick(MIDDLES) if coin() else None,
                aside=pick(ASIDES) if coin() else None,
            ).words
        return words[: self.seq]

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of documents and the next word at every position.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, 1), int64.
        """
        tokens = torch.tensor([[INDEX[w] for w in self.document(generator)] for _ in range(batch)])
        return tokens, next_tokens(tokens)


def product_mentions(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions whose next word is the document's product: at its first mention, and at the later ones.

    Shape:
        tokens (batch, seq); returns two (batch, seq) bool masks (first, later), over positions 0 .. seq - 2.
    """
    is_product = torch.isin(tokens[:, 1:], PRODUCT_IDS)  # (batch, seq - 1): the next word is a product
    count = is_product.long().cumsum(dim=1)
    first = is_product & (count == 1)
    later = is_product & (count > 1)
    pad = torch.zeros(tokens.shape[0], 1, dtype=torch.bool)
    return torch.cat([first, pad], dim=1), torch.cat([later, pad], dim=1)


@torch.no_grad()
def product_losses(model, tokens: torch.Tensor) -> dict[str, float]:
    """The mean loss on the product, at its first mention and at the later ones; and the accuracy of each.

    The loss at the first mention splits exactly into two parts, -ln p(product) = -ln P(a product comes next)
    - ln p(product | a product comes next): "first_any" and "first_which", their means over the first mentions.

    Shape:
        tokens (batch, seq); returns {"first": float, "later": float, "first_accuracy": ..., "later_accuracy": ...,
        "first_any": ..., "first_which": ...}.
    """
    logits = model(tokens)[:, :, 0]  # (batch, seq, vocab)
    targets = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)  # (batch, seq): the next word (last one unused)
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (batch, seq)
    right = logits.argmax(dim=-1) == targets
    first, later = product_mentions(tokens)
    any_product = -torch.logsumexp(logits.log_softmax(dim=-1)[..., PRODUCT_IDS], dim=-1)  # (batch, seq)
    return {
        "first": losses[first].double().mean().item(),
        "later": losses[later].double().mean().item(),
        "first_accuracy": right[first].double().mean().item(),
        "later_accuracy": right[later].double().mean().item(),
        "first_any": any_product[first].double().mean().item(),
        "first_which": (losses - any_product)[first].double().mean().item(),
    }


@dataclass(frozen=True)
class TextSetting:
    """One model on the documents, and its training.

    Args:
        layers, d_model, heads: the model's sizes.
        seq: tokens per document.
        steps, batch, lr: training.
    """

    layers: int = 2
    d_model: int = 32
    heads: int = 2
    seq: int = 64
    steps: int = 800
    batch: int = 32
    lr: float = 1e-2

    @property
    def label(self) -> str:
        return f"{self.layers} layer{'s' if self.layers > 1 else ''} x {self.heads} heads, d_model {self.d_model}"

    def config(self) -> AttentionOnlyConfig:
        return AttentionOnlyConfig(Documents.vocab, self.seq, self.d_model, self.heads, relations=1, layers=self.layers)


def text_settings() -> list[TextSetting]:
    """One layer with 4 heads and two layers of 2 heads, of at least the same parameter count."""
    two = TextSetting()
    target = count_parameters(build_model(two.config(), 0))
    d = 4
    while count_parameters(build_model(TextSetting(1, d, 4).config(), 0)) < target:
        d += 4
    return [dataclasses.replace(two, layers=1, d_model=d, heads=4), two]


def run(setting: TextSetting, seed: int, progress: bool = True, analysis: int = 512):
    """Train one model on the documents and measure how much it learns in context.

    Returns:
        (record, model).
    """
    task = Documents(setting.seq)
    model = same_linears(build_model(setting.config(), seed), seed)  # the same starting weights on every CPU
    config = TrainConfig(setting.steps, setting.batch, setting.lr, seed=seed, eval_every=50, eval_batch=256)
    begun = time.perf_counter()
    result = train(model, task, config, progress=progress)
    tokens, _ = task.sample(analysis, torch.Generator().manual_seed(ANALYSIS_SEED))
    with torch.no_grad():
        _, weights = model(tokens, need_weights=True)
    losses = position_losses(model, tokens)
    layers, heads = setting.layers, setting.heads
    record = {
        **dataclasses.asdict(setting),
        "label": setting.label,
        "seed": seed,
        "params": count_parameters(model),
        "curve": [{"step": h["step"], "loss": h["loss"]} for h in result.history],
        "losses": losses.tolist(),
        "in_context": in_context_score(losses, EARLY, LATE),
        "product": product_losses(model, tokens),
        "previous": previous_token_scores(weights).view(layers, heads).tolist(),
        "induction": induction_scores(weights, tokens).view(layers, heads).tolist(),
        "even_induction": induction_scores(spread_evenly(len(tokens), setting.seq), tokens).item(),
        "seconds": time.perf_counter() - begun,
    }
    return record, model


def format_text(records: list[dict]) -> str:
    """One line per run: in-context score, the product's loss at its first and later mentions, the best head."""
    lines = [
        f"{'model':<30}{'seed':>5}{'params':>8}{'ICL score':>11}{'product: first':>16}{'later':>7}"
        f"{'later right':>13}{'best induction':>16}"
    ]
    for r in records:
        best = max(
            ((score, layer, head) for layer, row in enumerate(r["induction"]) for head, score in enumerate(row)),
        )
        p = r["product"]
        lines.append(
            f"{r['label']:<30}{r['seed']:>5}{r['params']:>8,}{r['in_context']:>11.2f}{p['first']:>16.2f}"
            f"{p['later']:>7.2f}{p['later_accuracy']:>13.0%}{head_name(best[1], best[2]) + f' {best[0]:.2f}':>16}"
        )
    lines += [
        "",
        f"ICL score: the mean loss at position {LATE} minus that at position {EARLY}; product: its mean loss at its",
        "first mention and at the later ones; later right: the later mentions predicted; best induction: the head",
        "with the highest induction score",
    ]
    if all("first_any" in r["product"] for r in records):
        lines += [
            "",
            "the loss at the first mention, split: -ln P(a product comes next) - ln p(this product | a product)",
        ]
        for r in records:
            p = r["product"]
            lines.append(
                f"{r['label']:<30}{r['seed']:>5}   {p['first']:.2f} = {p['first_any']:.2f} + {p['first_which']:.2f}"
            )
    if all("even_induction" in r for r in records):
        evens = sorted({f"{r['even_induction']:.2f}" for r in records})
        lines.append(
            f"a head spreading its weight evenly over the keys each query sees scores {' to '.join(evens)} (induction) "
            "on these documents"
        )
    return "\n".join(lines)
