"""Softmax one number at a time (numpy): a running maximum and a running sum, and the merge of two partial results.

Softmax needs the largest score before it can exponentiate anything safely (exp(1000) overflows), and the sum of
all the exponentials before it can divide. Read the scores one at a time and keep two numbers, the largest so far m
and the sum so far l of exp(x - m): when a larger score arrives, every exponential summed so far was taken against
too small a maximum, and multiplying the sum by exp(m_old - m_new) puts it right (Milakov & Gimelshein 2018,
"Online normalizer calculation for softmax").

The same bookkeeping works on whole blocks. A *partial result* of attention over some keys is (m, l, acc): the
largest score, the sum of exp(score - m), and the sum of exp(score - m) times each key's value. Two partial results
over disjoint sets of keys merge into the partial result over both:

    m   = max(m_a, m_b)
    l   = l_a · exp(m_a - m)   + l_b · exp(m_b - m)
    acc = acc_a · exp(m_a - m) + acc_b · exp(m_b - m)

and the attention output is acc / l. The merge is associative and commutative: keys can be split into blocks in any
way, processed in any order, even on different processors, and merged. Every exponent is a score minus a maximum of
scores, at most 0: nothing overflows, whatever the scores.
"""

from dataclasses import dataclass

import numpy as np


def online_softmax(x) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Softmax of a vector read once, left to right, keeping only the running maximum and sum; then one more pass.

    Args:
        x: the scores, any finite or infinite floats (at least one above -inf).

    Returns:
        (softmax of x as float64, the (m, l) pairs after each element: how the running maximum and sum evolved).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty vector, got shape {x.shape}")
    m, l, steps = -np.inf, 0.0, []
    for xj in x:
        m_new = max(m, xj)
        # the sum so far was taken against m: rescale it to m_new, then add the new term (exp(-inf) = 0 at the start)
        l = l * np.exp(m - m_new) + np.exp(xj - m_new) if m_new > -np.inf else 0.0
        m = m_new
        steps.append((float(m), float(l)))
    if m == -np.inf:
        raise ValueError("every score is -inf: softmax is undefined (a query that may attend to nothing)")
    return np.exp(x - m) / l, steps


@dataclass(frozen=True)
class Partial:
    """Softmax attention over some of the keys, before normalising: what a block contributes, and what two merge to.

    Args:
        m: the largest score of each query row.
        l: the sum of exp(score - m) over the keys seen.
        acc: the sum of exp(score - m) · value over the keys seen.

    Shape:
        m and l (..., rows); acc (..., rows, d).
    """

    m: np.ndarray
    l: np.ndarray
    acc: np.ndarray

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(the attention output acc / l, the log-sum-exp m + log l of each row's scores)."""
        return self.acc / self.l[..., None], self.m + np.log(self.l)


def partial(scores, values) -> Partial:
    """The partial result of one block: its scores (one row per query, one column per key) and the keys' values.

    Shape:
        scores (..., rows, keys), values (..., keys, d); returns a `Partial` of m, l (..., rows), acc (..., rows, d).
    """
    scores, values = np.asarray(scores, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if scores.shape[-1] != values.shape[-2]:
        raise ValueError(
            f"scores (..., rows, keys) and values (..., keys, d) disagree on keys: got {scores.shape} and "
            f"{values.shape}"
        )
    m = scores.max(axis=-1)
    safe = np.where(np.isneginf(m), 0.0, m)  # a row with every key masked: nothing to add, and no inf - inf
    p = np.exp(scores - safe[..., None])  # (..., rows, keys), each at most 1
    return Partial(m, p.sum(axis=-1), p @ values)


def merge(a: Partial, b: Partial) -> Partial:
    """The partial result over the keys of `a` and of `b` together (disjoint sets of keys, same queries)."""
    m = np.maximum(a.m, b.m)
    safe = np.where(np.isneginf(m), 0.0, m)
    scale_a, scale_b = np.exp(a.m - safe), np.exp(b.m - safe)  # each at most 1: rescale to the common maximum
    return Partial(m, a.l * scale_a + b.l * scale_b, a.acc * scale_a[..., None] + b.acc * scale_b[..., None])
