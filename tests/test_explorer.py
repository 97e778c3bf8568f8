import pytest

from mha import pretrained
from mha.pretrained.explorer import HeadExplorer


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
