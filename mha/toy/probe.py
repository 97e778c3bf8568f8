"""Linear probes: which tokens a head's output still carries, read by the best linear readout that can be fitted.

A head passes on one vector per query, its weighted average of values (before W_O). A probe is a fresh linear map
from that vector to the 64 tokens, fitted by softmax regression to name the token at one offset back, then scored
on sequences it was not fitted on. If no linear readout recovers the token, the model's own readouts (linear too,
fed through W_O) cannot either.

Everything is seeded and runs on one CPU thread: the probe's sequences by their own seeds, its weights from zero.
"""

import torch
import torch.nn.functional as F

from ..heads import merge_heads, split_heads
from .tasks import OffsetCopyTask

PROBE_SEED = 2_000_003  # sequences the probes are fitted on: far from training, held-out and probe-test seeds
TEST_SEED = 3_000_017  # sequences the probes are scored on
CHANCE_MARGIN = 0.03  # an accuracy this close to guessing (1 / classes) is printed as "chance"


@torch.no_grad()
def head_outputs(model, tokens: torch.Tensor) -> torch.Tensor:
    """What each head of an `AttentionOnlyModel` passes on at every position: its weighted average of values.

    Args:
        model: an `AttentionOnlyModel` (any number of layers).
        tokens: token ids.

    Shape:
        tokens (batch, seq); returns (batch, layers * heads, seq, d_head), the heads of layer 0 first.
    """
    x = model.embed(tokens)  # (batch, seq, d_model)
    outputs = []
    for layer in model.layers:
        q, k, v = (split_heads(t, layer.heads) for t in layer.project(x, x, x))  # (batch, heads, seq, d_head)
        out, _ = layer.attend(q, k, v, None, True, False)  # (batch, heads, seq, d_head)
        outputs.append(out)
        x = x + layer.out_proj(merge_heads(out))  # (batch, seq, d_model): the next layer reads this
    return torch.cat(outputs, dim=1)  # (batch, layers * heads, seq, d_head)


def fit_probe(features, labels, test_features, test_labels, classes: int, iterations: int = 50) -> float:
    """Fit a linear readout from features to labels (softmax regression); return its accuracy on the test set.

    The features are standardised with the fitting set's mean and spread; the weights start at zero and are fitted
    by L-BFGS on the whole fitting set, with a small L2 penalty so that separable classes still give finite
    weights.

    Args:
        features, labels: the fitting set.
        test_features, test_labels: the set it is scored on.
        classes: number of labels (e.g. the vocabulary).
        iterations: L-BFGS iterations at most (default: 50).

    Shape:
        features (n, d), labels (n,) int64, test_features (m, d), test_labels (m,). Returns a float in [0, 1].
    """
    if features.ndim != 2 or test_features.ndim != 2 or features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features and test_features must be (n, d) and (m, d) with the same d, "
            f"got {tuple(features.shape)} and {tuple(test_features.shape)}"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every machine
    try:
        mean, std = features.mean(0), features.std(0) + 1e-6
        x, x_test = (features - mean) / std, (test_features - mean) / std
        weight = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
        bias = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, labels) + 1e-4 * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            return ((x_test @ weight + bias).argmax(-1) == test_labels).float().mean().item()
    finally:
        torch.set_num_threads(threads)


def format_accuracy(accuracy: float, classes: int) -> str:
    """A probe's accuracy in whole percents, or "chance" within `CHANCE_MARGIN` of guessing (1 / classes).

    Near chance, the whole percent hangs on a handful of test positions whose answer is a near tie, and a tie is
    broken by the last bits of the arithmetic, which differ between CPUs: "1%" on one machine, "2%" on another.
    What the lesson claims there is only that the probe reads nothing.

    Args:
        accuracy: in [0, 1].
        classes: how many answers a guess picks from (the vocabulary).
    """
    return "chance" if accuracy < 1 / classes + CHANCE_MARGIN else f"{accuracy:.0%}"


def probe_heads(model, task: OffsetCopyTask, sequences: int = 512, test_sequences: int = 256) -> list[list[float]]:
    """For every head, how well a linear readout of its output names the token at each offset of the task.

    Fitted on `sequences` fresh sequences and scored on `test_sequences` others, at the positions that have every
    offset (i >= the largest offset).

    Args:
        model: a trained `AttentionOnlyModel`.
        task: the task it was trained on (its offsets, vocabulary and sequence length).
        sequences: sequences the probes are fitted on (default: 512).
        test_sequences: sequences they are scored on (default: 256).

    Shape:
        returns a list (layers * heads) of lists (relations) of accuracies.
    """
    first = max(task.offsets)
    data = []
    for n, seed in ((sequences, PROBE_SEED), (test_sequences, TEST_SEED)):
        tokens, targets = task.sample(n, torch.Generator().manual_seed(seed))  # (n, seq), (n, seq, relations)
        outputs = head_outputs(model, tokens)[:, :, first:]  # (n, heads, positions, d_head)
        data.append((outputs.transpose(0, 1).flatten(1, 2), targets[:, first:].flatten(0, 1)))  # (heads, n*pos, d)
    (fit_x, fit_y), (test_x, test_y) = data
    return [
        [fit_probe(fit_x[h], fit_y[:, r], test_x[h], test_y[:, r], task.vocab) for r in range(task.relations)]
        for h in range(fit_x.shape[0])
    ]
