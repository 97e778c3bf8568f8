"""Tunnel vision: one attention head against several of the same total width, on a task that needs several positions.

The task (`mha.toy.tasks.OffsetCopyTask`): at every position i, name the tokens at i-1, i-2 and i-3, one readout each.
The model (`mha.toy.models.AttentionOnlyModel`): embeddings, one causal attention layer, a residual, linear readouts.
One head of width d_model is compared with several heads of width d_model / heads: same d_model, same parameters.

Parts, each a list of runs (one per setting and seed):
  main       1 head against 4 heads, on the default setting.
  controls   the single head trained 5x and 15x longer, and made 2x and 4x wider.
  vocab      1 head against 4 heads as the vocabulary grows from 2 to 128 tokens (and 1 head trained 5x longer).
  relations  1, 2, 4 and 8 heads as the number of relationships (offsets 1..n) grows from 1 to 6.
  probe      1 head against 4 heads, then a linear probe per head and offset: can the token at that offset be
             read back from the head's output alone? (`mha.toy.probe`)
  lr         the single head at six learning rates, 0.0001 to 0.03.
  depth      one head per layer, 1, 2 and 3 layers: at the same width, and narrower so that the parameters
             match the 4-head model's.
  longer     the single head trained 50x longer (20,000 steps with the default setting).

Examples:
  python -m mha.toy tunnel-vision --seeds 0 1 2 --json runs.json
  python -m mha.toy tunnel-vision --vocab 16 --steps 2000 --heads 1 2 4
  python -m mha.toy tunnel-vision --parts main controls vocab relations --json sweep.json
  python -m mha.toy tunnel-vision --parts main lr --json lr.json
  python -m mha.toy tunnel-vision --positions rope     (lesson 09: how the heads know where; default: learned)
"""

import dataclasses
import time
from dataclasses import dataclass

import torch

from .._trained import once
from .models import AttentionOnlyConfig, build_model, count_parameters
from .probe import format_accuracy, probe_heads
from .tasks import OffsetCopyTask
from .train import TrainConfig, TrainResult, train

PARTS = ("main", "controls", "vocab", "relations", "probe", "lr", "depth", "longer")
CURVE_POINTS = 20  # held-out evaluations per run, evenly spaced: enough for a training curve, cheap to compute


def _heads(h: int) -> str:
    return f"{h} head{'s' if h > 1 else ''}"


@dataclass(frozen=True)
class Setting:
    """One configuration of the experiment: task, model and training, everything but the seed.

    Args:
        heads: attention heads, each of width d_model // heads.
        d_model: features per position.
        vocab: distinct tokens.
        seq: tokens per sequence.
        offsets: the relationships: position i must name the token at i - offset, for each offset.
        steps: training steps, one fresh batch each.
        batch: sequences per batch.
        lr: Adam's learning rate.
        part: which part of the experiment the setting belongs to (see `PARTS`).
        label: a name for the table, e.g. "1 head, 5x steps" (default: "1 head" or "4 heads", and the position
            scheme unless it is the learned table).
        layers: attention layers, each with `heads` heads (default: 1).
        probe: after training, fit a linear probe per head and offset (`mha.toy.probe`) (default: False).
        positions: how the model tells positions apart: "learned" (default), "sinusoidal", "rope" or "none".
    """

    heads: int = 4
    d_model: int = 64
    vocab: int = 64
    seq: int = 16
    offsets: tuple[int, ...] = (1, 2, 3)
    steps: int = 400
    batch: int = 32
    lr: float = 3e-3
    part: str = "main"
    label: str = ""
    layers: int = 1
    probe: bool = False
    positions: str = "learned"

    def __post_init__(self):
        object.__setattr__(self, "offsets", tuple(self.offsets))
        if not self.label:
            scheme = "" if self.positions == "learned" else f", {self.positions}"
            object.__setattr__(self, "label", _heads(self.heads) + scheme)
        # every size checked now, by the classes that use them: a bad one is refused before any training starts
        self.task(), self.model_config(), self.train_config(0)

    def task(self) -> OffsetCopyTask:
        return OffsetCopyTask(self.offsets, self.vocab, self.seq)

    def model_config(self) -> AttentionOnlyConfig:
        relations = len(self.offsets)
        return AttentionOnlyConfig(
            self.vocab, self.seq, self.d_model, self.heads, relations, layers=self.layers, positions=self.positions
        )

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            steps=self.steps, batch=self.batch, lr=self.lr, seed=seed, eval_every=max(1, self.steps // CURVE_POINTS)
        )


@once()
def run(setting: Setting, seed: int, progress: bool = True) -> tuple[dict, TrainResult]:
    """Train one model of `setting` from `seed`; return its record (JSON-ready) and the training result.

    Args:
        setting: the configuration.
        seed: seeds the starting weights and the training batches.
        progress: show a progress bar.

    Shape:
        returns (record, result); record has the keys positions, heads, layers, d_model, d_head, vocab, seq,
        offsets, relations, seed, steps, batch, lr, params, accuracy, relation_accuracy (one per relationship),
        seconds, part, label and curve (step, accuracy and relation_accuracy at each held-out evaluation); with
        setting.probe also probe (per head, the probe's accuracy at each relationship) and probe_seconds.
    """
    model = build_model(setting.model_config(), seed)
    task = setting.task()
    result = train(model, task, setting.train_config(seed), progress=progress)
    record = {
        "part": setting.part,
        "label": setting.label,
        "positions": setting.positions,
        "heads": setting.heads,
        "layers": setting.layers,
        "d_model": setting.d_model,
        "d_head": setting.d_model // setting.heads,
        "vocab": setting.vocab,
        "seq": setting.seq,
        "offsets": list(setting.offsets),
        "relations": task.names,
        "seed": seed,
        "steps": setting.steps,
        "batch": setting.batch,
        "lr": setting.lr,
        "params": count_parameters(model),
        "accuracy": result.accuracy,
        "relation_accuracy": result.relation_accuracy,
        "seconds": result.seconds,
        "curve": {key: [h[key] for h in result.history] for key in ("step", "accuracy", "relation_accuracy")},
    }
    if setting.probe:
        start = time.perf_counter()
        record["probe"] = probe_heads(result.model, task)
        record["probe_seconds"] = time.perf_counter() - start
    return record, result


def run_all(settings, seeds, progress: bool = True, keep_models: bool = False, log=None):
    """Every setting from every seed, in order.

    Args:
        settings: the configurations.
        seeds: the seeds, the same for every setting.
        progress: show a progress bar per run.
        keep_models: also return the training results (with the trained models), in the same order.
        log: a text stream (e.g. sys.stderr) that gets one table row per finished run; None for silence.

    Shape:
        returns a list of records (see `run`), or (records, results) with keep_models.
    """
    records, results = [], []
    for setting in settings:
        for seed in seeds:
            record, result = run(setting, seed, progress)
            records.append(record)
            if keep_models:
                results.append(result)
            if log is not None:
                print(f"{setting.part:>9} | {_row(record)}", file=log, flush=True)
    return (records, results) if keep_models else records


def main_settings(base: Setting = Setting(), heads=(1, 4)) -> list[Setting]:
    """The main comparison: the base setting with each number of heads (d_model and parameters unchanged)."""
    return [dataclasses.replace(base, heads=h, label="", part="main") for h in heads]


def control_settings(base: Setting = Setting(), longer=(5, 15), wider=(2, 4)) -> list[Setting]:
    """The easy excuses, tested on one head: train it `longer` times as many steps, make it `wider` times as wide."""
    one = dataclasses.replace(base, heads=1, part="controls")
    return [dataclasses.replace(one, steps=base.steps * k, label=f"1 head, {k}x steps") for k in longer] + [
        dataclasses.replace(one, d_model=base.d_model * k, label=f"1 head, {k}x width") for k in wider
    ]


def vocab_settings(
    base: Setting = Setting(), vocabs=(2, 4, 8, 16, 32, 64, 128), heads=(1, 4), longer=(5,)
) -> list[Setting]:
    """Accuracy against vocabulary size, and the single head trained `longer` times as long at each size."""
    settings = []
    for v in vocabs:
        for h in heads:
            settings.append(dataclasses.replace(base, vocab=v, heads=h, part="vocab", label=f"{_heads(h)}, vocab {v}"))
        for k in longer:
            settings.append(
                dataclasses.replace(
                    base, vocab=v, heads=1, steps=base.steps * k, part="vocab", label=f"1 head, {k}x steps, vocab {v}"
                )
            )
    return settings


def relation_settings(base: Setting = Setting(), counts=(1, 2, 3, 4, 6), heads=(1, 2, 4, 8)) -> list[Setting]:
    """Accuracy against the number of relationships (offsets 1..n), for several numbers of heads."""
    return [
        dataclasses.replace(
            base,
            offsets=tuple(range(1, n + 1)),
            heads=h,
            part="relations",
            label=f"{_heads(h)}, {n} relation{'s' if n > 1 else ''}",
        )
        for n in counts
        for h in heads
    ]


def probe_settings(base: Setting = Setting(), heads=(1, 4)) -> list[Setting]:
    """The main comparison again, each model then probed head by head (`mha.toy.probe`)."""
    return [dataclasses.replace(base, heads=h, label="", part="probe", probe=True) for h in heads]


def lr_settings(base: Setting = Setting(), rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)) -> list[Setting]:
    """Was the single head just badly tuned? It, at each of `rates` (Adam's learning rate)."""
    return [dataclasses.replace(base, heads=1, lr=lr, part="lr", label=f"1 head, lr {lr:g}") for lr in rates]


def equal_parameter_width(base: Setting, layers: int, heads: int = 1) -> int:
    """The d_model (a multiple of heads) at which `layers` layers of `heads` heads have the parameters nearest the
    base setting's, with its own heads and one layer."""

    def parameters(setting: Setting) -> int:
        return count_parameters(build_model(setting.model_config(), 0))

    target = parameters(base)
    widths = range(heads, base.d_model + 1, heads)
    return min(
        widths, key=lambda d: abs(parameters(dataclasses.replace(base, d_model=d, heads=heads, layers=layers)) - target)
    )


def depth_settings(base: Setting = Setting(), layers=(1, 2, 3)) -> list[Setting]:
    """Can depth stand in for heads? One head per layer, stacked: at the base width (more parameters with each
    layer), and, for two layers or more, narrowed to the parameters of the base setting."""
    one = dataclasses.replace(base, heads=1, part="depth")
    settings = []
    for n in layers:
        name = f"1 head x {n} layer{'s' if n > 1 else ''}"
        settings.append(dataclasses.replace(one, layers=n, label=name))
        if n > 1:
            width = equal_parameter_width(base, n)
            settings.append(dataclasses.replace(one, layers=n, d_model=width, label=f"{name}, d_model {width}"))
    return settings


def longer_settings(base: Setting = Setting(), factor: int = 50) -> list[Setting]:
    """Where the single head goes when trained `factor` times as many steps."""
    label = f"1 head, {factor}x steps"
    return [dataclasses.replace(base, heads=1, steps=base.steps * factor, part="longer", label=label)]


def settings_for(parts, base: Setting = Setting(), heads=(1, 4)) -> list[Setting]:
    """The settings of the named parts, in the order given."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown}: expected some of {list(PARTS)}")
    builders = {
        "main": lambda: main_settings(base, heads),
        "controls": lambda: control_settings(base),
        "vocab": lambda: vocab_settings(base),
        "relations": lambda: relation_settings(base),
        "probe": lambda: probe_settings(base, heads),
        "lr": lambda: lr_settings(base),
        "depth": lambda: depth_settings(base),
        "longer": lambda: longer_settings(base),
    }
    return [setting for part in parts for setting in builders[part]()]


def weight_by_offset(weights: torch.Tensor, max_offset: int) -> torch.Tensor:
    """Each head's mean attention weight at each distance back, q_pos - k_pos = 0, 1, ..., max_offset.

    Averaged over the batch and over the queries that have every one of those distances (q_pos >= max_offset), so
    that each column is averaged over the same queries.

    Args:
        weights: per-head attention weights, e.g. from `model(tokens, need_weights=True)`.
        max_offset: the largest distance back to report.

    Shape:
        weights (batch, heads, q_pos, k_pos); returns (heads, max_offset + 1).
    """
    if weights.ndim != 4 or weights.shape[-2] <= max_offset:
        raise ValueError(
            f"weights must have shape (batch, heads, q_pos, k_pos) with q_pos > max_offset={max_offset}, "
            f"got shape {tuple(weights.shape)}"
        )
    queries = torch.arange(max_offset, weights.shape[-2])  # (queries,) those with every offset available
    columns = [weights[:, :, queries, queries - d].mean(dim=(0, 2)) for d in range(max_offset + 1)]  # (heads,) each
    return torch.stack(columns, dim=1)  # (heads, max_offset + 1)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _relations(names, accuracies) -> str:
    return " ".join(f"{name} {_pct(a)}" for name, a in zip(names, accuracies))


def _row(record: dict, width: int = 22) -> str:
    return (
        f"{record['label']:<{width}} {record['d_model']:>7} {record['d_head']:>6} {record['vocab']:>5} "
        f"{record['params']:>7,} {record['steps']:>6} {record['seed']:>4} {_pct(record['accuracy']):>8}   "
        f"{_relations(record['relations'], record['relation_accuracy']):<28} [took {record['seconds']:.1f} s]"
    )


def format_table(records) -> str:
    """One line per run: configuration, parameters, steps, seed, accuracy overall and per relationship, seconds.

    Accuracies are printed as whole percents; seconds as `[took 1.2 s]`, so that notebooks can mask them.
    """
    width = max([22] + [len(r["label"]) for r in records])
    header = (
        f"{'configuration':<{width}} {'d_model':>7} {'d_head':>6} {'vocab':>5} {'params':>7} {'steps':>6} "
        f"{'seed':>4} {'accuracy':>8}   {'per relationship':<28} time"
    )
    return "\n".join([header, "-" * len(header)] + [_row(r, width) for r in records])


def summarize(records) -> list[dict]:
    """Mean over seeds of each configuration (same label and part), in first-seen order.

    Shape:
        returns one dict per configuration: part, label, heads, d_model, vocab, relations, params, steps, seeds,
        accuracy (mean), relation_accuracy (mean per relationship), accuracies (one per seed), seconds (mean).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["part"], r["label"]), []).append(r)
    summary = []
    for (part, label), runs in groups.items():
        first, n = runs[0], len(runs)
        summary.append(
            {
                "part": part,
                "label": label,
                "heads": first["heads"],
                "d_model": first["d_model"],
                "vocab": first["vocab"],
                "relations": first["relations"],
                "params": first["params"],
                "steps": first["steps"],
                "seeds": [r["seed"] for r in runs],
                "accuracy": sum(r["accuracy"] for r in runs) / n,
                "relation_accuracy": [sum(a) / n for a in zip(*(r["relation_accuracy"] for r in runs))],
                "accuracies": [r["accuracy"] for r in runs],
                "seconds": sum(r["seconds"] for r in runs) / n,
            }
        )
    return summary


def format_summary(records) -> str:
    """One line per configuration: mean accuracy over seeds, each seed's accuracy, and the mean per relationship."""
    summary = summarize(records)
    width = max([22] + [len(s["label"]) for s in summary])
    seeds_width = max([8] + [5 * len(s["accuracies"]) for s in summary])
    header = (
        f"{'configuration':<{width}} {'params':>7} {'steps':>6} {'mean':>5}   "
        f"{'per seed':<{seeds_width}} per relationship (mean)"
    )
    lines = [header, "-" * (len(header) + 12)]
    for s in summary:
        seeds = " ".join(f"{_pct(a):>4}" for a in s["accuracies"])
        lines.append(
            f"{s['label']:<{width}} {s['params']:>7,} {s['steps']:>6} {_pct(s['accuracy']):>5}   "
            f"{seeds:<{seeds_width}} {_relations(s['relations'], s['relation_accuracy'])}"
        )
    return "\n".join(lines)


def format_probe(records) -> str:
    """One line per probed head: how well a linear readout of its output alone names the token at each offset.

    Accuracies are printed as whole percents, or "chance" within a few points of guessing (1 / vocab; see
    `mha.toy.probe.format_accuracy`).
    """
    probed = [r for r in records if "probe" in r]
    width = max([13] + [len(r["label"]) for r in probed])
    names = probed[0]["relations"] if probed else []
    header = f"{'configuration':<{width}} {'seed':>4} {'head':>4} {'d_head':>6}   " + " ".join(f"{n:>6}" for n in names)
    lines = [header, "-" * len(header)]
    for r in probed:
        for h, accuracies in enumerate(r["probe"]):
            cells = " ".join(f"{format_accuracy(a, r['vocab']):>6}" for a in accuracies)
            lines.append(f"{r['label']:<{width}} {r['seed']:>4} {h:>4} {r['d_head']:>6}   {cells}")
    return "\n".join(lines)
