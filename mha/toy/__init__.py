"""The toy wing: small tasks and models in which one can see what heads do (lessons 02 and 04).

    tasks.py             OffsetCopyTask: name the tokens 1, 2, 3 positions back (lesson 02)
    language.py          a template language of sentences like "apple released a new iphone , but it is ...";
                         its next-word task and a grammar check (lesson 07)
    models.py            AttentionOnlyModel: embeddings, one attention layer of the core (or a stack of them), one
                         readout per question (kv_heads: shared keys and values, lesson 07)
    train.py             Adam on fresh batches, scored on a fixed held-out set
    tunnel_vision.py     lesson 02's experiment: one head against several of the same width, and its controls
    probe.py             linear probes: which tokens a head's output still carries (lesson 02)
    what_heads_learn.py  lesson 04's experiment: which head serves which relationship, ablation, distance
    __main__.py          the command: `python -m mha.toy tunnel-vision ...`, `python -m mha.toy heads ...`

A notebook runs an experiment by calling these functions; the command calls the same ones, prints the same tables
and can write the runs as JSON.
"""
