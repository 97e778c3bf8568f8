"""The decoding wing: generating text one token at a time, and sharing keys and values between heads (lesson 07).

    model.py     Decoder: a small decoder-only transformer on the core's MultiHeadAttention (kv_heads included),
                 run in full or with one KV cache per layer (`mha.kv_cache`); greedy generation with or without it;
                 StepDecoder, the same called as libraries call theirs (the exercise's generation loop)
    writer.py    the decoder trained on the template language's next word; prompts completed, sentences checked
    configs.py   published model configurations (cited) and the bytes of their KV caches
    speed.py     time per new token with and without the cache; a cached step against kv_heads
    intensity.py FLOPs against bytes read in one cached step, and a GPU's balance point: why decoding waits on memory
    sharing.py   accuracy against kv_heads on lesson 02's task, lesson 04's sentences, and six bits read from one
                 position (where sharing costs)
    __main__.py  the command: `python -m mha.decoding cache-sizes | intensity | speed | sharing | write`

Converting a trained model (mean-pooling the key/value heads of lesson 05's MiniLM) lives beside lesson 05's code,
in `mha.pretrained.kv_pooling`.
"""
