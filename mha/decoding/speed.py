"""Timing generation: the time of one new token with and without the KV cache, and with fewer key/value heads.

  per_token   time to produce the next token at each context length: recomputing every position (no cache)
              against one cached step; their ratio at each length
  kv_heads    time of one cached step against kv_heads, for the whole model and for its attention alone, the
              latter two ways: grouped (each cached key read once per group) and repeated (the keys copied to
              every query head first, as `MultiHeadAttention.forward` does)

Timing only needs the shapes, not trained weights: the models here are `Decoder`s with random weights, sized so that
the effects are large enough to measure on a CPU core. Every timing is the median of many calls, taken in turns
(`mha.bench.timing.time_interleaved`), on the threads asked for (one by default).

Examples:
  python -m mha.decoding speed --json notebooks/results/07_speed_cpu.json
  python -m mha.decoding speed --quick
  python -m mha.decoding speed --device cuda --json notebooks/results/07_speed_gpu.json
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .._validate import check_device
from ..attention import attention
from ..bench.results import fmt_ratio, fmt_time
from ..bench.timing import time_interleaved
from ..heads import repeat_kv
from ..kv_cache import grouped_attention
from .model import DecoderConfig, build_decoder

CONTEXTS = (16, 32, 64, 128, 256, 512, 1024, 2048)
KV_HEADS = (8, 4, 2, 1)
TARGET_CONTEXT, TARGET_RATIO = 1024, 5.0  # the figure to reach: at 1,024 tokens, cached at least 5x faster


@dataclass(frozen=True)
class SpeedSetting:
    """The sizes timed.

    Args:
        d_model, heads, layers: the model of the per-token timing (kv_heads = heads).
        contexts: context lengths of the per-token timing.
        kv_heads: key/value heads compared in the kv_heads timing.
        kv_context: context length of the kv_heads timing.
        kv_batch: sequences decoded at once in the kv_heads timing.
        min_run_time: seconds spent timing each call (split over 3 turns).
    """

    d_model: int = 256
    heads: int = 8
    layers: int = 4
    contexts: tuple[int, ...] = CONTEXTS
    kv_heads: tuple[int, ...] = KV_HEADS
    kv_context: int = 2048
    kv_batch: int = 4
    min_run_time: float = 0.3

    def decoder(self, kv_heads: int | None = None, seq: int | None = None) -> DecoderConfig:
        seq = seq or max(max(self.contexts), self.kv_context) + 1
        return DecoderConfig(64, seq, self.d_model, self.heads, kv_heads, self.layers)


QUICK = SpeedSetting(contexts=(16, 64, 256, 1024), kv_context=512, kv_batch=2, min_run_time=0.1)


def _device(device) -> torch.device:
    """A device to time on: the CPU or a GPU this machine has (a meta tensor holds no numbers to time)."""
    found = check_device("device", device) or torch.device("cpu")
    if found.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (a device that computes), got {device!r}")
    return found


@torch.no_grad()
def per_token(setting: SpeedSetting, device="cpu", threads: int = 1, progress=None) -> list[dict]:
    """Time of the next token at each context length: the whole sequence recomputed, against one cached step.

    Args:
        setting: the sizes.
        device: where to run.
        threads: CPU threads torch may use.
        progress: called with a short label after each context length (e.g. to move a progress bar).

    Shape:
        returns one dict per context: context, no_cache_s, cache_s (medians), their IQRs, and ratio.
    """
    device = _device(device)
    model = build_decoder(setting.decoder(), seed=0, dtype=torch.float32).to(device).eval()
    tokens = torch.randint(64, (1, max(setting.contexts) + 1), generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for n in setting.contexts:
        nxt = tokens[:, n : n + 1]  # (1, 1): the token whose successor we want
        cache = model.new_cache(1, n + 1)
        model.forward_cached(tokens[:, :n], cache)  # prefill the context (not timed)

        def recompute(n=n):
            return model(tokens[:, : n + 1])[:, -1]  # every position again, keep the last

        def cached(n=n, nxt=nxt, cache=cache):
            for layer_cache in cache:
                layer_cache.truncate(n)  # forget the step timed before
            return model.forward_cached(nxt, cache)[:, -1]

        torch.testing.assert_close(recompute(), cached(), rtol=1e-4, atol=1e-4)  # same logits, or not worth timing
        t = time_interleaved({"no cache": recompute, "cache": cached}, threads, setting.min_run_time)
        rows.append(
            {
                "context": n,
                "no_cache_s": t["no cache"].median,
                "no_cache_iqr_s": t["no cache"].iqr,
                "cache_s": t["cache"].median,
                "cache_iqr_s": t["cache"].iqr,
                "ratio": t["no cache"].median / t["cache"].median,
            }
        )
        if progress is not None:
            progress(f"context {n}")
    return rows


@torch.no_grad()
def by_kv_heads(setting: SpeedSetting, device="cpu", threads: int = 1, progress=None) -> list[dict]:
    """Time of one cached decoding step against kv_heads: the whole model, and its attention core two ways.

    The attention core alone is one layer's: queries of the new position (batch, heads, 1, d_head) against the
    cached keys and values (batch, kv_heads, kv_context, d_head).

    Shape:
        returns one dict per kv_heads: kv_heads, cache_bytes (all layers), step_s, grouped_s, repeated_s (medians)
        and their IQRs.
    """
    device = _device(device)
    rows = []
    batch, n = setting.kv_batch, setting.kv_context
    d_head = setting.d_model // setting.heads
    g = torch.Generator().manual_seed(1)
    for kv in setting.kv_heads:
        model = build_decoder(setting.decoder(kv, seq=n + 1), seed=0, dtype=torch.float32).to(device).eval()
        tokens = torch.randint(64, (batch, n + 1), generator=g).to(device)
        cache = model.new_cache(batch, n + 1)
        model.forward_cached(tokens[:, :n], cache)

        def step(cache=cache, model=model, nxt=tokens[:, n:]):
            for layer_cache in cache:
                layer_cache.truncate(n)
            return model.forward_cached(nxt, cache)

        q = torch.randn(batch, setting.heads, 1, d_head, generator=g).to(device)
        k, v = cache[0].keys[:, :, :n], cache[0].values[:, :, :n]  # (batch, kv_heads, n, d_head)
        group = setting.heads // kv

        def grouped(q=q, k=k, v=v):
            return grouped_attention(q, k, v)[0]

        def repeated(q=q, k=k, v=v, group=group):
            return attention(q, repeat_kv(k, group), repeat_kv(v, group))[0]

        torch.testing.assert_close(grouped(), repeated(), rtol=1e-5, atol=1e-5)
        t = time_interleaved({"step": step, "grouped": grouped, "repeated": repeated}, threads, setting.min_run_time)
        rows.append(
            {
                "kv_heads": kv,
                "cache_bytes": sum(c.keys[:, :, :n].nbytes + c.values[:, :, :n].nbytes for c in cache),
                **{f"{name}_s": t[name].median for name in t},
                **{f"{name}_iqr_s": t[name].iqr for name in t},
            }
        )
        if progress is not None:
            progress(f"kv_heads {kv}")
    return rows


def slopes(contexts, seconds, last: int = 3) -> float:
    """Slope of log(seconds) against log(context) over the last `last` points: 1 = linear, 2 = quadratic."""
    x, y = np.log(np.asarray(contexts[-last:], float)), np.log(np.asarray(seconds[-last:], float))
    return float(np.polyfit(x, y, 1)[0])


def target_ratio(rows: list[dict], context: int = TARGET_CONTEXT) -> float:
    """The speed-up of the cached step at `context` tokens (NaN if that context was not timed)."""
    found = [r["ratio"] for r in rows if r["context"] == context]
    return found[0] if found else math.nan


def format_per_token(rows: list[dict], summary: bool = True) -> str:
    """Per context: time of the next token without and with the cache, and the speed-up.

    Args:
        rows: from `per_token`.
        summary: also print the slopes (of both times, and of their ratio, which is the difference of the two)
            and the speed-up at 1,024 tokens against its target.
    """
    lines = [f"{'context':>8} | {'no cache':>12} | {'cache':>12} | speed-up"]
    for r in rows:
        lines.append(
            f"{r['context']:>8} | {fmt_time(r['no_cache_s'])} | {fmt_time(r['cache_s'])} | {fmt_ratio(r['ratio'])}"
        )
    contexts = [r["context"] for r in rows]
    if not summary:
        return "\n".join(lines)
    if len(rows) >= 3:
        no_cache = slopes(contexts, [r["no_cache_s"] for r in rows])
        cache = slopes(contexts, [r["cache_s"] for r in rows])
        ratio = slopes(contexts, [r["ratio"] for r in rows])  # log(a / b) = log a - log b: the difference
        lines.append(
            f"slope over the last 3 contexts (log-log): no cache {no_cache:.2f}, cache {cache:.2f}, "
            f"speed-up {ratio:.2f} (no cache minus cache: x{2**ratio:.1f} per doubling of the context)"
        )
    ratio = target_ratio(rows)
    if not math.isnan(ratio):
        verdict = "reached" if ratio >= TARGET_RATIO else "NOT reached"
        lines.append(
            f"at {TARGET_CONTEXT:,} tokens the cached step is {fmt_ratio(ratio)} faster "
            f"(target at least {TARGET_RATIO:.0f}x: {verdict})"
        )
    return "\n".join(lines)


def format_kv_heads(rows: list[dict]) -> str:
    """Per kv_heads: cache size, the whole cached step, and one layer's attention core, grouped and repeated."""
    lines = [
        f"{'kv_heads':>8} | {'cache':>10} | {'model step':>12} | {'attention, grouped':>18} | "
        f"{'attention, repeated':>19}"
    ]
    for r in rows:
        lines.append(
            f"{r['kv_heads']:>8} | {r['cache_bytes'] / 2**20:6.1f} MiB | {fmt_time(r['step_s'])} | "
            f"{fmt_time(r['grouped_s']):>18} | {fmt_time(r['repeated_s']):>19}"
        )
    first = rows[0]
    for r in rows[1:]:
        lines.append(
            f"kv_heads {first['kv_heads']} -> {r['kv_heads']}: model step {fmt_ratio(first['step_s'] / r['step_s'])} "
            f"faster, attention grouped {fmt_ratio(first['grouped_s'] / r['grouped_s'])}, "
            f"repeated {fmt_ratio(first['repeated_s'] / r['repeated_s'])}"
        )
    return "\n".join(lines)


def describe(setting: SpeedSetting) -> dict:
    """The setting as JSON-ready data."""
    return asdict(setting)
