"""An interactive view of a pretrained encoder's heads: choose a sentence, a layer and a head, see its attention.

It needs a live Jupyter kernel (ipywidgets). The picture is drawn by matplotlib into a PNG held by an Image widget,
so moving the controls prints nothing into the notebook, and a re-run notebook stays the same; lessons show a
static figure beside it for readers without a kernel.

The picture has one size whatever the sentence (`PICTURE`, in screen pixels) and is shown at exactly that size, so
that the menu, the sliders and the whole map fit on a laptop screen together (under 600 pixels of height).
"""

import io

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..plots import show_attention
from .encoder import Encoder, encode

PICTURE = (600, 480)  # (width, height) of the attention map in screen pixels: about 70 more for the controls
DPI = 80  # screen pixels per inch of the matplotlib figure


class HeadExplorer(widgets.VBox):
    """A sentence menu, layer and head sliders, and the chosen head's attention map.

    Args:
        model, tokenizer: from `mha.pretrained.load`.
        sentences: the sentences to choose from.
        layer, head: the head shown first.
    """

    def __init__(self, model: Encoder, tokenizer, sentences: list[str], layer: int = 0, head: int = 0):
        self._model, self._tokenizer = model, tokenizer
        self._seen = {}  # sentence -> (tokens, weights (layers, heads, q_pos, k_pos)): each sentence runs once
        self.sentence = widgets.Dropdown(options=list(sentences), description="sentence")
        self.sentence.layout.width = "95%"
        self.layer = widgets.IntSlider(value=layer, min=0, max=model.config.layers - 1, description="layer")
        self.head = widgets.IntSlider(value=head, min=0, max=model.config.heads - 1, description="head")
        # shown at its own size: a flexible box would stretch it to the notebook's width
        self.picture = widgets.Image(format="png", width=PICTURE[0], height=PICTURE[1])
        self.picture.layout = widgets.Layout(width=f"{PICTURE[0]}px", height=f"{PICTURE[1]}px", object_fit="contain")
        super().__init__([self.sentence, widgets.HBox([self.layer, self.head]), self.picture])
        for control in (self.sentence, self.layer, self.head):
            control.observe(self._draw, names="value")
        self._draw()

    def weights(self):
        """The tokens of the chosen sentence and the chosen head's weights (q_pos, k_pos)."""
        sentence = self.sentence.value
        if sentence not in self._seen:
            enc = encode(self._model, self._tokenizer, [sentence])
            self._seen[sentence] = enc.tokens[0], enc.weights[0]
        tokens, weights = self._seen[sentence]
        return tokens, weights[self.layer.value, self.head.value]

    def _draw(self, change=None):
        tokens, weights = self.weights()
        # not pyplot: nothing is shown; constrained layout keeps every label inside the fixed size
        fig = Figure(figsize=(PICTURE[0] / DPI, PICTURE[1] / DPI), dpi=DPI, layout="constrained")
        ax = fig.subplots()
        show_attention(
            weights, tokens, tokens, ax=ax, annotate=False, title=f"layer {self.layer.value}, head {self.head.value}"
        )
        ax.tick_params(labelsize=9 if len(tokens) <= 16 else 8)  # long sentences: smaller tokens, same picture
        for label in (ax.xaxis.label, ax.yaxis.label):
            label.set_fontsize(9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        self.picture.value = buffer.getvalue()

    def __repr__(self):  # what a notebook without widgets shows, and what nbval compares: no PNG bytes
        return f"HeadExplorer(layer={self.layer.value}, head={self.head.value}, sentence={self.sentence.value!r})"
