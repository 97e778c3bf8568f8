"""Right answers to lesson 04's exercises, in other forms than the solutions'."""

import copy
from collections import defaultdict

import numpy as np
import torch

from mha.toy.language import INDEX, RELATIONS, TemplateLanguage

LANGUAGE = TemplateLanguage()


def it_row_narrow(weights, sentence):
    return weights.select(1, sentence.it).narrow(-1, 0, sentence.it + 1)


def it_row_loop(weights, sentence):
    return torch.stack([weights[h, sentence.it, : sentence.it + 1] for h in range(weights.shape[0])])


def table_loops(weights, sentences):
    heads = weights.shape[1]
    table = torch.zeros(heads, len(RELATIONS), dtype=weights.dtype)
    for b, s in enumerate(sentences):
        for r, relation in enumerate(RELATIONS):
            table[:, r] += weights[b, :, s.it, s.needed[relation]]
    return table / len(sentences)


def table_advanced_indexing(weights, sentences):
    rows = torch.arange(len(sentences))
    it = torch.tensor([s.it for s in sentences])
    needed = torch.tensor([[s.needed[r] for r in RELATIONS] for s in sentences])  # (batch, relations)
    picked = weights[rows[:, None], :, it[:, None], needed]  # (batch, relations, heads)
    return picked.mean(dim=0).T


def remove_with_a_hook(model, tokens, head):
    d = model.config.d_head

    def zero_head(module, inputs):
        (merged,) = inputs
        merged = merged.clone()
        merged[..., head * d : (head + 1) * d] = 0.0
        return (merged,)

    handle = model.attention.out_proj.register_forward_pre_hook(zero_head)
    try:
        return model(tokens)
    finally:
        handle.remove()


def remove_on_a_copy(model, tokens, head):
    m = copy.deepcopy(model)
    d = m.config.d_head
    with torch.no_grad():
        m.attention.out_proj.weight[:, head * d : (head + 1) * d] = 0.0
        return m(tokens)


def remove_eval_need_weights(model, tokens, head):
    model.eval()
    keep = torch.ones(tokens.shape[0], model.config.heads)  # one row per sentence
    keep[:, head] = 0.0
    with torch.no_grad():
        logits, _ = model(tokens, need_weights=True, head_mask=keep)
    return logits


def distance_numpy(correct, distances):
    c, d = correct.numpy(), distances.numpy()
    return {key: c[d == key].mean() for key in np.unique(d)}


def distance_counting(correct, distances):
    right, total = defaultdict(int), defaultdict(int)
    for c, d in zip(correct.tolist(), distances.tolist()):
        right[d] += c
        total[d] += 1
    return {d: right[d] / total[d] for d in total}


def distance_tensor_values(correct, distances):
    return {int(d): correct[distances == d].float().mean() for d in distances.unique()}


def pronoun_one_sentence_at_a_time(model, sentences):
    r = RELATIONS.index("pronoun")
    hits = 0
    for s in sentences:
        tokens, _ = LANGUAGE.encode([s])
        with torch.no_grad():
            logits = model(tokens)
        hits += int(logits[0, s.it, r].argmax()) == INDEX[s.answers["pronoun"]]
    return hits / len(sentences)


def pronoun_eval_need_weights(model, sentences):
    model.eval()
    tokens, _ = LANGUAGE.encode(sentences)
    with torch.no_grad():
        logits, _ = model(tokens, need_weights=True)
    it = torch.tensor([s.it for s in sentences])
    predicted = logits[torch.arange(len(sentences)), it, RELATIONS.index("pronoun")].argmax(dim=-1)
    answers = torch.tensor([INDEX[s.answers["pronoun"]] for s in sentences])
    return (predicted == answers).float().mean()


def pronoun_reversed_order(model, sentences):
    backwards = list(reversed(sentences))
    tokens, _ = LANGUAGE.encode(backwards)
    predictions = model(tokens).argmax(dim=-1)
    r = RELATIONS.index("pronoun")
    hits = sum(int(predictions[b, s.it, r]) == INDEX[s.answers["pronoun"]] for b, s in enumerate(backwards))
    return np.float64(hits / len(sentences))


RIGHT = [
    ("it_row", it_row_narrow),
    ("it_row", it_row_loop),
    ("relation_table", table_loops),
    ("relation_table", table_advanced_indexing),
    ("remove_head", remove_with_a_hook),
    ("remove_head", remove_on_a_copy),
    ("remove_head", remove_eval_need_weights),
    ("accuracy_by_distance", distance_numpy),
    ("accuracy_by_distance", distance_counting),
    ("accuracy_by_distance", distance_tensor_values),
    ("pronoun_accuracy", pronoun_one_sentence_at_a_time),
    ("pronoun_accuracy", pronoun_eval_need_weights),
    ("pronoun_accuracy", pronoun_reversed_order),
]
