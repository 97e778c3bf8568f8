"""Published model configurations, and what their KV caches weigh.

Each entry gives the attention shape of a public model as its makers published it (the model's `config.json` on
its model card, or the paper's table of sizes); `source` says where. d_head is `head_dim` where the configuration
gives it, otherwise hidden_size / num_attention_heads. Falcon-7B's configuration says `multi_query: true`: one
key/value head.

`cache_table` computes, for each configuration, the bytes of the cache of one sequence at a given context
length: as published, and as if the model had used full multi-head attention (kv_heads = heads) or multi-query
attention (kv_heads = 1). The formula is `mha.kv_cache.cache_bytes`; 2 bytes per number (bfloat16, as these
models are distributed).
"""

from dataclasses import asdict, dataclass

from ..kv_cache import cache_bytes


@dataclass(frozen=True)
class PublishedConfig:
    """The attention shape of a published model.

    Args:
        name: the model.
        family: the model family.
        layers: decoder layers (num_hidden_layers).
        heads: query heads per layer (num_attention_heads).
        kv_heads: key/value heads per layer (num_key_value_heads).
        d_head: features per head.
        context: the longest context the model was published for (max_position_embeddings, or the paper's).
        source: where these numbers are published.
        window: sliding-window attention: each position sees only the last `window` keys, so the cache is a
            rolling buffer of that many positions (default None: every position kept).
    """

    name: str
    family: str
    layers: int
    heads: int
    kv_heads: int
    d_head: int
    context: int
    source: str
    window: int | None = None

    @property
    def kind(self) -> str:
        """ "MHA", "MQA" or "GQA" by its number of key/value heads."""
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    def held(self, seq: int) -> int:
        """Positions the cache holds after `seq` tokens: all of them, or the last `window`."""
        return seq if self.window is None else min(seq, self.window)


LLAMA3 = "Llama Team, 'The Llama 3 Herd of Models', arXiv:2407.21783, Table 3"
QWEN25 = "Qwen Team, 'Qwen2.5 Technical Report', arXiv:2412.15115, Table 1"
GEMMA = "Gemma Team, 'Gemma: Open Models Based on Gemini Research and Technology', arXiv:2403.08295, Table 1"

PUBLISHED = [
    PublishedConfig(
        name="Llama 3.1 8B",
        family="Llama 3",
        layers=32,
        heads=32,
        kv_heads=8,
        d_head=128,
        context=131_072,
        source=f"https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json; {LLAMA3}",
    ),
    PublishedConfig(
        name="Llama 3.1 70B",
        family="Llama 3",
        layers=80,
        heads=64,
        kv_heads=8,
        d_head=128,
        context=131_072,
        source=f"https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json; {LLAMA3}",
    ),
    PublishedConfig(
        name="Mistral 7B",
        family="Mistral",
        layers=32,
        heads=32,
        kv_heads=8,
        d_head=128,
        context=8_192,
        window=4_096,
        source="https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json; "
        "Jiang et al., 'Mistral 7B', arXiv:2310.06825, Table 1 (window_size 4096, context_len 8192)",
    ),
    PublishedConfig(
        name="Qwen2.5 7B",
        family="Qwen2.5",
        layers=28,
        heads=28,
        kv_heads=4,
        d_head=128,
        context=131_072,
        source=f"https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json; {QWEN25}",
    ),
    PublishedConfig(
        name="Qwen2.5 72B",
        family="Qwen2.5",
        layers=80,
        heads=64,
        kv_heads=8,
        d_head=128,
        context=131_072,
        source=f"https://huggingface.co/Qwen/Qwen2.5-72B/blob/main/config.json; {QWEN25}",
    ),
    PublishedConfig(
        name="Gemma 7B",
        family="Gemma",
        layers=28,
        heads=16,
        kv_heads=16,
        d_head=256,
        context=8_192,
        source=f"https://huggingface.co/google/gemma-7b/blob/main/config.json; {GEMMA}",
    ),
    PublishedConfig(
        name="Gemma 2B",
        family="Gemma",
        layers=18,
        heads=8,
        kv_heads=1,
        d_head=256,
        context=8_192,
        source=f"https://huggingface.co/google/gemma-2b/blob/main/config.json; {GEMMA}",
    ),
    PublishedConfig(
        name="Falcon 7B",
        family="Falcon",
        layers=32,
        heads=71,
        kv_heads=1,
        d_head=64,
        context=2_048,
        source="https://huggingface.co/tiiuae/falcon-7b/blob/main/config.json (n_head 71, hidden_size 4544, "
        "multi_query true)",
    ),
]

CONTEXTS = (8_192, 131_072)  # 8k and 128k tokens
BYTES_PER_NUMBER = 2  # bfloat16


def cache_table(configs=PUBLISHED, contexts=CONTEXTS, bytes_per_number: int = BYTES_PER_NUMBER) -> list[dict]:
    """Bytes of one sequence's KV cache for each configuration and context: as published, as MHA, as MQA.

    A context longer than the model was published for is a what-if (the model would need to be trained for it);
    a model with a sliding window holds only its last `window` positions.

    Returns:
        one dict per (configuration, context): the configuration's fields, kind, context, positions held, and
        bytes as published ("bytes"), with kv_heads = heads ("bytes_mha") and with kv_heads = 1 ("bytes_mqa").
    """
    rows = []
    for c in configs:
        for seq in contexts:

            def size(kv_heads, c=c, seq=seq):
                return cache_bytes(c.layers, 1, kv_heads, c.d_head, c.held(seq), bytes_per_number)

            rows.append(
                {
                    **asdict(c),
                    "kind": c.kind,
                    "context_trained": c.context,
                    "context": seq,
                    "held": c.held(seq),
                    "bytes": size(c.kv_heads),
                    "bytes_mha": size(c.heads),
                    "bytes_mqa": size(1),
                }
            )
    return rows


def fmt_bytes(n: float) -> str:
    """Bytes in binary units: '512.0 MiB', '16.0 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def format_cache_table(rows: list[dict]) -> str:
    """The table the lesson and the command print: one line per configuration and context."""
    header = (
        f"{'model':<14} {'layers':>6} {'heads':>5} {'kv_heads':>8} {'d_head':>6} {'kind':>4} {'trained':>7} "
        f"{'context':>7}   {'as published':>12} {'as MHA':>10} {'as MQA':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        beyond = ("+" if r["context"] > r["context_trained"] else "") + ("*" if r["context"] > r["held"] else "")
        lines.append(
            f"{r['name']:<14} {r['layers']:>6} {r['heads']:>5} {r['kv_heads']:>8} {r['d_head']:>6} {r['kind']:>4} "
            f"{_k(r['context_trained']):>7} {_k(r['context']):>6}{beyond:<2}  {fmt_bytes(r['bytes']):>12} "
            f"{fmt_bytes(r['bytes_mha']):>10} {fmt_bytes(r['bytes_mqa']):>10}"
        )
    lines.append("+ longer than the model was published for: what its cache would be")
    for window in sorted({r["window"] for r in rows if r["window"] and r["context"] > r["held"]}):
        lines.append(f"* a sliding window: the cache holds only the last {window:,} positions")
    return "\n".join(lines)


def _k(tokens: int) -> str:
    return f"{tokens // 1024}k"
