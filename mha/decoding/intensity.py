"""Bytes against FLOPs in one cached decoding step: why a decoding step waits on memory.

A cached step runs every weight matrix of the model on one new position per sequence, and attends from that
position to every cached key and value. So it reads each weight once (shared by the batch) and the whole cache once:

    FLOPs = 2 * batch * weights                               one multiply-add per weight and sequence
          + 4 * batch * layers * heads * d_head * seq         q.k and the weighted sum of v: every query head,
                                                              every cached position
    bytes = weights * bytes_per_number                        every weight, once
          + cache_bytes(layers, batch, kv_heads, d_head, seq, bytes_per_number)     every cached key and value, once

Their ratio, FLOPs per byte read, is the step's arithmetic intensity. A machine's balance point is its peak FLOP/s
over its memory bandwidth (bytes/s): the FLOPs it can do in the time it reads one byte. A computation whose intensity
is below the balance point cannot keep the arithmetic busy; its time is at least bytes / bandwidth.

Left out, because they are small beside these: norms, biases, activation functions, the embedding lookup (one row
per token), and the new position's own activations.

`weights` counts the numbers in the matrices a step multiplies by: per layer W_Q, W_K, W_V, W_O and the MLP's, plus
the output head (`StepShape.weights`). The cache's part scales with seq; the weights' part does not.
"""

from dataclasses import dataclass

from ..bench.flops import KNOWN_PEAKS
from ..kv_cache import cache_bytes
from .model import DecoderConfig


@dataclass(frozen=True)
class StepShape:
    """The sizes that set the work of one decoding step.

    Args:
        name: the model, in words.
        layers: decoder layers.
        d_model: features per position.
        heads: query heads per layer.
        kv_heads: key/value heads per layer.
        d_head: features per head.
        d_ff: width of the MLP's hidden layer.
        mlp_matrices: matrices of d_model x d_ff in the MLP: 2 for a plain MLP (up, down), 3 for SwiGLU (gate, up,
            down).
        vocab: tokens of the output head.
        source: where the sizes come from.
    """

    name: str
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    d_head: int
    d_ff: int
    mlp_matrices: int
    vocab: int
    source: str

    @property
    def weights(self) -> int:
        """Numbers in the matrices one step multiplies by: each layer's attention and MLP, and the output head."""
        attention = (
            self.d_model * (self.heads + 2 * self.kv_heads) * self.d_head + self.heads * self.d_head * self.d_model
        )
        mlp = self.mlp_matrices * self.d_model * self.d_ff
        return self.layers * (attention + mlp) + self.d_model * self.vocab


def decoder_shape(config: DecoderConfig, name: str = "the lesson's decoder") -> StepShape:
    """The `StepShape` of the course's `Decoder` (`mha.decoding.model`): a plain MLP of two matrices."""
    return StepShape(
        name,
        config.layers,
        config.d_model,
        config.heads,
        config.kv_heads,
        config.d_head,
        config.d_ff,
        2,
        config.vocab,
        "mha.decoding.model.DecoderConfig",
    )


LLAMA_3_1_8B = StepShape(
    "Llama 3.1 8B",
    layers=32,
    d_model=4096,
    heads=32,
    kv_heads=8,
    d_head=128,
    d_ff=14_336,
    mlp_matrices=3,  # SwiGLU: gate, up and down projections
    vocab=128_256,
    source="https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json (hidden_size 4096, "
    "intermediate_size 14336, num_attention_heads 32, num_key_value_heads 8, vocab_size 128256)",
)


@dataclass(frozen=True)
class StepCost:
    """FLOPs and bytes read by one cached decoding step, by part.

    Args:
        weight_flops: FLOPs of the matrix products with the weights.
        weight_bytes: bytes of the weights, each read once.
        cache_flops: FLOPs of attention over the cache (scores and weighted sum).
        cache_bytes: bytes of the cached keys and values, each read once.
    """

    weight_flops: int
    weight_bytes: int
    cache_flops: int
    cache_bytes: int

    @property
    def flops(self) -> int:
        return self.weight_flops + self.cache_flops

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.cache_bytes

    @property
    def intensity(self) -> float:
        """FLOPs per byte read."""
        return self.flops / self.bytes


def step_cost(shape: StepShape, seq: int, batch: int = 1, bytes_per_number: int = 2) -> StepCost:
    """FLOPs and bytes of one cached decoding step: `batch` sequences, each with `seq` cached positions.

    Args:
        shape: the model's sizes.
        seq: positions the new token attends to: the cache once its own key and value are in.
        batch: sequences decoded together; they share the weights, each has its own cache.
        bytes_per_number: 2 for bfloat16, 4 for float32.

    Returns:
        a `StepCost`.
    """
    for name, value in (("seq", seq), ("batch", batch), ("bytes_per_number", bytes_per_number)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return StepCost(
        weight_flops=2 * batch * shape.weights,
        weight_bytes=shape.weights * bytes_per_number,
        cache_flops=4 * batch * shape.layers * shape.heads * shape.d_head * seq,
        cache_bytes=cache_bytes(shape.layers, batch, shape.kv_heads, shape.d_head, seq, bytes_per_number),
    )


@dataclass(frozen=True)
class Machine:
    """What an accelerator can compute and read per second, from its maker's datasheet.

    Args:
        name: the device.
        flops_per_s: dense peak FLOP/s in the dtype of interest.
        bytes_per_s: memory bandwidth.
        source: where both figures are published.
    """

    name: str
    flops_per_s: float
    bytes_per_s: float
    source: str

    @property
    def balance(self) -> float:
        """FLOPs it can do in the time it reads one byte: peak FLOP/s / bandwidth."""
        return self.flops_per_s / self.bytes_per_s


# Memory bandwidth from the same datasheets as the FLOP/s of lesson 06 (`mha.bench.flops.KNOWN_PEAKS`).
BANDWIDTH = {"H100 SXM": 3.35e12, "H200 SXM": 4.8e12, "A100": 2.039e12}  # bytes/s; A100: the 80 GB SXM card


def machine(device: str, dtype_name: str = "bfloat16") -> Machine:
    """A GPU of lesson 06's datasheet table, with its memory bandwidth: "H100 SXM", "H200 SXM" or "A100".

    Args:
        device: the device's name in `BANDWIDTH`.
        dtype_name: "bfloat16" (tensor cores) or "float32" (no tensor cores).
    """
    if device not in BANDWIDTH:
        raise ValueError(f"device must be one of {sorted(BANDWIDTH)}, got {device!r}")
    if dtype_name not in ("bfloat16", "float32"):
        raise ValueError(f"dtype_name must be 'bfloat16' or 'float32', got {dtype_name!r}")
    peak = next(p for p in KNOWN_PEAKS if p.device == device)
    name = f"{device} ({dtype_name})" if device != "A100" else f"A100 80GB SXM ({dtype_name})"
    return Machine(name, getattr(peak, dtype_name), BANDWIDTH[device], peak.source)


def lesson_cases() -> list[tuple[StepShape, int, int, int]]:
    """(shape, bytes per number, seq, batch) of the lesson's table: the timing model of `mha.decoding.speed` in
    float32 as it was timed, and Llama 3.1 8B in bfloat16 at 8k tokens for 1 to 64 sequences and at 128k for one."""
    from .speed import SpeedSetting  # here, not at the top: speed is a sibling that needs no part of this module

    timed = SpeedSetting()
    lesson = decoder_shape(timed.decoder(), "lesson's timing model")
    return [
        (lesson, 4, timed.kv_context, 1),
        (lesson, 4, timed.kv_context, timed.kv_batch),
        (LLAMA_3_1_8B, 2, 8_192, 1),
        (LLAMA_3_1_8B, 2, 8_192, 16),
        (LLAMA_3_1_8B, 2, 8_192, 64),
        (LLAMA_3_1_8B, 2, 131_072, 1),
    ]


def intensity_table(cases=None, device: str = "H100 SXM") -> list[dict]:
    """One cached step of each case against `device`'s balance point in the case's dtype.

    Args:
        cases: (shape, bytes per number, seq, batch) tuples (default: `lesson_cases()`); 4 bytes is float32, 2 is
            bfloat16.
        device: a GPU of `BANDWIDTH`.

    Returns:
        one dict per case: name, dtype, seq, batch, flops, weight_bytes, cache_bytes, intensity (FLOP/byte),
        balance (the device's FLOP/byte in that dtype), ceiling (intensity / balance: the largest share of the
        peak FLOP/s the step can use), memory_s (bytes / bandwidth: the least time the step takes) and compute_s
        (FLOPs / peak FLOP/s).
    """
    rows = []
    for shape, size, seq, batch in lesson_cases() if cases is None else cases:
        dtype = {2: "bfloat16", 4: "float32"}[size]
        gpu = machine(device, dtype)
        cost = step_cost(shape, seq, batch, size)
        rows.append(
            {
                "name": shape.name,
                "dtype": dtype,
                "seq": seq,
                "batch": batch,
                "flops": cost.flops,
                "weight_bytes": cost.weight_bytes,
                "cache_bytes": cost.cache_bytes,
                "intensity": cost.intensity,
                "device": gpu.name,
                "balance": gpu.balance,
                "ceiling": cost.intensity / gpu.balance,
                "memory_s": cost.bytes / gpu.bytes_per_s,
                "compute_s": cost.flops / gpu.flops_per_s,
            }
        )
    return rows


def format_intensity(rows: list[dict]) -> str:
    """The table the lesson and the command print: FLOPs, bytes, FLOP/byte against the balance point, times."""
    from .configs import fmt_bytes

    header = (
        f"{'model':<22} {'dtype':<8} {'context':>7} {'batch':>5} {'GFLOP':>8} {'weights':>10} {'cache':>10} "
        f"{'FLOP/byte':>9} {'balance':>7} {'of peak':>7} {'memory µs':>11} {'compute µs':>12}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:<22} {r['dtype']:<8} {r['seq']:>7,} {r['batch']:>5} {r['flops'] / 1e9:>8.3f} "
            f"{fmt_bytes(r['weight_bytes']):>10} {fmt_bytes(r['cache_bytes']):>10} {r['intensity']:>9.2f} "
            f"{r['balance']:>7.0f} {r['ceiling']:>7.2%} {r['memory_s'] * 1e6:>11,.1f} {r['compute_s'] * 1e6:>12,.1f}"
        )
    devices = sorted({r["device"] for r in rows})
    lines.append("balance: peak FLOP/s / memory bandwidth of the " + " and the ".join(devices))
    lines.append("of peak: the most of the peak FLOP/s a step can use, FLOP/byte / balance")
    lines.append("memory: bytes read / bandwidth, the least time a step takes; compute: FLOPs / peak FLOP/s")
    return "\n".join(lines)
