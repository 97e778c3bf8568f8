"""Wrong answers to lesson 04's exercises."""

import copy

import numpy as np
import torch

from mha.toy.language import INDEX, RELATIONS, TemplateLanguage

LANGUAGE = TemplateLanguage()


def it_column(weights, sentence):
    return weights[:, : sentence.it + 1, sentence.it]


def it_full_row(weights, sentence):
    return weights[:, sentence.it, :]


def it_without_itself(weights, sentence):
    return weights[:, sentence.it, : sentence.it]


def it_float32_only(weights, sentence):
    return weights[:, sentence.it, : sentence.it + 1].float()


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


def table_transposed(weights, sentences):
    return _table(weights, sentences).T


def table_columns(weights, sentences):
    columns = []
    for relation in RELATIONS:
        columns.append(torch.stack([weights[b, :, s.needed[relation], s.it] for b, s in enumerate(sentences)]).mean(0))
    return torch.stack(columns, dim=1)


def table_sorts_sentences(weights, sentences):
    order = sorted(range(len(sentences)), key=lambda b: sentences[b].it)
    sentences.sort(key=lambda s: s.it)
    return _table(weights[order], sentences)


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


def remove_with_a_hook_left_behind(model, tokens, head):
    d = model.config.d_head

    def zero_head(module, inputs):
        (merged,) = inputs
        merged = merged.clone()
        merged[..., head * d : (head + 1) * d] = 0.0
        return (merged,)

    model.attention.out_proj.register_forward_pre_hook(zero_head)  # never removed
    return model(tokens)


def remove_eval_need_weights_but_zero_w_q(model, tokens, head):
    m = _zeroed_copy(model, head, "in_weight")
    m.eval()
    logits, _ = m(tokens, need_weights=True)
    return logits


def remove_head_zero_only(model, tokens, head):
    keep = torch.ones(model.config.heads)
    keep[0] = 0.0  # fitted to head 0
    return model(tokens, head_mask=keep)


def distance_counts(correct, distances):
    return {int(d): float(correct[distances == d].sum()) for d in distances.unique()}


def distance_overall(correct, distances):
    return {int(d): correct.float().mean().item() for d in distances.unique()}


def distance_tensor_keys(correct, distances):
    return {d: correct[distances == d].float().mean() for d in distances.unique()}


def distance_as_list(correct, distances):
    return [(int(d), correct[distances == d].float().mean().item()) for d in distances.unique()]


def distance_numpy_keys_counts(correct, distances):
    d_np, c_np = distances.numpy(), correct.numpy()
    return {d: c_np[d_np == d].sum() for d in np.unique(d_np)}


def distance_share_of_all(correct, distances):
    return {int(d): float(correct[distances == d].sum()) / len(correct) for d in distances.unique()}


def _pronoun(model, sentences, position="it", readout="pronoun", count=False, one_at_a_time=False):
    r = RELATIONS.index(readout)
    hits = 0
    batches = [[s] for s in sentences] if one_at_a_time else [sentences]
    for batch in batches:
        tokens, _ = LANGUAGE.encode(batch)
        predictions = model(tokens).argmax(dim=-1)
        for b, s in enumerate(batch):
            at = s.it if position == "it" else len(s.words) - 1
            hits += int(predictions[b, at, r]) == INDEX[s.answers["pronoun"]]
    return hits if count else hits / len(sentences)


def pronoun_at_last_word(model, sentences):
    return _pronoun(model, sentences, position="last")


def pronoun_from_entity_readout(model, sentences):
    return _pronoun(model, sentences, readout="entity")


def pronoun_compared_with_word(model, sentences):
    tokens, _ = LANGUAGE.encode(sentences)
    predictions = model(tokens).argmax(dim=-1)
    r = RELATIONS.index("pronoun")
    hits = [predictions[b, s.it, r] == s.answers["pronoun"] for b, s in enumerate(sentences)]
    return sum(bool(h) for h in hits) / len(hits)


def pronoun_count(model, sentences):
    return _pronoun(model, sentences, count=True)


def pronoun_one_at_a_time_entity(model, sentences):
    return _pronoun(model, sentences, readout="entity", one_at_a_time=True)


def pronoun_fitted(model, sentences):
    return 0.6  # the answer to the one case the check once had


def pronoun_printed(model, sentences):
    print(_pronoun(model, sentences))


WRONG = [
    ("it_row", it_column, "that is the column of 'it'", "classic"),
    ("it_row", it_full_row, "keep only the keys up to and including 'it'", "classic"),
    ("it_row", it_without_itself, "include 'it' itself", "classic"),
    ("it_row", it_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("relation_table", table_summed, "that is a sum over sentences", "classic"),
    ("relation_table", table_over_heads, "you averaged over the heads too", "classic"),
    ("relation_table", table_swapped, "relationships out of order", "classic"),
    ("relation_table", table_columns, "you read the columns of 'it'", "classic"),
    ("relation_table", table_transposed, "that is (relations, heads)", "coinciding sizes"),
    ("relation_table", table_sorts_sentences, "changed its input `sentences`", "side effect"),
    ("remove_head", remove_by_zeroing_w_q, "zeroing the head's query projection does not remove the head", "classic"),
    (
        "remove_head",
        remove_by_zeroing_w_q_and_b_q,
        "zeroing the head's query projection does not remove the head",
        "classic",
    ),
    ("remove_head", remove_by_zeroing_w_v, "zeroing the head's W_V leaves its value bias", "classic"),
    ("remove_head", remove_in_place, "changed `model.attention.out_proj.weight`", "side effect"),
    ("remove_head", keep_only_that_head, "keeps only this head", "classic"),
    ("remove_head", remove_by_zeroing_w_o_rows, "you zeroed rows of W_O", "classic"),
    ("remove_head", remove_with_a_hook_left_behind, "a forward pre hook was left on it", "side effect"),
    ("remove_head", remove_eval_need_weights_but_zero_w_q, "zeroing the head's query projection", "form"),
    ("remove_head", remove_head_zero_only, "values differ", "uniform cases"),
    ("accuracy_by_distance", distance_counts, "those are counts", "classic"),
    ("accuracy_by_distance", distance_overall, "that is the overall accuracy at every distance", "classic"),
    ("accuracy_by_distance", distance_tensor_keys, "a dict with tensor keys", "form"),
    ("accuracy_by_distance", distance_as_list, "return a dict {distance: accuracy}", "crash"),
    ("accuracy_by_distance", distance_numpy_keys_counts, "those are counts", "form"),
    ("accuracy_by_distance", distance_share_of_all, "you divided by the number of all answers", "coinciding sizes"),
    ("pronoun_accuracy", pronoun_at_last_word, "you read the prediction at the last word", "classic"),
    ("pronoun_accuracy", pronoun_from_entity_readout, "you read the entity readout", "classic"),
    ("pronoun_accuracy", pronoun_count, "that is a count", "classic"),
    ("pronoun_accuracy", pronoun_compared_with_word, "compare the predicted token id with INDEX", "classic"),
    ("pronoun_accuracy", pronoun_one_at_a_time_entity, "you read the entity readout", "form"),
    ("pronoun_accuracy", pronoun_fitted, "got 0.6", "uniform cases"),
    ("pronoun_accuracy", pronoun_printed, "returned None: did you print the result instead of returning it?", "crash"),
]
