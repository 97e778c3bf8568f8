"""The circuits wing: heads in different layers that work together, previous-token and induction heads (lesson 11).

    repeats.py     RepeatedTokens: random patterns repeated with a period drawn per sequence; the predictable
                   positions; the guesses that do not find the earlier occurrence (chance levels)
    scores.py      previous-token and induction scores; each head's term in the sum over heads and ablation by
                   leaving it out; W_QK, W_OV and the K-, Q- and V-composition scores, with a random baseline
    induction.py   lesson 11's experiment: one layer against two at the same parameter count, the phase change,
                   the heads found, ablated and composed, the in-context score
    text.py        learning in context on documents of lesson 04's template language
    minilm.py      all-MiniLM-L6-v2's heads on repeated random words: previous-token, induction, duplicate heads
    plots.py       score maps over layer x head, training curves, loss by position
    __main__.py    the command: `python -m mha.circuits induction | text | minilm`

The models are lesson 02's `mha.toy.models.AttentionOnlyModel` with several layers, trained by `mha.toy.train`.
"""
