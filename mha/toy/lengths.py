"""Positions and length: each position scheme trained at one length, then tested on sequences 2x and 4x as long.

Two tasks whose answers depend on order, the same model for every scheme (`mha.toy.models.AttentionOnlyModel`:
embeddings, one causal attention layer of 4 heads, a residual, one readout per relationship) and the same training:

  offset     lesson 02's task: at every position i, name the tokens at i-1, i-2 and i-3. Trained on sequences of
             16 tokens; tested on 16, 32 and 64. Only the position tells a head where "three back" is.
  language   lesson 04's sentences one after another, as in a text (`SentenceStream`); at every "it", name the
             product, the company and whether the clause contrasts. The sentences before hold other products,
             companies and connectives: the right one is the one that came last. Trained on 48 tokens (about three
             sentences); tested on 48, 96 and 192.

The schemes (`mha.positions`): none, learned (a trained table), sinusoidal (a fixed table), rope (queries and
keys turned by their positions). A learned table has no trained rows beyond the trained length, so every model is
built for the longest test (its `seq` is 4x the trained length): the learned table's rows past the trained
length are there, and still hold their random starting values, since no training batch ever reached them (each
record says how many rows were left untouched).

Under a causal mask, position i of a longer sequence sees exactly what it saw in a trained-length one as long as
i is below the trained length; so each record gives the accuracy over every position and over the new positions
alone (i >= trained length), and the accuracy at each position. A task's `chance` is the accuracy of a guess that
ignores the sequence.

Each model is also scored with a window: every query may see only the keys less than the trained length back
(`window_mask`), so that no head meets a distance it never met in training. What the window repairs was caused by
the new distances; what it does not, by the new positions.

Examples:
  python -m mha.toy positions --seeds 0 1 2 --json lengths.json
  python -m mha.toy positions --tasks offset --schemes rope learned --seeds 0
"""

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from .._validate import check_int, check_positive, head_size
from ..heads import split_heads
from ..masks import causal_mask
from ..positions import SCHEMES, RotaryMultiHeadAttention, apply_rope, check_scheme
from .language import COMPANIES, CONTRAST, INDEX, PAD, PRODUCTS, RELATIONS, SAME, TemplateLanguage
from .models import AttentionOnlyConfig, build_model, count_parameters
from .tasks import IGNORE_INDEX, OffsetCopyTask
from .train import TrainConfig, train

TASKS = ("offset", "language")
FACTORS = (1, 2, 4)  # test lengths, in multiples of the trained length
EVAL_SEED = 1_000_003  # the held-out sequences: the same for every scheme and seed (as mha.toy.train's)


@dataclass(frozen=True)
class SentenceStream:
    """Lesson 04's sentences one after another, as in a text; at every "it", the questions about its own sentence.

    A sequence is the first `seq` tokens of a stream of sentences drawn as `TemplateLanguage` draws them; every
    "it" in it is asked which product it refers to, which company released it and whether its clause contrasts.
    The sentences before hold other products, companies and connectives, which differ from the right ones only in
    where they are: the answer is the product (company, connective) that came last before "it". A head that cannot
    tell where a word is cannot tell which one that is.

    Args:
        seq: tokens per sequence.
    """

    seq: int = 48

    relations = len(RELATIONS)
    names = RELATIONS
    vocab = TemplateLanguage.vocab

    def __post_init__(self):
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise ValueError(f"seq must be a positive integer, got {self.seq!r}")

    @property
    def chance(self) -> float:
        """The accuracy of a guess that ignores the sequence: products, companies and connectives are drawn
        uniformly, so any fixed answer is right 1 time in 10, 8 and 2; the mean over the three questions."""
        return (1 / len(PRODUCTS) + 1 / len(COMPANIES) + len(CONTRAST) / len(CONTRAST + SAME)) / 3

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of streams and their targets; the interface of `mha.toy.train.train`.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, relations), int64; targets are IGNORE_INDEX
            everywhere but at each "it".
        """
        check_int("batch", batch)
        language = TemplateLanguage()
        tokens = torch.full((batch, self.seq), PAD)
        targets = torch.full((batch, self.seq, self.relations), IGNORE_INDEX)
        for b in range(batch):
            words: list[str] = []
            while len(words) < self.seq:
                sentence = language.random_sentence(generator)
                if len(words) + sentence.it < self.seq:  # its "it" lies inside the sequence: ask there
                    targets[b, len(words) + sentence.it] = torch.tensor([INDEX[sentence.answers[r]] for r in RELATIONS])
                words += sentence.words
            tokens[b] = torch.tensor([INDEX[w] for w in words[: self.seq]])
        return tokens, targets


@dataclass(frozen=True)
class LengthSetting:
    """One configuration: task, position scheme, model and training (everything but the seed).

    Args:
        task: "offset" or "language" (`SentenceStream`).
        positions: the position scheme, one of `mha.positions.SCHEMES`.
        trained: the sequence length trained on.
        factors: test lengths, in multiples of `trained`.
        heads: attention heads.
        d_model: features per position.
        steps: training steps, one fresh batch each.
        batch: sequences per batch.
        lr: Adam's learning rate.
        eval_batch: held-out sequences per test length.
    """

    task: str = "offset"
    positions: str = "learned"
    trained: int = 16
    factors: tuple[int, ...] = FACTORS
    heads: int = 4
    d_model: int = 64
    steps: int = 400
    batch: int = 32
    lr: float = 3e-3
    eval_batch: int = 512

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {list(TASKS)}")
        check_scheme(self.positions)
        if isinstance(self.factors, str) or not hasattr(self.factors, "__iter__"):
            raise ValueError(f"factors must be a list of positive integers, e.g. (1, 2, 4), got {self.factors!r}")
        object.__setattr__(self, "factors", tuple(self.factors))
        if not self.factors or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in self.factors):
            raise ValueError(f"factors must be positive integers, got {self.factors!r}")
        for name in ("trained", "heads", "d_model", "steps", "batch", "eval_batch"):
            check_int(name, getattr(self, name))
        head_size(self.d_model, self.heads)
        check_positive("lr", self.lr, "a learning rate")

    @property
    def longest(self) -> int:
        return self.trained * max(self.factors)

    def make_task(self, seq: int):
        """The task at `seq` tokens per sequence."""
        if self.task == "offset":
            return OffsetCopyTask((1, 2, 3), vocab=64, seq=seq)
        return SentenceStream(seq)

    def model_config(self) -> AttentionOnlyConfig:
        task = self.make_task(self.trained)
        return AttentionOnlyConfig(
            task.vocab, self.longest, self.d_model, self.heads, task.relations, positions=self.positions
        )


def offset_setting(positions: str, **changes) -> LengthSetting:
    """Lesson 02's offset task and model (16 tokens, 4 heads of 16 features, batches of 32), trained 1,500 steps.

    Lesson 02 trains 400 steps; the sinusoidal table needs about 1,500 to reach 100% at the trained length on
    every seed, so every scheme gets 1,500 here.
    """
    return LengthSetting(task="offset", positions=positions, **{"steps": 1500, **changes})


def language_setting(positions: str, **changes) -> LengthSetting:
    """Streams of lesson 04's sentences: 48 tokens, 4 heads of 16 features, 600 steps of 64 streams (lesson 04's
    steps and batch)."""
    defaults = {"trained": 48, "steps": 600, "batch": 64, "eval_batch": 256}
    return LengthSetting(task="language", positions=positions, **{**defaults, **changes})


def settings_for(tasks=TASKS, schemes=SCHEMES, **changes) -> list[LengthSetting]:
    """Every task with every scheme, in order."""
    makers = {"offset": offset_setting, "language": language_setting}
    unknown = [t for t in tasks if t not in makers]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}: expected some of {list(TASKS)}")
    return [makers[t](s, **changes) for t in tasks for s in schemes]


def window_mask(seq: int, window: int) -> torch.Tensor:
    """True where the key is less than `window` positions back from the query (or ahead of it: the causal mask
    of the model hides those).

    Shape:
        returns (seq, seq) bool, indexed (q_pos, k_pos).
    """
    check_int("seq", seq)
    check_int("window", window)
    positions = torch.arange(seq)
    return positions[:, None] - positions[None, :] < window  # (q_pos, k_pos)


@torch.no_grad()
def score(model, task, trained: int, eval_batch: int, window: int | None = None) -> dict:
    """Accuracy of a trained model on held-out sequences of `task`, overall, on new positions, and by position.

    Args:
        model: maps tokens (batch, seq) to logits (batch, seq, relations, vocab); takes `attn_mask` if `window`.
        task: the task at the test length.
        trained: the length trained on: positions from here on are new.
        eval_batch: held-out sequences.
        window: let each query see only the keys less than this many positions back (default: None, all of them).

    Shape:
        returns {"accuracy": float, "relation_accuracy": [float] * relations, "new_accuracy": float or None,
        "by_position": [float or None] * seq, "answers_by_position": [int] * seq}: accuracies over the answers
        that exist (None where none does), and how many answers each position has.
    """
    tokens, targets = task.sample(eval_batch, torch.Generator().manual_seed(EVAL_SEED))  # (batch, seq), (.., rel.)
    was_training = model.training
    model.eval()
    mask = None if window is None else window_mask(tokens.shape[1], window)
    answers = model(tokens, attn_mask=mask).argmax(dim=-1)  # (batch, seq, relations)
    model.train(was_training)
    valid = targets != IGNORE_INDEX  # (batch, seq, relations)
    right = (answers == targets) & valid

    def share(r, v):
        return (r.sum() / v.sum()).item() if v.any() else None

    per_relation = right.sum(dim=(0, 1)) / valid.sum(dim=(0, 1))  # (relations,)
    return {
        "accuracy": per_relation.mean().item(),
        "relation_accuracy": per_relation.tolist(),
        "new_accuracy": share(right[:, trained:], valid[:, trained:]),
        "by_position": [share(right[:, i], valid[:, i]) for i in range(tokens.shape[1])],
        "answers_by_position": valid.sum(dim=(0, 2)).tolist(),
    }


def accuracy_by_position(score: dict, width: int = 1) -> tuple[list[int], list[float | None]]:
    """A `score`'s accuracy by position, pooled over bins of `width` positions (each answer counts once).

    Args:
        score: one entry of a record's "scores" or "window_scores".
        width: positions per bin (default: 1, every position apart).

    Returns:
        (the first position of each bin, the accuracy over the bin's answers, None for a bin without any).
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    accuracies, answers = score["by_position"], score["answers_by_position"]
    starts, pooled = list(range(0, len(answers), width)), []
    for start in starts:
        n = sum(answers[start : start + width])
        right = sum(a * c for a, c in zip(accuracies[start : start + width], answers[start : start + width]) if c)
        pooled.append(right / n if n else None)
    return starts, pooled


@torch.no_grad()
def scores_by_offset(model, tokens: torch.Tensor) -> torch.Tensor:
    """Each head's mean score (before the softmax) at each distance back, q_pos - k_pos = 0, 1, ..., seq - 1.

    The scores are what the model's attention layer computes, RoPE's turn included when the layer has one; each
    distance is averaged over the batch and over every query that has a key that far back.

    Args:
        model: an `AttentionOnlyModel`.
        tokens: the sequences.

    Shape:
        tokens (batch, seq); returns (heads, seq).
    """
    layer = model.attention
    x = model.embed(tokens)  # (batch, seq, d_model)
    q, k, _ = (split_heads(t, layer.heads) for t in layer.project(x, x, x))  # (batch, heads, seq, d_head) each
    if isinstance(layer, RotaryMultiHeadAttention):
        q, k = apply_rope(q, base=layer.base), apply_rope(k, base=layer.base)
    scores = q @ k.transpose(-2, -1) / math.sqrt(layer.d_head)  # (batch, heads, q_pos, k_pos)
    by_distance = [scores.diagonal(offset=-d, dim1=-2, dim2=-1).mean(dim=(0, 2)) for d in range(tokens.shape[1])]
    return torch.stack(by_distance, dim=1)  # (heads, seq)


@torch.no_grad()
def looks_by_position(model) -> torch.Tensor | None:
    """Where each head looks from each query position by position alone: the distance back to its favourite key.

    With a table added to the tokens (learned, sinusoidal), a head's score for a key has a part that depends on the
    two positions alone: the table's rows, projected as the layer projects any input (biases included). A head that
    has learned "three back" from the positions gives that part its highest value three back.

    Args:
        model: an `AttentionOnlyModel`.

    Shape:
        returns (heads, seq) int64, seq the model's positions: for each head and query position q_pos, q_pos -
        k_pos of the key k_pos <= q_pos with the highest position-only score; None for a scheme with no table.
    """
    if model.position_embedding is None:
        return None
    layer, seq = model.attention, model.config.seq
    rows = model.position_embedding(torch.arange(seq))[None].to(layer.in_proj.weight.dtype)  # (1, seq, d_model)
    q, k, _ = layer.project(rows, rows, rows)  # (1, seq, d_model) each: these models share no keys
    scores = split_heads(q, layer.heads) @ split_heads(k, layer.heads).transpose(-2, -1)  # (1, heads, q_pos, k_pos)
    scores = scores[0].masked_fill(~causal_mask(seq), -math.inf)  # keys ahead of the query cannot be seen
    return torch.arange(seq) - scores.argmax(dim=-1)  # (heads, q_pos): distance back to the favourite key


def most_frequent_guess(task: OffsetCopyTask, trained: int, eval_batch: int) -> float:
    """Accuracy on the new positions of a guess that knows which tokens came before, but not where.

    At position i it names the token seen most often at positions 0..i (the lowest token id among ties), for every
    relationship: what a head without positions can still do. Scored on `score`'s held-out sequences.

    Args:
        task: the offset task at the test length.
        trained: the length trained on: positions from here on are new.
        eval_batch: held-out sequences.
    """
    tokens, targets = task.sample(eval_batch, torch.Generator().manual_seed(EVAL_SEED))  # (batch, seq), (.., rel.)
    counts = torch.zeros(tokens.shape[0], task.vocab).scatter_add_(
        1, tokens[:, :trained], torch.ones_like(tokens[:, :trained], dtype=torch.float32)
    )
    right = valid = 0
    for i in range(trained, tokens.shape[1]):
        counts[torch.arange(tokens.shape[0]), tokens[:, i]] += 1  # positions 0..i seen
        guess = counts.argmax(dim=1)  # (batch,): the most frequent token so far
        answers = targets[:, i]  # (batch, relations)
        right += int(((answers == guess[:, None]) & (answers != IGNORE_INDEX)).sum())
        valid += int((answers != IGNORE_INDEX).sum())
    return right / valid


def run(setting: LengthSetting, seed: int, progress: bool = True) -> tuple[dict, torch.nn.Module]:
    """Train one model at the trained length, then score it at every test length; return its record and the model.

    Args:
        setting: the configuration.
        seed: seeds the starting weights and the training batches.
        progress: show a progress bar.

    Shape:
        returns (record, model); record has the keys task, positions, seed, trained, heads, d_model, steps, batch,
        lr, params, lengths (the test lengths), scores (one `score` dict per test length), window_scores (the same
        with every query limited to the keys less than `trained` back), untouched_rows (for a
        learned table: rows past the trained length still equal to their starting values; else None),
        table_rows (rows of a learned table; else None), looks (`looks_by_position` as lists, one per head, for
        a scheme that adds a table; else None) and seconds.
    """
    model = build_model(setting.model_config(), seed)
    table = model.position_embedding.weight.detach().clone() if setting.positions == "learned" else None
    start = time.perf_counter()
    train_config = TrainConfig(
        steps=setting.steps,
        batch=setting.batch,
        lr=setting.lr,
        seed=seed,
        eval_every=setting.steps,
        eval_batch=setting.eval_batch,
    )
    train(model, setting.make_task(setting.trained), train_config, progress=progress)
    lengths = [setting.trained * f for f in setting.factors]
    tasks = [setting.make_task(n) for n in lengths]
    scores = [score(model, task, setting.trained, setting.eval_batch) for task in tasks]
    windowed = [score(model, task, setting.trained, setting.eval_batch, window=setting.trained) for task in tasks]
    looks = looks_by_position(model)
    untouched = None
    if table is not None:
        after = model.position_embedding.weight.detach()
        untouched = int((after == table).all(dim=-1)[setting.trained :].sum())
    record = {
        "task": setting.task,
        "positions": setting.positions,
        "seed": seed,
        "trained": setting.trained,
        "heads": setting.heads,
        "d_model": setting.d_model,
        "steps": setting.steps,
        "batch": setting.batch,
        "lr": setting.lr,
        "params": count_parameters(model),
        "lengths": lengths,
        "scores": scores,
        "window_scores": windowed,
        "untouched_rows": untouched,
        "table_rows": setting.longest if table is not None else None,
        "looks": None if looks is None else looks.tolist(),
        "seconds": time.perf_counter() - start,
    }
    return record, model


def _record_only(setting: LengthSetting, seed: int) -> dict:
    torch.set_num_threads(1)  # one thread per worker process: the workers share the cores
    return run(setting, seed, progress=False)[0]


def run_all(settings, seeds, progress: bool = True, log=None, keep_models: bool = False, jobs: int = 1):
    """Every setting from every seed, in order.

    Args:
        settings: the configurations.
        seeds: the seeds, the same for every setting.
        progress: show a progress bar per run (only with jobs=1).
        log: a text stream (e.g. sys.stderr) that gets one line per finished run; None for silence.
        keep_models: also return the trained models, in the same order (only with jobs=1).
        jobs: runs at a time, each in a process of its own with one thread (default: 1, one after the other).

    Shape:
        returns a list of records (see `run`), or (records, models) with keep_models.
    """
    check_int("jobs", jobs)
    for seed in seeds:
        check_int("seed", seed, minimum=0)
    for setting in settings:
        if not isinstance(setting, LengthSetting):
            raise TypeError(f"settings must be LengthSettings (see settings_for), got {type(setting).__name__}")
    pairs = [(setting, seed) for setting in settings for seed in seeds]
    if jobs > 1:
        if keep_models:
            raise ValueError("keep_models needs jobs=1: the models of other processes are not sent back")
        context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no state shared by a fork
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            records = []
            for record in pool.map(_record_only, *zip(*pairs)):
                records.append(record)
                if log is not None:
                    print(format_run(record), file=log, flush=True)
        return records
    records, models = [], []
    for setting, seed in pairs:
        record, model = run(setting, seed, progress)
        records.append(record)
        if keep_models:
            models.append(model)
        if log is not None:
            print(format_run(record), file=log, flush=True)
    return (records, models) if keep_models else records


def _pct(x) -> str:
    return "  n/a" if x is None else f"{100 * x:4.0f}%"


def format_run(record: dict) -> str:
    """One line: task, scheme, seed, accuracy at each test length (new positions in brackets), seconds."""
    cells = " ".join(
        f"{n:>4}: {_pct(s['accuracy'])} ({_pct(s['new_accuracy'])})"
        for n, s in zip(record["lengths"], record["scores"])
    )
    name = f"{record['task']:<8} {record['positions']:<10} seed {record['seed']:<3}"
    return f"{name} {cells}   [took {record['seconds']:.1f} s]"


def summarize(records, scores: str = "scores") -> list[dict]:
    """Mean, lowest and highest over seeds of each (task, scheme) at each test length, in first-seen order.

    Args:
        records: the runs.
        scores: "scores" (every key visible) or "window_scores" (keys less than the trained length back).

    Shape:
        returns one dict per (task, scheme): task, positions, trained, lengths, params, seeds, and per length
        lists mean, low, high (accuracy over all positions) and new_mean, new_low, new_high (new positions only;
        None at the trained length).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["positions"]), []).append(r)
    summary = []
    for (task, positions), runs in groups.items():
        first = runs[0]
        entry = {
            "task": task,
            "positions": positions,
            "trained": first["trained"],
            "lengths": first["lengths"],
            "params": first["params"],
            "seeds": [r["seed"] for r in runs],
        }
        for key, prefix in (("accuracy", ""), ("new_accuracy", "new_")):
            columns = [[r[scores][i][key] for r in runs] for i in range(len(first["lengths"]))]
            entry[prefix + "mean"] = [None if None in c else sum(c) / len(c) for c in columns]
            entry[prefix + "low"] = [None if None in c else min(c) for c in columns]
            entry[prefix + "high"] = [None if None in c else max(c) for c in columns]
        summary.append(entry)
    return summary


def format_summary(records, new_positions: bool = False, scores: str = "scores") -> str:
    """The accuracy table: one row per task and scheme, one column per test length, mean [lowest-highest] over seeds.

    Args:
        records: the runs.
        new_positions: score only the positions at or past the trained length (the trained-length column is then
            the accuracy over all its positions).
        scores: "scores" (every key visible) or "window_scores" (keys less than the trained length back).
    """
    summary = summarize(records, scores)
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        rows = [s for s in summary if s["task"] == task]
        trained, lengths = rows[0]["trained"], rows[0]["lengths"]
        heads = [f"{n} ({n // trained}x)" for n in lengths]
        seeds = len(rows[0]["seeds"])
        what = "new positions only" if new_positions else "all positions"
        what += ", window of the trained length" if scores == "window_scores" else ""
        over = f"{seeds} seed{'s' if seeds > 1 else ''}"
        lines.append(f"{task}: trained on {trained} tokens; mean [lowest-highest] over {over}; {what}")
        header = f"{'scheme':<11}{'params':>8}  " + "".join(f"{h:<21}" for h in heads)
        lines += [header, "-" * len(header.rstrip())]
        for s in rows:
            cells = []
            for i in range(len(lengths)):
                pick = "new_" if new_positions and i > 0 else ""
                mean, low, high = s[pick + "mean"][i], s[pick + "low"][i], s[pick + "high"][i]
                cells.append(f"{_pct(mean).strip():>4} [{_pct(low).strip()}-{_pct(high).strip()}]".ljust(21))
            lines.append(f"{s['positions']:<11}{s['params']:>8,}  " + "".join(cells))
        lines.append("")
    return "\n".join(lines).rstrip()
