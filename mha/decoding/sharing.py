"""What sharing keys and values costs: the same model and training with 8 query heads and 8, 4, 2 or 1 key/value heads.

Two tasks the course already knows, each answered by a one-layer attention-only model (`mha.toy.models`):
  offsets   lesson 02's task: at every position, name the tokens 1, 2 and 3 positions back
  template  lesson 04's sentences: at "it", name the product, the company, and whether the clause contrasts

Everything but kv_heads stays fixed: d_model 64, 8 query heads of d_head 8, the task's steps, batches and seeds.
With kv_heads < 8 the query heads of a group read the same keys and values: each query still chooses where to look,
but every head that looks at a position receives the same value vector from it. A second width, d_model 16 (8
query heads of d_head 2), probes where that bites: a value of 2 numbers cannot say much about a token.

Besides the accuracy, each run records where the queries look: for each relationship, the weight that the head
most devoted to it puts on the position it needs (mean over queries), and how many heads put most of their weight
there.

Examples:
  python -m mha.decoding sharing --seeds 0 1 2 --json notebooks/results/07_sharing.json
  python -m mha.decoding sharing --d-models 16 --seeds 0 1 2 --json notebooks/results/07_sharing_narrow.json
  python -m mha.decoding sharing --tasks offsets --kv-heads 8 1 --seeds 0
"""

from dataclasses import asdict, dataclass

import torch

from ..toy import tunnel_vision
from ..toy.language import RELATIONS, TemplateLanguage
from ..toy.models import AttentionOnlyConfig, build_model, count_parameters
from ..toy.tasks import OffsetCopyTask
from ..toy.train import TrainConfig, train
from ..toy.what_heads_learn import probe_sentences, relation_attention

TASKS = ("offsets", "template")
KV_HEADS = (8, 4, 2, 1)
PROBE_SEED = 7  # the probe sequences of the offsets task, as in lesson 02


@dataclass(frozen=True)
class SharingSetting:
    """One model and its training.

    Args:
        task: "offsets" (lesson 02's task) or "template" (lesson 04's sentences).
        kv_heads: key/value heads shared by the query heads.
        heads: query heads.
        d_model: features per position.
        steps: training steps (default: the task's lesson, 400 for offsets, 600 for template).
        batch: sequences per batch (default: 32 for offsets, 64 for template, as in their lessons).
        lr: Adam's learning rate.
    """

    task: str = "offsets"
    kv_heads: int = 8
    heads: int = 8
    d_model: int = 64
    steps: int | None = None
    batch: int | None = None
    lr: float = 3e-3

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        defaults = {"offsets": (400, 32), "template": (600, 64)}[self.task]
        object.__setattr__(self, "steps", defaults[0] if self.steps is None else self.steps)
        object.__setattr__(self, "batch", defaults[1] if self.batch is None else self.batch)
        AttentionOnlyConfig(heads=self.heads, d_model=self.d_model, kv_heads=self.kv_heads)  # checks the sizes

    def make_task(self):
        return OffsetCopyTask((1, 2, 3), vocab=64, seq=16) if self.task == "offsets" else TemplateLanguage()

    def model_config(self) -> AttentionOnlyConfig:
        task = self.make_task()
        return AttentionOnlyConfig(
            task.vocab, task.seq, self.d_model, self.heads, task.relations, kv_heads=self.kv_heads
        )


@torch.no_grad()
def where_heads_look(model, setting: SharingSetting) -> torch.Tensor:
    """Mean weight each head puts on the position each relationship needs.

    offsets: over all queries with three positions behind them, on i-1, i-2, i-3; template: from "it" to the
    product, the company and the connective.

    Shape:
        returns (heads, relations).
    """
    if setting.task == "template":
        return relation_attention(model, probe_sentences())
    task = setting.make_task()
    tokens, _ = task.sample(256, torch.Generator().manual_seed(PROBE_SEED))
    _, weights = model(tokens, need_weights=True)  # (batch, heads, q_pos, k_pos)
    return tunnel_vision.weight_by_offset(weights, max(task.offsets))[:, list(task.offsets)]  # (heads, relations)


def run(setting: SharingSetting, seed: int, progress: bool = True) -> dict:
    """Train one model from `seed` and measure it; a JSON-ready record.

    Shape:
        returns a dict: the setting's fields, d_head, seed, params, relations (names), accuracy, relation_accuracy,
        seconds, curve (step and accuracy at each held-out evaluation), looks (heads x relations: mean weight on
        the needed position), best_look (per relationship, the largest of looks) and heads_on (per relationship,
        how many heads put more than half their weight there).
    """
    task = setting.make_task()
    model = build_model(setting.model_config(), seed)
    config = TrainConfig(
        steps=setting.steps,
        batch=setting.batch,
        lr=setting.lr,
        seed=seed,
        eval_every=max(1, setting.steps // 20),
        eval_batch=256 if setting.task == "template" else 512,
    )
    result = train(model, task, config, progress=progress)
    looks = where_heads_look(result.model, setting)  # (heads, relations)
    return {
        **asdict(setting),
        "d_head": setting.d_model // setting.heads,
        "seed": seed,
        "params": count_parameters(result.model),
        "relations": list(task.names) if setting.task == "offsets" else list(RELATIONS),
        "accuracy": result.accuracy,
        "relation_accuracy": result.relation_accuracy,
        "seconds": result.seconds,
        "curve": {key: [h[key] for h in result.history] for key in ("step", "accuracy")},
        "looks": looks.tolist(),
        "best_look": looks.max(dim=0).values.tolist(),
        "heads_on": (looks > 0.5).sum(dim=0).tolist(),
    }


def settings_for(tasks=TASKS, kv_heads=KV_HEADS, d_models=(64,), **kwargs) -> list[SharingSetting]:
    """Every width, task and number of key/value heads, in that order."""
    return [SharingSetting(task=t, kv_heads=k, d_model=d, **kwargs) for d in d_models for t in tasks for k in kv_heads]


def run_all(settings, seeds, progress: bool = True, log=None) -> list[dict]:
    """Every setting from every seed; `log` (a text stream) gets one table row per finished run."""
    records = []
    for setting in settings:
        for seed in seeds:
            records.append(run(setting, seed, progress))
            if log is not None:
                print(_row(records[-1]), file=log, flush=True)
    return records


def _label(record) -> str:
    kind = "MHA" if record["kv_heads"] == record["heads"] else "MQA" if record["kv_heads"] == 1 else "GQA"
    return f"{record['task']}, d_head {record['d_head']}, kv_heads {record['kv_heads']} ({kind})"


def _relations(names, values, fmt="{:.0%}") -> str:
    return " ".join(f"{n} {fmt.format(v)}" for n, v in zip(names, values))


def _row(r: dict) -> str:
    return (
        f"{_label(r):<38} {r['params']:>7,} {r['steps']:>5} {r['seed']:>4} {r['accuracy']:>8.0%}   "
        f"{_relations(r['relations'], r['relation_accuracy']):<40} [took {r['seconds']:.1f} s]"
    )


def format_table(records) -> str:
    """One line per run: task, kv_heads, parameters, steps, seed, accuracy overall and per relationship, seconds."""
    header = f"{'configuration':<38} {'params':>7} {'steps':>5} {'seed':>4} {'accuracy':>8}   per relationship"
    return "\n".join([header, "-" * (len(header) + 34)] + [_row(r) for r in records])


def summarize(records) -> list[dict]:
    """Mean over seeds of each (task, kv_heads), in first-seen order.

    Shape:
        returns one dict per configuration: task, kv_heads, heads, params, relations, seeds, accuracy (mean),
        accuracies (per seed), relation_accuracy (mean per relationship), best_look and heads_on (means).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["d_head"], r["kv_heads"]), []).append(r)
    summary = []
    for (task, d_head, kv_heads), runs in groups.items():
        n = len(runs)

        def mean(key, runs=runs, n=n):
            return [sum(values) / n for values in zip(*(r[key] for r in runs))]

        summary.append(
            {
                "task": task,
                "d_head": d_head,
                "kv_heads": kv_heads,
                "heads": runs[0]["heads"],
                "params": runs[0]["params"],
                "relations": runs[0]["relations"],
                "seeds": [r["seed"] for r in runs],
                "accuracy": sum(r["accuracy"] for r in runs) / n,
                "accuracies": [r["accuracy"] for r in runs],
                "relation_accuracy": mean("relation_accuracy"),
                "best_look": mean("best_look"),
                "heads_on": mean("heads_on"),
            }
        )
    return summary


def format_summary(records) -> str:
    """One line per configuration: mean accuracy, each seed's, and the mean per relationship."""
    summary = summarize(records)
    seeds_width = max([8] + [5 * len(s["accuracies"]) for s in summary])
    header = f"{'configuration':<38} {'params':>7} {'mean':>5}   {'per seed':<{seeds_width}} per relationship (mean)"
    lines = [header, "-" * (len(header) + 30)]
    for s in summary:
        seeds = " ".join(f"{a:>4.0%}" for a in s["accuracies"])
        lines.append(
            f"{_label(s):<38} {s['params']:>7,} {s['accuracy']:>5.0%}   {seeds:<{seeds_width}} "
            f"{_relations(s['relations'], s['relation_accuracy'])}"
        )
    return "\n".join(lines)


def format_looks(records) -> str:
    """Per configuration and relationship: the best head's weight on the needed position, and heads looking there."""
    summary = summarize(records)
    lines = [f"{'configuration':<38} weight of the best head on the needed position (heads with > 0.5 there)"]
    for s in summary:
        cells = " ".join(f"{n} {w:.2f} ({h:.1f})" for n, w, h in zip(s["relations"], s["best_look"], s["heads_on"]))
        lines.append(f"{_label(s):<38} {cells}")
    return "\n".join(lines)
