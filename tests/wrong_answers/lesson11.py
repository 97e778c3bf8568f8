"""Classic mistakes in lesson 11's exercises."""

import torch

from mha.circuits.scores import head_terms

# repeat_batch(patterns, seq)


def _tiled(patterns, seq):
    return torch.stack([torch.tensor(p).repeat(seq // len(p) + 1)[:seq] for p in patterns])


def _from(patterns, seq, start, stop=None):
    stop = seq - 1 if stop is None else stop
    periods = torch.tensor([len(p) for p in patterns])
    positions = torch.arange(seq)
    return (positions >= start(periods)[:, None]) & (positions < stop)


def batch_interleaved(patterns, seq):
    tokens = torch.stack(
        [torch.tensor(p).repeat_interleave(-(-seq // len(p)))[:seq] for p in patterns]
    )  # a, a, b, b, ... instead of a, b, a, b
    return tokens, _from(patterns, seq, lambda p: p)


def batch_from_last_of_first_period(patterns, seq):
    return _tiled(patterns, seq), _from(patterns, seq, lambda p: p - 1)


def batch_after_first_repeat(patterns, seq):
    return _tiled(patterns, seq), _from(patterns, seq, lambda p: p + 1)


def batch_last_position_too(patterns, seq):
    return _tiled(patterns, seq), _from(patterns, seq, lambda p: p, stop=seq)


def batch_inverted(patterns, seq):
    return _tiled(patterns, seq), torch.arange(seq) < torch.tensor([len(p) for p in patterns])[:, None]


def batch_one_period(patterns, seq):
    p = len(patterns[0])
    return _tiled(patterns, seq), _from(patterns, seq, lambda periods: torch.full_like(periods, p))


def batch_float_tokens(patterns, seq):
    return _tiled(patterns, seq).float(), _from(patterns, seq, lambda p: p)


def batch_mask_as_ints(patterns, seq):
    return _tiled(patterns, seq), _from(patterns, seq, lambda p: p).long()


def batch_one_thing(patterns, seq):
    return _tiled(patterns, seq)


def batch_shuffles_patterns(patterns, seq):
    for p in patterns:
        p.sort()
    return _tiled(patterns, seq), _from(patterns, seq, lambda p: p)


# previous_token_scores(weights)


def previous_next_token(weights):
    return weights.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1).mean(0)


def previous_self(weights):
    return weights.diagonal(dim1=-2, dim2=-1).mean(-1).mean(0)


def previous_over_seq(weights):
    return (weights.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / weights.shape[-1]).mean(0)


def previous_sum_over_queries(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).mean(0)


def previous_sum_over_batch(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1).sum(0)


def previous_per_sequence(weights):
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def previous_float32_only(weights):
    return weights.float().diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1).mean(0)


def previous_averaged_over_layers(weights):  # dimension 1 taken for the batch: right only when the batch is 1
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1).mean(1)


# induction_scores(weights, tokens)


def _earlier(tokens):
    seq = tokens.shape[1]
    return (tokens[:, :, None] == tokens[:, None, :]) & torch.ones(seq, seq, dtype=torch.bool).tril(-1)


def _pooled(weights, targets, has):
    on = (weights * targets[:, None, None]).sum(-1)
    return (on * has[:, None, None]).sum(dim=(0, 3)) / has.sum()


def _after(mask):
    after = torch.zeros_like(mask)
    after[..., 1:] = mask[..., :-1]
    return after


def induction_on_the_occurrence(weights, tokens):
    earlier = _earlier(tokens)
    return _pooled(weights, earlier, earlier.any(-1))


def induction_one_before(weights, tokens):
    earlier = _earlier(tokens)
    before = torch.zeros_like(earlier)
    before[..., :-1] = earlier[..., 1:]
    return _pooled(weights, before, _after(earlier).any(-1))


def induction_over_all_queries(weights, tokens):
    after = _after(_earlier(tokens))
    return _pooled(weights, after, torch.ones_like(after.any(-1)))


def induction_per_sequence(weights, tokens):
    after = _after(_earlier(tokens))
    has = after.any(-1)
    on = (weights * after[:, None, None]).sum(-1)
    per = (on * has[:, None, None]).sum(-1) / has.sum(-1).clamp(min=1)[:, None, None]
    return per[has.any(-1)].mean(0)


def induction_per_sequence_nan(weights, tokens):  # a sequence without a repeat gives 0 / 0
    after = _after(_earlier(tokens))
    has = after.any(-1)
    on = (weights * after[:, None, None]).sum(-1)
    return ((on * has[:, None, None]).sum(-1) / has.sum(-1)[:, None, None]).mean(0)


def induction_per_sequence_zero(weights, tokens):  # a sequence without a repeat counts as 0
    after = _after(_earlier(tokens))
    has = after.any(-1)
    on = (weights * after[:, None, None]).sum(-1)
    return ((on * has[:, None, None]).sum(-1) / has.sum(-1).clamp(min=1)[:, None, None]).mean(0)


def induction_most_recent(weights, tokens):
    earlier = _earlier(tokens)
    keys = torch.arange(tokens.shape[1])
    last = torch.where(earlier, keys, -1).max(-1).values
    only = earlier & (keys == last[..., None])
    return _pooled(weights, _after(only), only.any(-1))


def induction_first_only(weights, tokens):
    earlier = _earlier(tokens)
    seq = tokens.shape[1]
    keys = torch.arange(seq)
    first = torch.where(earlier, keys, seq).min(-1).values
    only = earlier & (keys == first[..., None])
    return _pooled(weights, _after(only), only.any(-1))


def induction_float32_only(weights, tokens):
    after = _after(_earlier(tokens))
    return _pooled(weights.float(), after, after.any(-1))


def induction_first_sequence(weights, tokens):  # fitted to one sequence: right only when the batch is 1
    after = _after(_earlier(tokens[:1]))
    return _pooled(weights[:1], after, after.any(-1))


# ablated_logits(model, tokens, layer, head)


def _forward(model, tokens, drop, bias=True, residual=True):
    x = model.embed(tokens)
    for i, attention in enumerate(model.layers):
        terms = drop(i, head_terms(attention, x))
        added = terms.sum(dim=1) + (attention.out_proj.bias if bias else 0.0)
        x = x + added if residual else added
    return model.readouts[0](x)


def _without(terms, heads):
    keep = torch.ones(terms.shape[1], dtype=terms.dtype)
    keep[list(heads)] = 0.0
    return terms * keep[:, None, None]


def ablated_four_dimensions(model, tokens, layer, head):
    mask = torch.ones(model.config.layers * model.config.heads)
    mask[layer * model.config.heads + head] = 0.0
    return model(tokens, head_mask=mask)


def ablated_without_bias(model, tokens, layer, head):
    return _forward(model, tokens, lambda i, t: _without(t, [head]) if i == layer else t, bias=False)


def ablated_without_residual(model, tokens, layer, head):
    return _forward(model, tokens, lambda i, t: _without(t, [head]) if i == layer else t, residual=False)


def ablated_every_layer(model, tokens, layer, head):
    return _forward(model, tokens, lambda i, t: _without(t, [head]))


def ablated_index_by_heads_first(model, tokens, layer, head):
    mask = torch.ones(model.config.layers * model.config.heads)
    mask[head * model.config.layers + layer] = 0.0  # layers and heads swapped in the index
    return model(tokens, head_mask=mask)[:, :, 0]


def ablated_keep_only(model, tokens, layer, head):
    others = [h for h in range(model.config.heads) if h != head]
    return _forward(model, tokens, lambda i, t: _without(t, others) if i == layer else t)


def ablated_nothing(model, tokens, layer, head):
    return model(tokens)[:, :, 0]


def ablated_in_place(model, tokens, layer, head):
    d = model.config.d_head
    with torch.no_grad():
        model.layers[layer].out_proj.weight[:, head * d : (head + 1) * d] = 0.0
    return model(tokens)[:, :, 0]


def ablated_first_layer_only(model, tokens, layer, head):  # fitted to layer 0
    return _forward(model, tokens, lambda i, t: _without(t, [head]) if i == 0 else t)


# k_composition(first, second, h1, h2)


def _matrices(first, second, h1, h2):
    d = first.d_head
    r1, r2 = slice(h1 * d, (h1 + 1) * d), slice(h2 * d, (h2 + 1) * d)
    w_q, w_k, _ = second.in_proj.weight.split(second.d_model)
    _, _, w_v = first.in_proj.weight.split(first.d_model)
    return w_q[r2].T @ w_k[r2], first.out_proj.weight[:, r1] @ w_v[r1]


def _score(a, b):
    norm = torch.linalg.matrix_norm
    return (norm(a @ b) / (norm(a) * norm(b))).item()


def k_as_q_composition(first, second, h1, h2):
    qk, ov = _matrices(first, second, h1, h2)
    return _score(qk.T, ov)


def k_transposed_qk(first, second, h1, h2):  # W_K^T W_Q: the same as Q-composition
    d = first.d_head
    r1, r2 = slice(h1 * d, (h1 + 1) * d), slice(h2 * d, (h2 + 1) * d)
    w_q, w_k, _ = second.in_proj.weight.split(second.d_model)
    _, _, w_v = first.in_proj.weight.split(first.d_model)
    return _score(w_k[r2].T @ w_q[r2], first.out_proj.weight[:, r1] @ w_v[r1])


def k_as_v_composition(first, second, h1, h2):
    d = first.d_head
    _, ov = _matrices(first, second, h1, h2)
    r2 = slice(h2 * d, (h2 + 1) * d)
    ov2 = second.out_proj.weight[:, r2] @ second.in_proj.weight.split(second.d_model)[2][r2]
    return _score(ov2, ov)


def k_reversed(first, second, h1, h2):
    qk, ov = _matrices(first, second, h1, h2)
    return _score(ov, qk)


def k_not_normalised(first, second, h1, h2):
    qk, ov = _matrices(first, second, h1, h2)
    return torch.linalg.matrix_norm(qk @ ov).item()


def k_spectral(first, second, h1, h2):
    qk, ov = _matrices(first, second, h1, h2)
    norm = torch.linalg.matrix_norm
    return (norm(qk @ ov, ord=2) / (norm(qk, ord=2) * norm(ov, ord=2))).item()


def k_rows_of_w_o(first, second, h1, h2):
    d = first.d_head
    r1 = slice(h1 * d, (h1 + 1) * d)
    qk, _ = _matrices(first, second, h1, h2)
    w_v = first.in_proj.weight.split(first.d_model)[2][r1]
    return _score(qk, first.out_proj.weight[r1].T @ w_v)


def k_layers_swapped(first, second, h1, h2):
    qk, _ = _matrices(second, first, h2, h1)  # reads with the first layer's head h1
    _, ov = _matrices(second, first, h2, h1)  # writes with the second layer's head h2
    return _score(qk, ov)


def k_as_tensor_pair(first, second, h1, h2):
    qk, ov = _matrices(first, second, h1, h2)
    return qk, ov


def k_two_heads_only(first, second, h1, h2):  # fitted to d_head = d_model / 2
    d = first.d_model // 2
    r1, r2 = slice(h1 * d, (h1 + 1) * d), slice(h2 * d, (h2 + 1) * d)
    w_q, w_k, _ = second.in_proj.weight.split(second.d_model)
    _, _, w_v = first.in_proj.weight.split(first.d_model)
    return _score(w_q[r2].T @ w_k[r2], first.out_proj.weight[:, r1] @ w_v[r1])


WRONG = [
    ("repeat_batch", batch_interleaved, "each token was repeated in place", "classic"),
    ("repeat_batch", batch_from_last_of_first_period, "seen for the first time", "classic"),
    ("repeat_batch", batch_after_first_repeat, "already repeats the token at 0", "classic"),
    ("repeat_batch", batch_last_position_too, "the last position has no next token", "classic"),
    ("repeat_batch", batch_inverted, "inverted", "classic"),
    ("repeat_batch", batch_one_period, "every sequence has its own period", "uniform cases"),
    ("repeat_batch", batch_float_tokens, "expected integers", "form"),
    ("repeat_batch", batch_mask_as_ints, "a mask must be boolean", "form"),
    ("repeat_batch", batch_one_thing, "return two things, (tokens, predictable)", "crash"),
    ("repeat_batch", batch_shuffles_patterns, "changed `patterns[0]`: it was sorted in place", "side effect"),
    ("previous_token_scores", previous_next_token, "that is the next token", "classic"),
    ("previous_token_scores", previous_self, "weight on itself", "classic"),
    ("previous_token_scores", previous_over_seq, "you divided by seq", "classic"),
    ("previous_token_scores", previous_sum_over_queries, "that is a sum over the queries", "classic"),
    ("previous_token_scores", previous_sum_over_batch, "that is a sum over the batch", "classic"),
    ("previous_token_scores", previous_per_sequence, "average over the batch too", "classic"),
    ("previous_token_scores", previous_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("previous_token_scores", previous_averaged_over_layers, "(layers, heads)", "coinciding sizes"),
    ("induction_scores", induction_on_the_occurrence, "the earlier occurrence itself", "classic"),
    ("induction_scores", induction_one_before, "one position before the earlier occurrence", "classic"),
    ("induction_scores", induction_over_all_queries, "you averaged over every query", "classic"),
    ("induction_scores", induction_per_sequence, "within each sequence first", "classic"),
    ("induction_scores", induction_per_sequence_nan, "its mean is 0 / 0 = nan", "classic"),
    ("induction_scores", induction_per_sequence_zero, "counting a sequence whose tokens never repeat as 0", "classic"),
    ("induction_scores", induction_most_recent, "only the most recent earlier occurrence", "classic"),
    ("induction_scores", induction_first_only, "only the first earlier occurrence", "classic"),
    ("induction_scores", induction_float32_only, "returned float32 for float64 inputs", "uniform cases"),
    ("induction_scores", induction_first_sequence, "values differ", "uniform cases"),
    ("ablated_logits", ablated_four_dimensions, "that has shape (batch, seq, 1, vocab)", "form"),
    ("ablated_logits", ablated_without_bias, "W_O's bias is missing", "classic"),
    ("ablated_logits", ablated_without_residual, "the residual is missing", "classic"),
    ("ablated_logits", ablated_every_layer, "from every layer", "classic"),
    ("ablated_logits", ablated_index_by_heads_first, "entry l * heads + h", "coinciding sizes"),
    ("ablated_logits", ablated_keep_only, "keeps only this head", "classic"),
    ("ablated_logits", ablated_nothing, "nothing was removed", "classic"),
    ("ablated_logits", ablated_in_place, "The caller's module must come back as it was given", "side effect"),
    ("ablated_logits", ablated_first_layer_only, "values differ", "uniform cases"),
    ("k_composition", k_as_q_composition, "that is Q-composition", "classic"),
    ("k_composition", k_transposed_qk, "that is Q-composition", "classic"),
    ("k_composition", k_as_v_composition, "that is V-composition", "classic"),
    ("k_composition", k_reversed, "the wrong way round", "classic"),
    ("k_composition", k_not_normalised, "not normalised", "classic"),
    ("k_composition", k_spectral, "spectral norms", "classic"),
    ("k_composition", k_rows_of_w_o, "you took rows", "classic"),
    ("k_composition", k_layers_swapped, "the layers are swapped", "classic"),
    ("k_composition", k_as_tensor_pair, "expected one number", "crash"),
    ("k_composition", k_two_heads_only, "returned nan", "uniform cases"),
]
