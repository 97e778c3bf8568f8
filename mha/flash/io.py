"""Bytes, not FLOPs: what attention moves between a GPU's main memory (HBM) and its chip, counted and modelled.

A GPU computes far faster than it reads its main memory: an H100 can do about 295 bfloat16 FLOPs in the time it reads
one byte (989.5 TFLOP/s against 3.35 TB/s), so a kernel that does fewer FLOPs than that per byte it moves waits on
memory. Standard attention (FlashAttention's "Algorithm 0") writes the (q_pos, k_pos) scores S to main memory, reads
them back for the softmax, writes the weights P, reads them back for P V:

    standard:  reads  q_pos·d + k_pos·d + q_pos·k_pos (S) + q_pos·k_pos (P) + k_pos·d (V)
               writes q_pos·k_pos (S) + q_pos·k_pos (P) + q_pos·d (O)                      numbers, per head

The blocked loop (`mha.flash.tiled`, and the Triton kernel) keeps S and P on the chip. With the queries in the outer
loop, as FlashAttention-2 and this course's kernel have them, it reads each block of queries once, all the keys and
values it needs once per block of queries, and writes the output and one log-sum-exp per row:

    blocked:   reads  q_pos·d + (q_pos / block_q) · 2 · k_pos·d        writes q_pos·d + q_pos (the log-sum-exp)

For N = q_pos = k_pos that is about 2N²d / block_q numbers for 4N²d FLOPs: block_q / 2 FLOPs per number, block_q
FLOPs per byte in bfloat16, whatever N. (Standard attention: about d / 2 FLOPs per byte in bfloat16.) FlashAttention's
first paper puts the keys in the outer loop instead, with blocks that grow with the on-chip memory M, and bounds its
traffic by Θ(N²d²/M) (Dao et al. 2022, Theorem 2); `paper_blocks` gives its block sizes.

`traffic_model` is the exact count for given blocks, worked out from the sizes alone; `mha.flash.tiled.Traffic` counts
what the PyTorch loop actually reads and writes, and the tests check that the two agree to the byte.
"""

import math
from dataclasses import dataclass

from ..bench.flops import KNOWN_PEAKS
from .tiled import Traffic


@dataclass(frozen=True)
class Problem:
    """The sizes of one attention call.

    Args:
        batch, heads, q_pos, k_pos, d_head: sizes.
        kv_heads: key/value heads, each shared by heads // kv_heads query heads (default: heads).
        causal: query i attends to keys 0..i only (default: False).
        bytes_per_number: of q, k, v and the output (2 for bfloat16, 4 for float32; default 2).
    """

    batch: int
    heads: int
    q_pos: int
    k_pos: int
    d_head: int
    kv_heads: int | None = None
    causal: bool = False
    bytes_per_number: int = 2

    def __post_init__(self):
        for name in ("batch", "heads", "q_pos", "k_pos", "d_head", "bytes_per_number"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.kv_heads is not None and (self.kv_heads < 1 or self.heads % self.kv_heads):
            raise ValueError(f"kv_heads must divide heads={self.heads}, got {self.kv_heads!r}")

    @property
    def groups(self) -> int:
        return self.kv_heads or self.heads

    def pairs(self) -> int:
        """(query, key) pairs scored, per head: q_pos · k_pos, or the ones on and below the diagonal if causal."""
        if not self.causal:
            return self.q_pos * self.k_pos
        return sum(min(i + 1, self.k_pos) for i in range(self.q_pos))

    def flops(self) -> int:
        """Multiply-adds of Q Kᵀ and P V, two FLOPs each: 4 · pairs · d_head per head (softmax not counted)."""
        return 4 * self.batch * self.heads * self.pairs() * self.d_head


def standard_traffic(p: Problem) -> Traffic:
    """Bytes that standard attention (S and P written to and read from main memory) moves, per the formula above."""
    b, rows, d = p.bytes_per_number, p.batch * p.heads, p.d_head
    kv = p.batch * p.groups  # key/value heads are read once each
    scores = rows * p.q_pos * p.k_pos  # S and P each: the whole matrix, even where a causal mask blanks it
    read = (rows * p.q_pos * d + 2 * kv * p.k_pos * d + 2 * scores) * b
    written = (2 * scores + rows * p.q_pos * d) * b
    return Traffic(read=read, written=written)


def traffic_model(p: Problem, block_q: int, block_k: int, lse_bytes: int = 4) -> Traffic:
    """Bytes the blocked algorithm moves with these blocks: what `tiled_attention(traffic=...)` counts, exactly.

    Args:
        p: the sizes.
        block_q, block_k: queries and keys per block.
        lse_bytes: bytes of each stored log-sum-exp (4: float32).
    """
    b, d, rows = p.bytes_per_number, p.d_head, p.batch * p.heads
    kv = p.batch * p.groups
    keys_read, blocks = 0, 0  # over the blocks of queries: how many keys each reads, and the block pairs computed
    for qs in range(0, p.q_pos, block_q):
        last_query = min(qs + block_q, p.q_pos) - 1
        # causal: every block of keys up to the one holding the last query's own key, whole (the mask is applied on
        # the chip, the keys are read all the same); not causal: all of them
        needed = min(p.k_pos, (last_query // block_k + 1) * block_k) if p.causal else p.k_pos
        keys_read += needed
        blocks += math.ceil(needed / block_k)
    read = rows * p.q_pos * d * b + 2 * kv * keys_read * d * b
    written = rows * p.q_pos * (d * b + lse_bytes)
    return Traffic(read=read, written=written, blocks=blocks)


def paper_blocks(d_head: int, sram_numbers: int) -> tuple[int, int]:
    """FlashAttention's block sizes for an on-chip memory of `sram_numbers` numbers: (block_q, block_k).

    block_k = ⌈M / 4d⌉ (a block of K and of V, the queries' block and the output's fit in M), block_q =
    min(block_k, d) (Dao et al. 2022, Algorithm 1, B_c and B_r).
    """
    if sram_numbers < 4 * d_head:
        raise ValueError(f"an on-chip memory of {sram_numbers} numbers cannot hold blocks of d_head={d_head}")
    block_k = math.ceil(sram_numbers / (4 * d_head))
    return min(block_k, d_head), block_k


@dataclass(frozen=True)
class Device:
    """A GPU's published figures: its dense bfloat16 peak, its main-memory bandwidth, its on-chip memory per SM.

    Args:
        name: as tables print it.
        peak: FLOP/s, dense bfloat16 (from `mha.bench.flops.KNOWN_PEAKS`, the course's one table of peaks).
        bandwidth: bytes per second of main memory.
        sram: bytes of shared memory (the on-chip memory a kernel's blocks live in) per streaming multiprocessor.
        l2: bytes of the L2 cache, shared by all the chip's streaming multiprocessors, between them and main memory.
        source: where the figures come from.
    """

    name: str
    peak: float
    bandwidth: float
    sram: int
    l2: int
    source: str

    @property
    def balance(self) -> float:
        """FLOPs the device can do in the time it reads one byte: a kernel below this many FLOPs per byte waits on
        memory (the ridge point of the roofline)."""
        return self.peak / self.bandwidth


def _peak(name: str) -> float:
    return next(p.bfloat16 for p in KNOWN_PEAKS if p.device == name)


_KIB = 1024
DEVICES = (
    Device(
        "H100 SXM",
        _peak("H100 SXM"),
        3.35e12,
        228 * _KIB,
        50 * _KIB**2,
        "NVIDIA H100 datasheet (3.35 TB/s HBM3); NVIDIA H100 Tensor Core GPU Architecture whitepaper (228 KB shared "
        "memory per SM, 50 MB L2 cache)",
    ),
    Device(
        "A100",
        _peak("A100"),
        2.039e12,
        164 * _KIB,
        40 * _KIB**2,
        "NVIDIA A100 datasheet (80GB SXM: 2,039 GB/s HBM2e); NVIDIA A100 Tensor Core GPU Architecture whitepaper "
        "(up to 164 KB shared memory per SM, 40 MB L2 cache)",
    ),
)


def roofline(flops: int, traffic: Traffic, device: Device) -> dict:
    """Where a kernel sits on the device's roofline, from its FLOPs and its bytes.

    Returns:
        {"intensity": FLOPs per byte, "bound": "memory" or "compute", "time_s": the roofline's lower bound on its
        time, max(FLOPs / peak, bytes / bandwidth), "attainable": the FLOP/s the roofline allows}.
    """
    moved = traffic.read + traffic.written
    intensity = flops / moved
    attainable = min(device.peak, intensity * device.bandwidth)
    return {
        "intensity": intensity,
        "bound": "memory" if intensity < device.balance else "compute",
        "time_s": max(flops / device.peak, moved / device.bandwidth),
        "attainable": attainable,
    }
