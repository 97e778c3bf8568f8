import struct

import pytest

from mha import pretrained
from mha.pretrained import analysis
from mha.pretrained.explorer import PICTURE, HeadExplorer


@pytest.fixture(scope="module")
def loaded():
    return pretrained.load()


def test_explorer_redraws_the_chosen_head_and_prints_no_picture(loaded):
    model, tokenizer = loaded
    sentences = [pretrained.COURSE_SENTENCE, "Hi!"]
    explorer = HeadExplorer(model, tokenizer, sentences, layer=3, head=1)
    first = bytes(explorer.picture.value)
    assert first.startswith(b"\x89PNG")
    tokens, weights = explorer.weights()
    expected = pretrained.encode(model, tokenizer, [pretrained.COURSE_SENTENCE]).weights[0, 3, 1]
    assert tokens[8] == "it" and weights.equal(expected)
    explorer.head.value = 2
    assert bytes(explorer.picture.value) != first
    explorer.sentence.value = "Hi!"
    assert explorer.weights()[0] == ["[CLS]", "hi", "!", "[SEP]"]
    assert repr(explorer) == "HeadExplorer(layer=3, head=2, sentence='Hi!')"
    assert explorer._repr_mimebundle_()["text/plain"] == repr(explorer)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG")
    return struct.unpack(">II", data[16:24])  # width, height, from the IHDR chunk


def test_explorer_picture_has_one_size_for_every_sentence_and_is_never_stretched(loaded):
    model, tokenizer = loaded
    sentences = ["Hi!", pretrained.COURSE_SENTENCE, max(analysis.TYPE_SENTENCES, key=len)]
    explorer = HeadExplorer(model, tokenizer, sentences)
    sizes = set()
    for sentence in sentences:
        explorer.sentence.value = sentence
        sizes.add(_png_size(bytes(explorer.picture.value)))
    assert sizes == {PICTURE}, f"the picture's size changes with the sentence: {sizes}"
    assert PICTURE[1] <= 500, "with the controls (about 70 px) the explorer must fit in 600 px of height"
    layout = explorer.picture.layout
    assert (layout.width, layout.height) == (f"{PICTURE[0]}px", f"{PICTURE[1]}px"), "shown at its own size"
