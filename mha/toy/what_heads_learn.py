"""What heads learn: a multi-head attention layer trained on sentences like "Apple released a new iPhone, but it is
expensive.", looked at head by head.

The language (`mha.toy.language`): at the pronoun "it", name the product it refers to (pronoun), the company that
released it (entity), and whether the clause contrasts (contrast: "but", "yet" against "and", "so"). Each answer
sits at one position of the sentence. The model (`mha.toy.models.AttentionOnlyModel`): embeddings, one causal attention
layer, a residual, one readout per relationship.

After training it measures, on a fixed set of sentences:
  attention  per head and relationship, the mean weight that "it" puts on the position the relationship needs;
  ablation   per head, the accuracy of each relationship with that head's output zeroed;
  distance   the pronoun's accuracy against the distance from "it" back to the product.

Examples:
  python -m mha.toy heads --seed 0 --json heads.json
  python -m mha.toy heads --heads 1 --steps 1200
"""

from collections import defaultdict
from dataclasses import asdict, dataclass

import torch

from .._trained import once
from .._validate import head_size
from .language import INDEX, RELATIONS, Sentence, TemplateLanguage
from .models import AttentionOnlyConfig, build_model, count_parameters
from .train import TrainConfig, TrainResult, train

PROBE_SEED = 2024  # the analysis sentences are the same for every run


@dataclass(frozen=True)
class HeadsSetting:
    """The lesson's model and its training.

    Args:
        heads: attention heads, each of width d_model // heads.
        d_model: features per position.
        steps: training steps, one fresh batch of sentences each.
        batch: sentences per batch.
        lr: Adam's learning rate.
        eval_every: steps between held-out evaluations (the training curve).
    """

    heads: int = 4
    d_model: int = 64
    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    eval_every: int = 25

    def __post_init__(self):  # every value checked now, before any training starts
        head_size(self.d_model, self.heads)
        TrainConfig(steps=self.steps, batch=self.batch, lr=self.lr, eval_every=self.eval_every)


@once()
def train_model(setting: HeadsSetting, seed: int, progress: bool = True) -> TrainResult:
    """Train the lesson's model from seed `seed`; the sentences of step k are the same for every setting."""
    language = TemplateLanguage()
    config = AttentionOnlyConfig(
        vocab=language.vocab,
        seq=language.seq,
        d_model=setting.d_model,
        heads=setting.heads,
        relations=language.relations,
    )
    model = build_model(config, seed)
    train_config = TrainConfig(
        steps=setting.steps,
        batch=setting.batch,
        lr=setting.lr,
        seed=seed,
        eval_every=setting.eval_every,
        eval_batch=256,
    )
    return train(model, language, train_config, progress=progress)


def probe_sentences(n: int = 400, seed: int = PROBE_SEED) -> list[Sentence]:
    """A fixed set of random sentences for the analyses."""
    return TemplateLanguage().sample_sentences(n, torch.Generator().manual_seed(seed))


@torch.no_grad()
def relation_attention(model, sentences: list[Sentence]) -> torch.Tensor:
    """Mean attention weight from "it" to the position each relationship needs, per head.

    Args:
        model: a trained `AttentionOnlyModel`.
        sentences: the sentences to average over.

    Shape:
        returns (heads, relations); entry [h, r] lies in 0..1.
    """
    tokens, _ = TemplateLanguage().encode(sentences)
    _, weights = model(tokens, need_weights=True)  # (batch, heads, q_pos, k_pos)
    table = weights.new_zeros(weights.shape[1], len(RELATIONS))  # (heads, relations)
    for b, s in enumerate(sentences):
        for r, relation in enumerate(RELATIONS):
            table[:, r] += weights[b, :, s.it, s.needed[relation]]
    return table / len(sentences)


@torch.no_grad()
def connective_attention(model, sentences: list[Sentence]) -> torch.Tensor:
    """Mean weight from "it" on the connective, per head, apart for contrasting and continuing connectives.

    Args:
        model: a trained `AttentionOnlyModel`.
        sentences: the sentences to average over (both kinds must occur).

    Shape:
        returns (heads, 2): column 0 for "but"/"yet", column 1 for "and"/"so".
    """
    tokens, _ = TemplateLanguage().encode(sentences)
    _, weights = model(tokens, need_weights=True)  # (batch, heads, q_pos, k_pos)
    on_connective = torch.stack([weights[b, :, s.it, s.connective] for b, s in enumerate(sentences)])  # (batch, heads)
    contrast = torch.tensor([s.answers["contrast"] == "<contrast>" for s in sentences])
    if contrast.all() or not contrast.any():
        raise ValueError("connective_attention needs sentences with both kinds of connective")
    return torch.stack([on_connective[contrast].mean(0), on_connective[~contrast].mean(0)], dim=1)


@torch.no_grad()
def relation_accuracy(model, sentences: list[Sentence], head_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Accuracy of each relationship's answer at "it", optionally with some heads switched off.

    Args:
        model: a trained `AttentionOnlyModel`.
        sentences: the sentences to score.
        head_mask: multiplies each head's output (0 removes a head), as in `mha.MultiHeadAttention`.

    Shape:
        head_mask (heads,); returns (relations,).
    """
    tokens, targets = TemplateLanguage().encode(sentences)
    predictions = model(tokens, head_mask=head_mask).argmax(dim=-1)  # (batch, seq, relations)
    at_it = torch.tensor([s.it for s in sentences])
    rows = torch.arange(len(sentences))
    return (predictions[rows, at_it] == targets[rows, at_it]).float().mean(dim=0)


def ablation(model, sentences: list[Sentence]) -> torch.Tensor:
    """Each relationship's accuracy with one head removed at a time (its output zeroed before W_O).

    Shape:
        returns (heads, relations): row h is the accuracy without head h.
    """
    heads = model.config.heads
    rows = []
    for h in range(heads):
        keep = torch.ones(heads)
        keep[h] = 0.0
        rows.append(relation_accuracy(model, sentences, head_mask=keep))
    return torch.stack(rows)


@torch.no_grad()
def accuracy_by_distance(model, sentences: list[Sentence]) -> dict[int, float]:
    """The pronoun's accuracy grouped by how far back the product is: distance = position of "it" - of the product."""
    tokens, targets = TemplateLanguage().encode(sentences)
    predictions = model(tokens).argmax(dim=-1)  # (batch, seq, relations)
    hits = defaultdict(list)
    pronoun = RELATIONS.index("pronoun")
    for b, s in enumerate(sentences):
        hits[s.it - s.product].append(bool(predictions[b, s.it, pronoun] == INDEX[s.answers["pronoun"]]))
    return {d: sum(v) / len(v) for d, v in sorted(hits.items())}


def run(setting: HeadsSetting, seed: int, progress: bool = True) -> dict:
    """Train one model and measure everything; a JSON-ready record."""
    result = train_model(setting, seed, progress)
    sentences = probe_sentences()
    return {
        **asdict(setting),
        "seed": seed,
        "params": count_parameters(result.model),
        "relations": RELATIONS,
        "accuracy": result.accuracy,
        "relation_accuracy": result.relation_accuracy,
        "seconds": result.seconds,
        "attention": relation_attention(result.model, sentences).tolist(),
        "ablation": ablation(result.model, sentences).tolist(),
        "distance": accuracy_by_distance(result.model, sentences),
        "history": result.history,
    }


def format_record(record: dict) -> str:
    """The head x relationship table and the ablation table of one run, as text."""
    names = record["relations"]
    lines = [
        f"{record['heads']} head(s), d_model {record['d_model']}, seed {record['seed']}, "
        f"{record['steps']} steps, {record['params']:,} parameters: accuracy "
        + ", ".join(f"{n} {a:.0%}" for n, a in zip(names, record["relation_accuracy"]))
    ]
    lines.append("mean attention from 'it' to the position each relationship needs")
    lines.append("        " + "".join(f"{n:>10}" for n in names))
    for h, row in enumerate(record["attention"]):
        lines.append(f"head {h:<3}" + "".join(f"{x:>10.2f}" for x in row))
    lines.append("accuracy with one head removed")
    lines.append("        " + "".join(f"{n:>10}" for n in names))
    for h, row in enumerate(record["ablation"]):
        lines.append(f"-head {h:<2}" + "".join(f"{x:>10.0%}" for x in row))
    return "\n".join(lines)
