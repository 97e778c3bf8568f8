"""A small training loop for the course's synthetic tasks: Adam on fresh batches, scored on a fixed held-out set.

Any task with `sample(batch, generator) -> (tokens, targets)` and any model mapping tokens (batch, seq) to logits
(batch, seq, relations, vocab) will do. Targets equal to `mha.toy.tasks.IGNORE_INDEX` count nowhere: not in the loss,
not in any accuracy.

Everything random comes from the seed: the batches from a generator seeded with `seed`, the held-out set from one
seeded with `eval_seed` (the same for every run, so that runs are scored on the same sequences). The starting
weights are the caller's (see `mha.toy.models.build_model`). Training runs on `threads` CPU threads, one by default:
these models are too small to gain from more, and a fixed count keeps sums in the same order on every machine.
"""

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._runtime import threads
from .tasks import IGNORE_INDEX


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Args:
        steps: optimizer steps, one fresh batch each.
        batch: sequences per batch.
        lr: Adam's learning rate.
        seed: seeds the training batches.
        eval_every: score the held-out set every this many steps (and after the last step).
        eval_batch: sequences in the held-out set.
        eval_seed: seeds the held-out set; keep it fixed to score every run on the same sequences.
        threads: CPU threads while training (None: leave torch's setting alone).
    """

    steps: int = 1000
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    eval_every: int = 100
    eval_batch: int = 512
    eval_seed: int = 1_000_003  # far from the small training seeds, so no run trains on the held-out batches
    threads: int | None = 1

    def __post_init__(self):
        for name in ("steps", "batch", "eval_every", "eval_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, int | float)
            or not (math.isfinite(self.lr) and self.lr > 0)
        ):
            raise ValueError(f"lr must be a finite number above 0, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a whole number of 0 or more, got {self.seed!r}")


@dataclass
class TrainResult:
    """What a training run leaves behind.

    Args:
        model: the trained model (in eval mode).
        accuracy: held-out accuracy after the last step, the mean over relationships.
        relation_accuracy: held-out accuracy of each relationship after the last step.
        seconds: wall-clock time of the training loop, evaluations included.
        history: one entry per evaluation: step, train_loss (mean since the last evaluation), loss and accuracy
            on the held-out set, relation_accuracy.
    """

    model: torch.nn.Module
    accuracy: float
    relation_accuracy: list[float]
    seconds: float
    history: list[dict] = field(default_factory=list)


@torch.no_grad()
def evaluate(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> dict:
    """Loss and accuracy of a model on a fixed set of sequences, overall and per relationship.

    Args:
        model: maps tokens to logits.
        tokens: the sequences.
        targets: the answers; IGNORE_INDEX where a relationship has none.

    Shape:
        tokens (batch, seq), targets (batch, seq, relations); the model returns (batch, seq, relations, vocab).
        Returns {"loss": float, "accuracy": float, "relation_accuracy": [float] * relations}; accuracy is the
        mean of relation_accuracy.
    """
    was_training = model.training
    model.eval()
    logits = model(tokens)  # (batch, seq, relations, vocab)
    model.train(was_training)
    valid = targets != IGNORE_INDEX  # (batch, seq, relations)
    correct = (logits.argmax(dim=-1) == targets) & valid  # (batch, seq, relations)
    per_relation = correct.sum(dim=(0, 1)) / valid.sum(dim=(0, 1))  # (relations,)
    return {
        "loss": loss_fn(logits, targets).item(),
        "accuracy": per_relation.mean().item(),
        "relation_accuracy": per_relation.tolist(),
    }


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every (position, relationship) that has an answer, all weighted alike.

    Args:
        logits: the model's scores for every token.
        targets: the answers; IGNORE_INDEX where there is none.

    Shape:
        logits (batch, seq, relations, vocab), targets (batch, seq, relations); returns a scalar.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits (batch, seq, relations, vocab) and targets (batch, seq, relations) disagree: "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    return F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=IGNORE_INDEX)


def train(model: torch.nn.Module, task, config: TrainConfig = TrainConfig(), progress: bool = True) -> TrainResult:
    """Train `model` on `task` with Adam, a fresh batch every step; score it on a fixed held-out set.

    Args:
        model: maps tokens to logits; trained in place.
        task: has `sample(batch, generator)` returning tokens and targets (e.g. `mha.toy.tasks.OffsetCopyTask`).
        config: steps, batch size, learning rate, seeds.
        progress: show a progress bar.

    Shape:
        task.sample gives tokens (batch, seq) and targets (batch, seq, relations); the model maps tokens to logits
        (batch, seq, relations, vocab). Returns a `TrainResult`.
    """
    with threads(config.threads):
        return _train(model, task, config, progress)


def _train(model, task, config, progress):
    eval_tokens, eval_targets = task.sample(config.eval_batch, torch.Generator().manual_seed(config.eval_seed))
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history, running, seen = [], 0.0, 0
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(1, config.steps + 1), disable=not progress, leave=False, mininterval=0.5)
    for step in bar:
        tokens, targets = task.sample(config.batch, generator)  # (batch, seq), (batch, seq, relations)
        loss = loss_fn(model(tokens), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running, seen = running + loss.item(), seen + 1
        if step % config.eval_every == 0 or step == config.steps:
            scores = evaluate(model, eval_tokens, eval_targets)
            history.append({"step": step, "train_loss": running / seen, **scores})
            running, seen = 0.0, 0
            bar.set_postfix(loss=f"{scores['loss']:.3f}", acc=f"{scores['accuracy']:.1%}", refresh=False)
    seconds = time.perf_counter() - start
    model.eval()
    last = history[-1]
    return TrainResult(model, last["accuracy"], last["relation_accuracy"], seconds, history)
