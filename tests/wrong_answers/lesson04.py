"""Classic mistakes in lesson 04's exercises."""

import copy

import torch

from mha.toy.language import INDEX, RELATIONS, TemplateLanguage


def it_column(weights, sentence):
    return weights[:, : sentence.it + 1, sentence.it]


def it_full_row(weights, sentence):
    return weights[:, sentence.it, :]


def _table(weights, sentences, reduce="mean", order=RELATIONS):
    columns = []
    for relation in order:
        values = torch.stack([weights[b, :, s.it, s.needed[relation]] for b, s in enumerate(sentences)])
        columns.append(values.sum(0) if reduce == "sum" else values.mean(0))
    return torch.stack(columns, dim=1)


def table_summed(weights, sentences):
    return _table(weights, sentences, reduce="sum")


def table_over_heads(weights, sentences):
    return _table(weights, sentences).mean(dim=0)


def table_swapped(weights, sentences):
    return _table(weights, sentences, order=["entity", "pronoun", "contrast"])


def table_columns(weights, sentences):
    columns = []
    for relation in RELATIONS:
        columns.append(torch.stack([weights[b, :, s.needed[relation], s.it] for b, s in enumerate(sentences)]).mean(0))
    return torch.stack(columns, dim=1)


def _zeroed_copy(model, head, tensor, block=0):
    """A copy of `model` with head `head`'s rows of one attention tensor set to zero."""
    m = copy.deepcopy(model)
    d, d_model = m.config.d_head, m.config.d_model
    part = slice(block * d_model + head * d, block * d_model + (head + 1) * d)
    with torch.no_grad():
        target = {
            "in_weight": m.attention.in_proj.weight,
            "in_bias": m.attention.in_proj.bias,
            "out_weight": m.attention.out_proj.weight,
        }[tensor]
        target[part] = 0.0
    return m


def remove_by_zeroing_w_q(model, tokens, head):
    return _zeroed_copy(model, head, "in_weight")(tokens)


def remove_by_zeroing_w_q_and_b_q(model, tokens, head):
    m = _zeroed_copy(model, head, "in_weight")
    return _zeroed_copy(m, head, "in_bias")(tokens)


def remove_by_zeroing_w_v(model, tokens, head):
    return _zeroed_copy(model, head, "in_weight", block=2)(tokens)


def remove_in_place(model, tokens, head):
    d = model.config.d_head
    with torch.no_grad():
        model.attention.out_proj.weight[:, head * d : (head + 1) * d] = 0.0
    return model(tokens)


def remove_by_zeroing_w_o_rows(model, tokens, head):
    return _zeroed_copy(model, head, "out_weight")(tokens)


def keep_only_that_head(model, tokens, head):
    keep = torch.zeros(model.config.heads)
    keep[head] = 1.0
    return model(tokens, head_mask=keep)


def distance_counts(correct, distances):
    return {int(d): float(correct[distances == d].sum()) for d in distances.unique()}


def distance_overall(correct, distances):
    return {int(d): correct.float().mean().item() for d in distances.unique()}


def _pronoun(model, sentences, position="it", readout="pronoun", count=False):
    tokens, _ = TemplateLanguage().encode(sentences)
    predictions = model(tokens).argmax(dim=-1)
    r = RELATIONS.index(readout)
    hits = 0
    for b, s in enumerate(sentences):
        at = s.it if position == "it" else len(s.words) - 1
        hits += int(predictions[b, at, r]) == INDEX[s.answers["pronoun"]]
    return hits if count else hits / len(sentences)


def pronoun_at_last_word(model, sentences):
    return _pronoun(model, sentences, position="last")


def pronoun_from_entity_readout(model, sentences):
    return _pronoun(model, sentences, readout="entity")


def pronoun_compared_with_word(model, sentences):
    tokens, _ = TemplateLanguage().encode(sentences)
    predictions = model(tokens).argmax(dim=-1)
    r = RELATIONS.index("pronoun")
    hits = [predictions[b, s.it, r] == s.answers["pronoun"] for b, s in enumerate(sentences)]
    return sum(bool(h) for h in hits) / len(hits)


def pronoun_count(model, sentences):
    return _pronoun(model, sentences, count=True)


WRONG = [
    ("it_row", it_column, "that is the column of 'it'"),
    ("it_row", it_full_row, "keep only the keys up to and including 'it'"),
    ("relation_table", table_summed, "that is a sum over sentences"),
    ("relation_table", table_over_heads, "you averaged over the heads too"),
    ("relation_table", table_swapped, "relationships out of order"),
    ("relation_table", table_columns, "you read the columns of 'it'"),
    ("remove_head", remove_by_zeroing_w_q, "zeroing the head's query projection does not remove the head"),
    ("remove_head", remove_by_zeroing_w_q_and_b_q, "zeroing the head's query projection does not remove the head"),
    ("remove_head", remove_by_zeroing_w_v, "zeroing the head's W_V leaves its value bias"),
    ("remove_head", remove_in_place, "changed the model's weights"),
    ("remove_head", keep_only_that_head, "keeps only this head"),
    ("remove_head", remove_by_zeroing_w_o_rows, "you zeroed rows of W_O"),
    ("accuracy_by_distance", distance_counts, "those are counts"),
    ("accuracy_by_distance", distance_overall, "at distance"),
    ("pronoun_accuracy", pronoun_at_last_word, "you read the prediction at the last word"),
    ("pronoun_accuracy", pronoun_from_entity_readout, "you read the entity readout"),
    ("pronoun_accuracy", pronoun_count, "that is a count"),
    ("pronoun_accuracy", pronoun_compared_with_word, "compare the predicted token id with INDEX"),
]
