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
        source: where these numbers are published.
    """

    name: str
    family: str
    layers: int
    heads: int
    kv_heads: int
    d_head: int
    source: str

    @property
    def kind(self) -> str:
        """ "MHA", "MQA" or "GQA" by its number of key/value heads."""
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"


PUBLISHED = [
    PublishedConfig(
        "Llama 3.1 8B",
        "Llama 3",
        32,
        32,
        8,
        128,
        "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json; "
        "Llama Team, 'The Llama 3 Herd of Models', arXiv:2407.21783, Table 3",
    ),
    PublishedConfig(
        "Llama 3.1 70B",
        "Llama 3",
        80,
        64,
        8,
        128,
        "https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json; arXiv:2407.21783, Table 3",
    ),
    PublishedConfig(
        "Mistral 7B",
        "Mistral",
        32,
        32,
        8,
        128,
        "https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json; "
        "Jiang et al., 'Mistral 7B', arXiv:2310.06825, Table 1",
    ),
    PublishedConfig(
        "Qwen2.5 7B",
        "Qwen2.5",
        28,
        28,
        4,
        128,
        "https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json; "
        "Qwen Team, 'Qwen2.5 Technical Report', arXiv:2412.15115, Table 1",
    ),
    PublishedConfig(
        "Qwen2.5 72B",
        "Qwen2.5",
        80,
        64,
        8,
        128,
        "https://huggingface.co/Qwen/Qwen2.5-72B/blob/main/config.json; arXiv:2412.15115, Table 1",
    ),
    PublishedConfig(
        "Gemma 7B",
        "Gemma",
        28,
        16,
        16,
        256,
        "https://huggingface.co/google/gemma-7b/blob/main/config.json; "
        "Gemma Team, 'Gemma: Open Models Based on Gemini Research and Technology', arXiv:2403.08295, Table 1",
    ),
    PublishedConfig(
        "Gemma 2B",
        "Gemma",
        18,
        8,
        1,
        256,
        "https://huggingface.co/google/gemma-2b/blob/main/config.json; arXiv:2403.08295, Table 1",
    ),
    PublishedConfig(
        "Falcon 7B",
        "Falcon",
        32,
        71,
        1,
        64,
        "https://huggingface.co/tiiuae/falcon-7b/blob/main/config.json (n_head 71, hidden_size 4544, multi_query true)",
    ),
]

CONTEXTS = (8_192, 131_072)  # 8k and 128k tokens
BYTES_PER_NUMBER = 2  # bfloat16


def cache_table(configs=PUBLISHED, contexts=CONTEXTS, bytes_per_number: int = BYTES_PER_NUMBER) -> list[dict]:
    """Bytes of one sequence's KV cache for each configuration and context: as published, as MHA, as MQA.

    Returns:
        one dict per (configuration, context): the configuration's fields, kind, context, and bytes as
        published ("bytes"), with kv_heads = heads ("bytes_mha") and with kv_heads = 1 ("bytes_mqa").
    """
    rows = []
    for c in configs:
        for seq in contexts:

            def size(kv_heads, c=c, seq=seq):
                return cache_bytes(c.layers, 1, kv_heads, c.d_head, seq, bytes_per_number)

            rows.append(
                {
                    **asdict(c),
                    "kind": c.kind,
                    "context": seq,
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
        f"{'model':<14} {'layers':>6} {'heads':>5} {'kv_heads':>8} {'d_head':>6} {'kind':>4} {'context':>8}   "
        f"{'as published':>12} {'as MHA':>10} {'as MQA':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:<14} {r['layers']:>6} {r['heads']:>5} {r['kv_heads']:>8} {r['d_head']:>6} {r['kind']:>4} "
            f"{r['context'] // 1024:>7}k   {fmt_bytes(r['bytes']):>12} {fmt_bytes(r['bytes_mha']):>10} "
            f"{fmt_bytes(r['bytes_mqa']):>10}"
        )
    return "\n".join(lines)
