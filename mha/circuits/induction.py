"""Induction heads: one attention layer against two, at the same parameter count, on repeated random tokens.

The task (`mha.circuits.repeats.RepeatedTokens`): a pattern of distinct random tokens repeated with a period drawn
per sequence (6 to 16); predict the next token everywhere, scored on the positions whose token occurred before.
The models (`mha.toy.models.AttentionOnlyModel`): embeddings, causal attention layers with residuals, a linear
readout; no MLP. Two layers of 2 heads at d_model 32 against one layer with as many heads in all (4), made wide
enough to have at least as many parameters.

For each run it records:
  curve        the held-out loss during training (from step 0), and where it fell halfway: the phase change
  accuracy     on the predictable positions of a fixed set of sequences
  scores       every head's previous-token and induction score (`mha.circuits.scores`)
  ablation     accuracy, and the induction head's score, with each head removed in turn, with every previous-token
               head removed, and with every head of layer 0 removed (two layers only)
  composition  the K-, Q- and V-composition score of every pair of heads across the two layers (two layers only)
  in context   the loss at every position: how much lower it is late in a sequence than early (Olsson et al.)

Examples:
  python -m mha.circuits induction --seeds 0 1 2 3 4 --json runs.json
  python -m mha.circuits induction --layers 2 --positions rope learned --seeds 0 1
"""

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._portable import same_linears
from ..multihead import parameter_count
from ..positions import check_scheme
from ..toy.models import AttentionOnlyConfig, build_model, count_parameters
from ..toy.train import TrainConfig, evaluate, train
from .repeats import RepeatedTokens, predictable
from .scores import ablation_mask, composition_scores, head_name, induction_scores, previous_token_scores

ANALYSIS_SEED = 2_000_003  # the sequences every analysis is computed on: the same for every run
EVAL_SEED = 1_000_003  # the held-out sequences of the training curve (mha.toy.train's default)
EARLY, LATE = 4, 30  # the in-context score compares the loss at these two positions (0-based)
PREVIOUS_HEAD = 0.3  # a head of layer 0 with at least this previous-token score counts as a previous-token head


@dataclass(frozen=True)
class InductionSetting:
    """One model and its training (everything but the seed).

    Args:
        layers: attention layers.
        d_model: features per position.
        heads: heads per layer.
        vocab: distinct tokens.
        seq: tokens per sequence.
        periods: (shortest, longest) period of the repeats.
        steps: training steps, one fresh batch each.
        batch: sequences per batch.
        lr: Adam's learning rate.
        eval_every: steps between two points of the training curve.
        positions: how the model tells positions apart (lesson 09): "learned" (default), "rope", ...
    """

    layers: int = 2
    d_model: int = 32
    heads: int = 2
    vocab: int = 32
    seq: int = 32
    periods: tuple[int, int] = (6, 16)
    steps: int = 800
    batch: int = 32
    lr: float = 1e-2
    eval_every: int = 25
    positions: str = "learned"

    def __post_init__(self):
        object.__setattr__(self, "periods", tuple(self.periods))
        check_scheme(self.positions)
        self.task()  # checks vocab, seq and periods

    def task(self) -> RepeatedTokens:
        return RepeatedTokens(self.vocab, self.seq, self.periods)

    def config(self) -> AttentionOnlyConfig:
        return AttentionOnlyConfig(
            self.vocab, self.seq, self.d_model, self.heads, relations=1, layers=self.layers, positions=self.positions
        )

    @property
    def label(self) -> str:
        scheme = "" if self.positions == "learned" else f", {self.positions}"
        return (
            f"{self.layers} layer{'s' if self.layers > 1 else ''} x {self.heads} heads, d_model {self.d_model}{scheme}"
        )


def parameters_of(setting: InductionSetting) -> int:
    """Trainable parameters of the setting's model, by formula (no model is built).

    Token embeddings, a learned position table if any, `layers` attention layers, one readout with its bias.
    """
    d, v = setting.d_model, setting.vocab
    table = setting.seq * d if setting.positions == "learned" else 0
    return v * d + table + setting.layers * parameter_count(d, setting.heads) + d * v + v


def matched(setting: InductionSetting, layers: int, heads: int) -> InductionSetting:
    """The same model with `layers` layers of `heads` heads, made just wide enough to have at least the
    parameters of `setting`.

    d_model grows in steps of `heads` (each head must get the same width; an even one for RoPE).
    """
    step = heads * (2 if setting.positions == "rope" else 1)
    target = parameters_of(setting)
    d = step
    while parameters_of(dataclasses.replace(setting, layers=layers, heads=heads, d_model=d)) < target:
        d += step
    return dataclasses.replace(setting, layers=layers, heads=heads, d_model=d)


def main_settings(two_layers: InductionSetting = InductionSetting()) -> list[InductionSetting]:
    """The lesson's pair: one layer with as many heads as the two layers have in all, given the width to match
    the two-layer model's parameters; and the two-layer model."""
    return [matched(two_layers, 1, two_layers.layers * two_layers.heads), two_layers]


def build(setting: InductionSetting, seed: int):
    """The setting's model, untrained, with starting weights that depend on `seed` alone and are the same on every
    CPU (`mha.toy.models.build_model`, then `mha._portable.same_linears`: the phase change would amplify the last
    bit by which CPUs differ in PyTorch's own uniform draws)."""
    return same_linears(build_model(setting.config(), seed), seed)


def analysis_batch(task: RepeatedTokens, n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed sequences every analysis uses (and their periods).

    Shape:
        returns tokens (n, seq) and periods (n,), int64.
    """
    return task.sample_periods(n, torch.Generator().manual_seed(ANALYSIS_SEED))


@torch.no_grad()
def predictable_accuracy(model, tokens: torch.Tensor, head_mask: torch.Tensor | None = None) -> float:
    """Accuracy of the next-token guess on the predictable positions (`mha.circuits.repeats.predictable`).

    Shape:
        tokens (batch, seq); head_mask (layers * heads,) or None; returns a float.
    """
    logits = model(tokens, head_mask=head_mask)[:, :, 0]  # (batch, seq, vocab)
    where = predictable(tokens)  # (batch, seq)
    right = logits[:, :-1].argmax(dim=-1) == tokens[:, 1:]  # (batch, seq - 1): the guess is the next token
    return right[where[:, :-1]].double().mean().item()


@torch.no_grad()
def position_losses(model, tokens: torch.Tensor) -> torch.Tensor:
    """The next-token loss at every position, averaged over the batch (the last position has no next token).

    Shape:
        tokens (batch, seq); returns (seq - 1,) float64.
    """
    logits = model(tokens)[:, :-1, 0]  # (batch, seq - 1, vocab)
    losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # (batch, seq - 1)
    return losses.double().mean(dim=0)


def in_context_score(losses, early: int = EARLY, late: int = LATE) -> float:
    """Olsson et al.'s in-context learning score: the loss late in the context minus the loss early in it.

    Negative when the model predicts better with more context; the more negative, the more it learned in context.

    Args:
        losses: the mean loss at every position.
        early, late: the two positions compared (default: 4 and 30).

    Shape:
        losses (positions,); returns a float.
    """
    losses = torch.as_tensor(losses, dtype=torch.float64)
    if not 0 <= early < late < len(losses):
        raise ValueError(f"need 0 <= early < late < {len(losses)} positions, got early={early}, late={late}")
    return (losses[late] - losses[early]).item()


def halfway(curve: list[dict]) -> int | None:
    """The step at which the held-out loss first fell halfway from its start (step 0) to its end.

    Args:
        curve: [{"step": int, "loss": float}, ...] from step 0 to the last step.

    Returns:
        the step, or None for a curve that never falls.
    """
    start, end = curve[0]["loss"], curve[-1]["loss"]
    if not end < start:
        return None
    middle = (start + end) / 2
    return next(point["step"] for point in curve if point["loss"] <= middle)


def steepest(curve: list[dict]) -> dict:
    """The interval of the curve over which the loss fell fastest: {"from": step, "to": step, "drop": loss}."""
    pairs = list(zip(curve, curve[1:]))
    a, b = max(pairs, key=lambda ab: (ab[0]["loss"] - ab[1]["loss"]) / (ab[1]["step"] - ab[0]["step"]))
    return {"from": a["step"], "to": b["step"], "drop": a["loss"] - b["loss"]}


def run(setting: InductionSetting, seed: int, progress: bool = True, analysis: int = 512):
    """Train one model from seed `seed` and measure everything the lesson shows.

    Returns:
        (record, model): the record is plain data (see the module docstring), the model is the trained one.
    """
    task = setting.task()
    model = build(setting, seed)
    eval_tokens, eval_targets = task.sample(256, torch.Generator().manual_seed(EVAL_SEED))
    start = evaluate(model, eval_tokens, eval_targets)
    config = TrainConfig(
        steps=setting.steps,
        batch=setting.batch,
        lr=setting.lr,
        seed=seed,
        eval_every=setting.eval_every,
        eval_batch=256,
        eval_seed=EVAL_SEED,
    )
    begun = time.perf_counter()
    result = train(model, task, config, progress=progress)
    curve = [{"step": 0, "loss": start["loss"]}] + [{"step": h["step"], "loss": h["loss"]} for h in result.history]
    tokens, _ = analysis_batch(task, analysis)
    record = {
        **dataclasses.asdict(setting),
        "label": setting.label,
        "seed": seed,
        "params": count_parameters(model),
        "curve": curve,
        "halfway": halfway(curve),
        "steepest": steepest(curve),
        **measure(model, tokens),
    }
    record["seconds"] = time.perf_counter() - begun
    return record, model


@torch.no_grad()
def measure(model, tokens: torch.Tensor) -> dict:
    """Accuracy, head scores, in-context losses, and (two layers or more) ablation and composition.

    Shape:
        tokens (batch, seq): repeated sequences. Returns plain data.
    """
    layers, heads = model.config.layers, model.config.heads
    _, weights = model(tokens, need_weights=True)  # (batch, layers * heads, q_pos, k_pos)
    previous = previous_token_scores(weights).view(layers, heads)
    induction = induction_scores(weights, tokens).view(layers, heads)
    losses = position_losses(model, tokens)
    out = {
        "accuracy": predictable_accuracy(model, tokens),
        "previous": previous.tolist(),
        "induction": induction.tolist(),
        "losses": losses.tolist(),
        "in_context": in_context_score(losses),
    }
    if layers < 2:
        return out
    prev_head = int(previous[0].argmax())  # layer 0's best previous-token head
    ind_head = int(induction[-1].argmax())  # the last layer's best induction head
    out["previous_head"], out["induction_head"] = [0, prev_head], [layers - 1, ind_head]
    # every head of layer 0 that looks at the previous token: a second one can stand in for the first
    previous_heads = [h for h in range(heads) if previous[0, h] >= PREVIOUS_HEAD] or [prev_head]
    out["previous_heads"] = [[0, h] for h in previous_heads]

    def ablated(removed):
        mask = ablation_mask(layers, heads, removed)
        _, w = model(tokens, need_weights=True, head_mask=mask)
        return {
            "accuracy": predictable_accuracy(model, tokens, mask),
            "induction": induction_scores(w[:, (layers - 1) * heads + ind_head], tokens).item(),
        }

    ablation = [
        {"layer": layer, "head": head, **ablated((layer, head))} for layer in range(layers) for head in range(heads)
    ]
    out["without_previous_heads"] = ablated([(0, h) for h in previous_heads])
    out["without_first_layer"] = ablated([(0, h) for h in range(heads)])  # a weaker previous-token head goes too
    out["ablation"] = ablation
    if model.config.positions != "rope":  # RoPE turns q and k by position between W_Q and W_K: no single W_QK
        first, last = model.layers[0], model.layers[-1]
        out["composition"] = {kind: composition_scores(first, last, kind).tolist() for kind in ("k", "q", "v")}
    return out


def run_all(settings: list[InductionSetting], seeds: list[int], progress: bool = True, log=None) -> list[dict]:
    """Every setting with every seed; one record each (without the models)."""
    records = []
    for setting in settings:
        for seed in seeds:
            record, _ = run(setting, seed, progress=progress)
            records.append(record)
            if log is not None:
                print(f"{setting.label}, seed {seed}: {record['accuracy']:.0%} in {record['seconds']:.0f} s", file=log)
    return records


# --- tables ------------------------------------------------------------------------------------------------------


def percent(x: float) -> str:
    """A whole percent; "<1%" rather than a 0% that is not exactly 0."""
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"


def format_accuracy(records: list[dict], chance: dict | None = None) -> str:
    """Accuracy on the predictable positions: one row per model, one column per seed, and the halfway step."""
    seeds = sorted({r["seed"] for r in records})
    labels = list(dict.fromkeys(r["label"] for r in records))
    width = max(len(label) for label in labels) + 2
    lines = [f"{'model':<{width}}{'params':>7}  " + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + "   mean"]
    for label in labels:
        rows = {r["seed"]: r for r in records if r["label"] == label}
        accs = [rows[s]["accuracy"] for s in seeds if s in rows]
        params = next(iter(rows.values()))["params"]
        cells = "".join(f"{percent(rows[s]['accuracy']) if s in rows else '-':>9}" for s in seeds)
        lines.append(f"{label:<{width}}{params:>7,}  {cells}  {percent(sum(accs) / len(accs)):>5}")
    deep = [label for label in labels if any(r["label"] == label and r["layers"] > 1 for r in records)]
    if deep:
        lines.append("")
        lines.append(
            "the step at which the held-out loss first fell halfway from its start to its end (the phase change):"
        )
    for label in deep:
        rows = {r["seed"]: r for r in records if r["label"] == label}
        cells = "".join(f"{str(rows[s]['halfway']) if s in rows else '-':>9}" for s in seeds)
        lines.append(f"{label:<{width}}{'':>7}  {cells}")
    if chance:
        lines.append("")
        lines.append(
            "guesses that do not find the earlier occurrence: "
            + ", ".join(f"{name} {percent(value)}" for name, value in chance.items())
        )
    return "\n".join(lines)


def format_ablation(record: dict) -> str:
    """One two-layer run: accuracy and the induction head's score with each head removed in turn (and with every
    previous-token head removed at once, when there are several)."""
    layer_i, head_i = record["induction_head"]
    induction_head = head_name(layer_i, head_i)
    previous = [head_name(*pair) for pair in record["previous_heads"]]
    lines = [
        f"seed {record['seed']}: previous-token head{'s' if len(previous) > 1 else ''} {', '.join(previous)}; "
        f"induction head {induction_head}",
        f"{'removed':<12}{'accuracy':>10}{induction_head + ' induction score':>30}",
        f"{'none':<12}{percent(record['accuracy']):>10}{record['induction'][layer_i][head_i]:>30.2f}",
    ]
    for row in record["ablation"]:
        pair = [row["layer"], row["head"]]
        note = "  <- previous-token head" if pair in record["previous_heads"] else ""
        note = "  <- induction head" if pair == record["induction_head"] else note
        lines.append(f"{head_name(*pair):<12}{percent(row['accuracy']):>10}{row['induction']:>30.2f}{note}")
    if len(previous) > 1:
        both = record["without_previous_heads"]
        name = "L0." + "+".join(f"H{h}" for _, h in record["previous_heads"])
        lines.append(f"{name:<12}{percent(both['accuracy']):>10}{both['induction']:>30.2f}  <- all of them")
    return "\n".join(lines)


def summary(records: list[dict]) -> list[dict]:
    """Per two-layer run: the heads found; accuracy and the induction head's score with the best previous-token
    head removed, with every previous-token head removed, and with each other head of layer 0 (the lowest)."""
    out = []
    for r in records:
        if r["layers"] < 2:
            continue
        first = [row for row in r["ablation"] if row["layer"] == 0]
        prev = next(row for row in first if [row["layer"], row["head"]] == r["previous_head"])
        others = [row for row in first if [row["layer"], row["head"]] not in r["previous_heads"]]
        out.append(
            {
                "seed": r["seed"],
                "previous_head": r["previous_head"],
                "previous_heads": r["previous_heads"],
                "induction_head": r["induction_head"],
                "accuracy": r["accuracy"],
                "without_previous": prev["accuracy"],
                "without_previous_heads": r["without_previous_heads"]["accuracy"],
                "without_other_lowest": min(row["accuracy"] for row in others) if others else None,
                "induction": r["induction"][r["induction_head"][0]][r["induction_head"][1]],
                "induction_without_previous_heads": r["without_previous_heads"]["induction"],
                "k_composition": r["composition"]["k"][r["previous_head"][1]][r["induction_head"][1]]
                if "composition" in r
                else None,
            }
        )
    return out


def format_summary(records: list[dict]) -> str:
    """One line per two-layer run: the heads, accuracy without the best previous-token head, without every
    previous-token head, without another head of layer 0; the induction score before and after."""
    lines = [
        f"{'':<6}{'previous-':>11}{'induction':>11}{'':>10}{'accuracy without ...':^38}{'induction score':^20}",
        f"{'seed':<6}{'token heads':>11}{'head':>11}{'accuracy':>10}{'best prev':>11}{'all prev':>11}"
        f"{'other L0':>11}{'':>3}{'intact':>9}{'w/o prev':>10}{'K-comp':>9}",
    ]
    for s in summary(records):
        names = "+".join(f"H{h}" for _, h in s["previous_heads"])
        other = "-" if s["without_other_lowest"] is None else percent(s["without_other_lowest"])
        k = "-" if s["k_composition"] is None else f"{s['k_composition']:.2f}"
        lines.append(
            f"{s['seed']:<6}{'L0.' + names:>11}{head_name(*s['induction_head']):>11}{percent(s['accuracy']):>10}"
            f"{percent(s['without_previous']):>11}{percent(s['without_previous_heads']):>11}{other:>11}{'':>5}"
            f"{s['induction']:>7.2f}{s['induction_without_previous_heads']:>10.2f}{k:>9}"
        )
    return "\n".join(lines)
