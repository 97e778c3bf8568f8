"""What sharing keys and values costs: the same model and training with 8 query heads and 8, 4, 2 or 1 key/value heads.

Three tasks, each answered by a one-layer attention-only model (`mha.toy.models`):
  offsets   lesson 02's task: at every position, name the tokens 1, 2 and 3 positions back
  template  lesson 04's sentences: at "it", name the product, the company, and whether the clause contrasts
  bits      at every position, name each of the 6 bits of the token one position back (`BitsTask`)

Everything but kv_heads stays fixed within a task and width: 8 query heads, the task's steps, batches, learning
rate and seeds. With kv_heads < 8 the query heads of a group read the same keys and values: each query still
chooses where to look, but every head that looks at a position receives the same value vector from it. So the
layer can read at most kv_heads * d_head numbers from one position (`value_width`), however many heads look there.

The first two tasks need one fact from each of several positions, and d_head 8 carries it: sharing should cost
nothing there. The bits task needs six independent facts from one position: at d_model 64 (d_head 8) one key/value
head still carries them; at d_model 16 (d_head 2) one key/value head reads 2 numbers where 6 bits are asked for,
and eight heads of their own read 16. That is where sharing costs, by construction.

Besides the accuracy, each run records where the queries look: for each relationship, the weight that the head
most devoted to it puts on the position it needs (mean over queries), and how many heads put most of their weight
there.

Examples:
  python -m mha.decoding sharing --seeds 0 1 2 --json notebooks/results/07_sharing.json
  python -m mha.decoding sharing --tasks bits --d-models 16 --kv-heads 8 1 --seeds 0
  python -m mha.decoding sharing --tasks offsets --kv-heads 8 1 --seeds 0
"""

from dataclasses import asdict, dataclass

import torch

from ..toy import tunnel_vision
from ..toy.language import RELATIONS, TemplateLanguage
from ..toy.models import AttentionOnlyConfig, build_model, count_parameters
from ..toy.tasks import IGNORE_INDEX, OffsetCopyTask
from ..toy.train import TrainConfig, train
from ..toy.what_heads_learn import probe_sentences, relation_attention

TASKS = ("offsets", "template", "bits")
KV_HEADS = (8, 4, 2, 1)
WIDTHS = {"offsets": (64,), "template": (64,), "bits": (64, 16)}  # the d_model of each task's runs, by default
# (steps, batch, lr) of each task: offsets and template as in lessons 02 and 04; bits converges in 600 steps at 1e-2
TRAINING = {"offsets": (400, 32, 3e-3), "template": (600, 64, 3e-3), "bits": (600, 64, 1e-2)}
PROBE_SEED = 7  # the probe sequences of the offsets and bits tasks, as in lesson 02


@dataclass(frozen=True)
class BitsTask:
    """At every position i, name each bit of the token at i - 1: several independent facts from one position.

    Tokens are the numbers 0 .. 2**bits - 1, drawn uniformly, so each bit is a fair coin that only position i - 1
    can tell. One relationship per bit (0 = the lowest); a model needs `bits` independent numbers from the same
    position, which is what one shared key/value head of d_head < bits cannot deliver.

    Args:
        bits: bits per token (vocab = 2**bits).
        seq: tokens per sequence.
    """

    bits: int = 6
    seq: int = 8

    def __post_init__(self):
        if not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be a positive integer, got {self.bits!r}")
        if not isinstance(self.seq, int) or self.seq < 2:
            raise ValueError(f"seq must be an integer of at least 2, got {self.seq!r}")

    @property
    def vocab(self) -> int:
        return 2**self.bits

    @property
    def relations(self) -> int:
        return self.bits

    @property
    def names(self) -> list[str]:
        """ "bit 0", "bit 1", ..."""
        return [f"bit {k}" for k in range(self.bits)]

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of random sequences and, at every position, the bits of the token before it.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, bits), int64; targets[b, i, k] is bit k of
            tokens[b, i - 1] (0 or 1), IGNORE_INDEX at i = 0.
        """
        tokens = torch.randint(self.vocab, (batch, self.seq), generator=generator)  # (batch, seq)
        targets = torch.full((batch, self.seq, self.bits), IGNORE_INDEX)  # (batch, seq, bits)
        for k in range(self.bits):
            targets[:, 1:, k] = (tokens[:, :-1] >> k) & 1
        return tokens, targets


@dataclass(frozen=True)
class SharingSetting:
    """One model and its training.

    Args:
        task: "offsets" (lesson 02's task), "template" (lesson 04's sentences) or "bits" (`BitsTask`).
        kv_heads: key/value heads shared by the query heads.
        heads: query heads.
        d_model: features per position.
        steps: training steps (default: the task's, `TRAINING`: 400 for offsets, 600 for template and bits).
        batch: sequences per batch (default: 32 for offsets, 64 for template and bits).
        lr: Adam's learning rate (default: 3e-3 for offsets and template, as in their lessons; 1e-2 for bits).
    """

    task: str = "offsets"
    kv_heads: int = 8
    heads: int = 8
    d_model: int = 64
    steps: int | None = None
    batch: int | None = None
    lr: float | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        for name, default in zip(("steps", "batch", "lr"), TRAINING[self.task]):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        AttentionOnlyConfig(heads=self.heads, d_model=self.d_model, kv_heads=self.kv_heads)  # checks the sizes

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads

    @property
    def value_width(self) -> int:
        """Numbers the layer can read from one position: kv_heads * d_head, however many query heads look there."""
        return self.kv_heads * self.d_head

    def make_task(self):
        if self.task == "offsets":
            return OffsetCopyTask((1, 2, 3), vocab=64, seq=16)
        return TemplateLanguage() if self.task == "template" else BitsTask()

    def model_config(self) -> AttentionOnlyConfig:
        task = self.make_task()
        return AttentionOnlyConfig(
            task.vocab, task.seq, self.d_model, self.heads, task.relations, kv_heads=self.kv_heads
        )


@torch.no_grad()
def where_heads_look(model, setting: SharingSetting) -> torch.Tensor:
    """Mean weight each head puts on the position each relationship needs.

    offsets: over all queries with three positions behind them, on i-1, i-2, i-3; template: from "it" to the
    product, the company and the connective; bits: on i-1, the position every bit comes from (one column per bit).

    Shape:
        returns (heads, relations).
    """
    if setting.task == "template":
        return relation_attention(model, probe_sentences())
    task = setting.make_task()
    tokens, _ = task.sample(256, torch.Generator().manual_seed(PROBE_SEED))
    _, weights = model(tokens, need_weights=True)  # (batch, heads, q_pos, k_pos)
    if setting.task == "bits":
        return tunnel_vision.weight_by_offset(weights, 1)[:, [1] * task.relations]  # (heads, relations)
    return tunnel_vision.weight_by_offset(weights, max(task.offsets))[:, list(task.offsets)]  # (heads, relations)


def run(setting: SharingSetting, seed: int, progress: bool = True) -> dict:
    """Train one model from `seed` and measure it; a JSON-ready record.

    Shape:
        returns a dict: the setting's fields, d_head, value_width, seed, params, relations (names), accuracy,
        relation_accuracy, seconds, curve (step and accuracy at each held-out evaluation), looks (heads x
        relations: mean weight on the needed position), best_look (per relationship, the largest of looks) and
        heads_on (per relationship, how many heads put more than half their weight there).
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
        "d_head": setting.d_head,
        "value_width": setting.value_width,
        "seed": seed,
        "params": count_parameters(result.model),
        "relations": list(RELATIONS) if setting.task == "template" else list(task.names),
        "accuracy": result.accuracy,
        "relation_accuracy": result.relation_accuracy,
        "seconds": result.seconds,
        "curve": {key: [h[key] for h in result.history] for key in ("step", "accuracy")},
        "looks": looks.tolist(),
        "best_look": looks.max(dim=0).values.tolist(),
        "heads_on": (looks > 0.5).sum(dim=0).tolist(),
    }


def settings_for(tasks=TASKS, kv_heads=KV_HEADS, d_models=None, **kwargs) -> list[SharingSetting]:
    """Every task, width and number of key/value heads, in that order.

    Args:
        tasks: task names.
        kv_heads: numbers of key/value heads.
        d_models: widths, the same for every task (default None: each task's own, `WIDTHS`).
        kwargs: more fields of every `SharingSetting`.
    """
    for name, values in (("tasks", tasks), ("kv_heads", kv_heads), ("d_models", d_models)):
        if values is not None and (
            isinstance(values, str | int) or not hasattr(values, "__iter__") or not list(values)
        ):
            raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}: expected some of {list(TASKS)}")
    return [
        SharingSetting(task=t, kv_heads=k, d_model=d, **kwargs)
        for t in tasks
        for d in (WIDTHS[t] if d_models is None else d_models)
        for k in kv_heads
    ]


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
        returns one dict per configuration: task, d_head, kv_heads, heads, value_width, params, relations, seeds,
        accuracy (mean),
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
                "value_width": kv_heads * d_head,
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
    """One line per configuration: numbers read from one position, mean accuracy, each seed's, and per relationship.

    "reads" is kv_heads * d_head: the most numbers the layer can take from one position, however many query heads
    look there.
    """
    summary = summarize(records)
    seeds_width = max([8] + [5 * len(s["accuracies"]) for s in summary])
    header = (
        f"{'configuration':<38} {'params':>7} {'reads':>5} {'mean':>5}   {'per seed':<{seeds_width}} "
        f"per relationship (mean)"
    )
    lines = [header, "-" * (len(header) + 30)]
    for s in summary:
        seeds = " ".join(f"{a:>4.0%}" for a in s["accuracies"])
        lines.append(
            f"{_label(s):<38} {s['params']:>7,} {s['value_width']:>5} {s['accuracy']:>5.0%}   "
            f"{seeds:<{seeds_width}} {_relations(s['relations'], s['relation_accuracy'])}"
        )
    return "\n".join(lines)


def format_looks(records) -> str:
    """Per configuration and relationship: the best head's weight on the needed position, and heads looking there."""
    summary = summarize(records)
    lines = [f"{'configuration':<38} weight of the best head on the needed position (heads with > 0.5 there)"]
    for s in summary:
        looks = list(zip(s["relations"], s["best_look"], s["heads_on"]))
        if s["task"] == "bits":  # every bit sits at i-1: one position, one cell
            looks = [("i-1", s["best_look"][0], s["heads_on"][0])]
        cells = " ".join(f"{n} {w:.2f} ({h:.1f})" for n, w, h in looks)
        lines.append(f"{_label(s):<38} {cells}")
    return "\n".join(lines)
