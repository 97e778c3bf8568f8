"""A small generated language of sentences like the course's "Apple released a new iPhone, but it is expensive."

Every sentence names a company, a product it released, a connective and a pronoun, with distractors around them:

    apple released a new iphone , but it is expensive .
    last week , a new kindle was unveiled by amazon in paris , and honestly it is cheap .
    after months of work , sony launched a new walkman at a big event , yet to be fair it is slow .

Reading the pronoun "it", a model is asked three questions. Each needs exactly one relationship, that is, one
position of the sentence and nothing else:

| relationship | question at "it"                         | the one position that answers it   |
|--------------|------------------------------------------|------------------------------------|
| pronoun      | which product does "it" refer to?        | the product (never the company)    |
| entity       | which company released it?               | the company                        |
| contrast     | does the clause of "it" contrast (but)?  | the connective                     |

The order varies (active "apple released a new iphone" or passive "a new iphone was released by apple"), optional
distractor phrases move every position, and companies and products are drawn independently, so no position, no
offset and no co-occurrence gives an answer away: the model must find each word by what it is. Answers are tokens of
the vocabulary: the product's, the company's, and `<contrast>` or `<same>`.
"""

from dataclasses import dataclass

import torch

from .tasks import IGNORE_INDEX

COMPANIES = ["apple", "samsung", "google", "sony", "nokia", "amazon", "tesla", "nintendo"]
PRODUCTS = ["iphone", "galaxy", "pixel", "walkman", "lumia", "kindle", "roadster", "switch", "tablet", "watch"]
VERBS = ["released", "launched", "unveiled", "announced"]
CONTRAST = ["but", "yet"]
SAME = ["and", "so"]
ASIDES = [["honestly"], ["sadly"], ["to", "be", "fair"], ["as", "everyone", "expected", ","]]
ADJECTIVES = ["expensive", "cheap", "slow", "fast", "great", "buggy"]
OPENERS = [["last", "week"], ["after", "months", "of", "work"], ["this", "spring"]]
MIDDLES = [
    ["in", "paris"],
    ["at", "a", "big", "event"],
    ["for", "the", "holidays"],
    ["to", "the", "press"],
    ["in", "stores", "everywhere"],
]
RELATIONS = ["pronoun", "entity", "contrast"]
SPECIALS = ["<pad>", "<contrast>", "<same>"]
_WORDS = ["a", "new", "was", "by", ",", "it", "is", "."]


def _vocabulary() -> list[str]:
    words = SPECIALS + _WORDS + COMPANIES + PRODUCTS + VERBS + CONTRAST + SAME + ADJECTIVES
    words += [w for phrase in OPENERS + MIDDLES + ASIDES for w in phrase]
    return list(dict.fromkeys(words))  # in order, without repeats


VOCAB = _vocabulary()
INDEX = {word: i for i, word in enumerate(VOCAB)}
PAD = INDEX["<pad>"]


@dataclass(frozen=True)
class Sentence:
    """One sentence with the positions each relationship needs.

    Args:
        words: the sentence, one token per word or punctuation mark.
        it, product, company, connective: positions of the pronoun and of the words that answer it.
    """

    words: tuple[str, ...]
    it: int
    product: int
    company: int
    connective: int

    @property
    def answers(self) -> dict[str, str]:
        """The right answer to each relationship's question, as a vocabulary word."""
        contrast = "<contrast>" if self.words[self.connective] in CONTRAST else "<same>"
        return {"pronoun": self.words[self.product], "entity": self.words[self.company], "contrast": contrast}

    @property
    def needed(self) -> dict[str, int]:
        """The position each relationship must look at, seen from the pronoun."""
        return {"pronoun": self.product, "entity": self.company, "contrast": self.connective}

    def __str__(self) -> str:
        return " ".join(self.words)


def make_sentence(
    company: str,
    product: str,
    connective: str,
    adjective: str,
    verb: str = "released",
    passive: bool = False,
    opener: list[str] | None = None,
    middle: list[str] | None = None,
    aside: list[str] | None = None,
) -> Sentence:
    """Build one sentence from its parts; `make_sentence("apple", "iphone", "but", "expensive")` is the course sentence.

    Args:
        company, product, connective, adjective, verb: words from the lists of this module.
        passive: "a new iphone was released by apple" instead of "apple released a new iphone".
        opener: a distractor phrase before the clause (followed by a comma), e.g. ["last", "week"].
        middle: a distractor phrase after the clause, e.g. ["in", "paris"].
        aside: words between the connective and "it", e.g. ["to", "be", "fair"].
    """
    for word, allowed, name in [
        (company, COMPANIES, "company"),
        (product, PRODUCTS, "product"),
        (connective, CONTRAST + SAME, "connective"),
        (adjective, ADJECTIVES, "adjective"),
        (verb, VERBS, "verb"),
    ]:
        if word not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {word!r}")
    words = list(opener) + [","] if opener else []
    if passive:
        product_at = len(words) + 2
        words += ["a", "new", product, "was", verb, "by", company]
        company_at = len(words) - 1
    else:
        company_at = len(words)
        words += [company, verb, "a", "new", product]
        product_at = len(words) - 1
    words += list(middle or []) + [",", connective]
    connective_at = len(words) - 1
    words += list(aside or [])
    it_at = len(words)
    words += ["it", "is", adjective, "."]
    return Sentence(tuple(words), it_at, product_at, company_at, connective_at)


@dataclass(frozen=True)
class TemplateLanguage:
    """Random sentences of the language, as token ids with one target per relationship at the pronoun.

    Args:
        p_passive: probability of the passive order.
        p_opener, p_middle, p_aside: probabilities of each distractor.
        seq: padded length of a batch (long enough for the longest sentence).
    """

    p_passive: float = 0.5
    p_opener: float = 0.5
    p_middle: float = 0.5
    p_aside: float = 0.5
    seq: int = 28

    relations = len(RELATIONS)
    names = RELATIONS
    vocab = len(VOCAB)

    def random_sentence(self, generator: torch.Generator) -> Sentence:
        """One sentence, every choice drawn from `generator`."""

        def pick(options):
            return options[int(torch.randint(len(options), (), generator=generator))]

        def coin(p):
            return bool(torch.rand((), generator=generator) < p)

        return make_sentence(
            company=pick(COMPANIES),
            product=pick(PRODUCTS),
            connective=pick(CONTRAST + SAME),
            adjective=pick(ADJECTIVES),
            verb=pick(VERBS),
            passive=coin(self.p_passive),
            opener=pick(OPENERS) if coin(self.p_opener) else None,
            middle=pick(MIDDLES) if coin(self.p_middle) else None,
            aside=pick(ASIDES) if coin(self.p_aside) else None,
        )

    def encode(self, sentences: list[Sentence]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids, padded, and the targets: the answers at the pronoun, IGNORE_INDEX everywhere else.

        Args:
            sentences: the sentences of a batch.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, relations), int64.
        """
        too_long = [s for s in sentences if len(s.words) > self.seq]
        if too_long:
            raise ValueError(f"a sentence has {len(too_long[0].words)} tokens, more than seq={self.seq}: {too_long[0]}")
        tokens = torch.full((len(sentences), self.seq), PAD)
        targets = torch.full((len(sentences), self.seq, self.relations), IGNORE_INDEX)
        for b, s in enumerate(sentences):
            tokens[b, : len(s.words)] = torch.tensor([INDEX[w] for w in s.words])
            targets[b, s.it] = torch.tensor([INDEX[s.answers[r]] for r in RELATIONS])
        return tokens, targets

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of random sentences; the interface of `mha.toy.train.train`.

        Args:
            batch: number of sentences.
            generator: the source of randomness.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, relations), int64.
        """
        return self.encode([self.random_sentence(generator) for _ in range(batch)])

    def sample_sentences(self, batch: int, generator: torch.Generator) -> list[Sentence]:
        """The sentences themselves, for analyses that need each relationship's position."""
        return [self.random_sentence(generator) for _ in range(batch)]


def decode(tokens: torch.Tensor) -> list[str]:
    """Token ids back to words (padding dropped).

    Shape:
        tokens (seq,); returns a list of at most seq words.
    """
    bad = [int(t) for t in tokens if not 0 <= int(t) < len(VOCAB)]
    if bad:
        raise ValueError(f"tokens must be ids of the language's words, 0 to {len(VOCAB) - 1}, got {bad[0]}")
    return [VOCAB[int(t)] for t in tokens if int(t) != PAD]


@dataclass(frozen=True)
class NextWordLanguage:
    """The template language as a next-word task (lesson 07): at every position, name the word that follows.

    The interface of `mha.toy.train.train` with one relationship, "next word". Sentences are drawn exactly as
    `TemplateLanguage.random_sentence` draws them; padding (on the right) and the last word have no target.

    Args:
        language: the sentences' probabilities and padded length.
    """

    language: TemplateLanguage = TemplateLanguage()

    relations = 1
    names = ["next word"]
    vocab = len(VOCAB)

    @property
    def seq(self) -> int:
        return self.language.seq

    def encode(self, sentences: list[Sentence]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids padded on the right, and the next word at every position (IGNORE_INDEX where there is none).

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, 1), int64.
        """
        tokens, _ = self.language.encode(sentences)  # (batch, seq), padded with PAD
        targets = torch.full((len(sentences), self.seq, 1), IGNORE_INDEX)
        targets[:, :-1, 0] = tokens[:, 1:]  # position i answers with the token at i + 1
        targets[targets == PAD] = IGNORE_INDEX  # nothing to predict after the final "."
        return tokens, targets

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of random sentences and their next words.

        Shape:
            returns tokens (batch, seq) and targets (batch, seq, 1), int64.
        """
        return self.encode(self.language.sample_sentences(batch, generator))


def is_sentence(words: list[str]) -> bool:
    """Whether `words` is a sentence of the language, e.g. a generated one: every template, word list and order.

    Args:
        words: one word or punctuation mark per item, e.g. "apple released a new iphone , but it is cheap .".split().
    """
    words = list(words)

    def phrase(at: int, options) -> list[int]:
        """Where reading can continue after one of the phrases `options` (or none, if None is among them)."""
        ends = [at] if None in options else []
        ends += [at + len(p) for p in options if p is not None and words[at : at + len(p)] == list(p)]
        return ends

    def clause(at: int) -> list[int]:
        active = [[c, v, "a", "new", p] for c in COMPANIES for v in VERBS for p in PRODUCTS]
        passive = [["a", "new", p, "was", v, "by", c] for c in COMPANIES for v in VERBS for p in PRODUCTS]
        return phrase(at, active + passive)

    ends = [0] + [e + 1 for e in phrase(0, OPENERS) if words[e : e + 1] == [","]]
    ends = [e for start in ends for e in clause(start)]
    ends = [e for start in ends for e in phrase(start, MIDDLES + [None])]
    ends = [e + 2 for e in ends if words[e : e + 1] == [","] and words[e + 1 : e + 2] in [[w] for w in CONTRAST + SAME]]
    ends = [e for start in ends for e in phrase(start, ASIDES + [None])]
    tails = [["it", "is", a, "."] for a in ADJECTIVES]
    return any(e == len(words) for start in ends for e in phrase(start, tails))
