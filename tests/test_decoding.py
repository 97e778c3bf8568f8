"""Lesson 07's wing: the next-word language, the writer, published configurations, timing and sharing experiments."""

import json
import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mha.decoding import configs, intensity, sharing, speed, writer
from mha.decoding.__main__ import main
from mha.decoding.model import DecoderConfig, build_decoder
from mha.kv_cache import cache_bytes
from mha.toy.language import INDEX, NextWordLanguage, TemplateLanguage, is_sentence, make_sentence
from mha.toy.tasks import IGNORE_INDEX


def test_next_word_targets_are_the_following_tokens():
    tokens, targets = NextWordLanguage().sample(4, torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 28) and targets.shape == (4, 28, 1)
    for b in range(4):
        n = int((tokens[b] != INDEX["<pad>"]).sum())
        assert targets[b, : n - 1, 0].tolist() == tokens[b, 1:n].tolist()
        assert (targets[b, n - 1 :, 0] == IGNORE_INDEX).all()  # nothing after the final "."


def test_next_word_draws_the_same_sentences_as_the_template_language():
    a, _ = NextWordLanguage().sample(8, torch.Generator().manual_seed(3))
    b, _ = TemplateLanguage().sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_is_sentence_accepts_every_sentence_of_the_language_and_rejects_broken_ones():
    for s in TemplateLanguage().sample_sentences(300, torch.Generator().manual_seed(1)):
        assert is_sentence(s.words), s
    course = make_sentence("apple", "iphone", "but", "expensive").words
    assert is_sentence(course)
    broken = [
        course[:-1],  # no final "."
        course[1:],  # no company
        ("iphone",) + course[1:],  # a product where the company goes
        course[:5] + (",", "it") + course[7:],  # no connective
        course + (".",),
        ("last", "week") + course,  # an opener without its comma
    ]
    for words in broken:
        assert not is_sentence(words), words


@pytest.mark.slow
def test_the_writer_learns_to_write_sentences_with_and_without_the_cache():
    result = writer.train_writer(writer.WriterSetting(steps=150), seed=0, progress=False)
    prompts = writer.random_prompts(40)
    texts = writer.continue_text(result.model, prompts)
    assert texts == writer.continue_text(result.model, prompts, use_cache=False)
    assert writer.grammatical_share(texts) >= 0.9
    assert all(t.startswith(p) for t, p in zip(texts, prompts))


def test_an_unknown_word_in_a_prompt_is_named():
    with pytest.raises(ValueError, match=r"not in the language's vocabulary: \['phone'\]"):
        writer.encode_words("apple released a new phone")


def test_published_configurations_are_consistent_and_cited():
    assert len({c.family for c in configs.PUBLISHED}) >= 3
    for c in configs.PUBLISHED:
        assert c.heads % c.kv_heads == 0, c
        assert "http" in c.source or "arXiv" in c.source, c
    kinds = {c.kind for c in configs.PUBLISHED}
    assert kinds == {"MHA", "GQA", "MQA"}


def test_cache_table_uses_the_formula_and_compares_mha_and_mqa():
    rows = configs.cache_table()
    assert len(rows) == 2 * len(configs.PUBLISHED)
    llama = next(r for r in rows if r["name"] == "Llama 3.1 8B" and r["context"] == 8192)
    assert llama["bytes"] == cache_bytes(32, 1, 8, 128, 8192, 2) == 2**30  # 1 GiB
    assert llama["bytes_mha"] == 4 * llama["bytes"] and llama["bytes_mqa"] == llama["bytes"] // 8
    text = configs.format_cache_table(rows)
    assert "Llama 3.1 8B" in text and "1.0 GiB" in text and "128k" in text


def test_fmt_bytes():
    assert configs.fmt_bytes(512) == "512 B"
    assert configs.fmt_bytes(2**30) == "1.0 GiB"
    assert configs.fmt_bytes(1.5 * 2**20) == "1.5 MiB"


TINY = speed.SpeedSetting(
    d_model=16, heads=4, layers=1, contexts=(4, 8, 16), kv_heads=(4, 1), kv_context=8, kv_batch=1, min_run_time=0.01
)


def test_speed_runs_and_reports_what_it_timed():
    rows = speed.per_token(TINY)
    assert [r["context"] for r in rows] == [4, 8, 16]
    assert all(r["no_cache_s"] > 0 and r["cache_s"] > 0 for r in rows)
    assert "slope over the last 3 contexts" in speed.format_per_token(rows)
    kv = speed.by_kv_heads(TINY)
    assert [r["kv_heads"] for r in kv] == [4, 1]
    assert kv[0]["cache_bytes"] == 4 * kv[1]["cache_bytes"]
    assert "kv_heads 4 -> 1" in speed.format_kv_heads(kv)


def test_speed_target_ratio_and_slopes():
    rows = [{"context": c, "ratio": c / 100, "no_cache_s": c**2, "cache_s": c} for c in (256, 512, 1024)]
    assert speed.target_ratio(rows) == pytest.approx(10.24)
    assert speed.slopes([256, 512, 1024], [r["no_cache_s"] for r in rows]) == pytest.approx(2.0)
    assert "target at least 5x: reached" in speed.format_per_token(rows)
    assert "no cache 2.00, cache 1.00, speed-up 1.00 (no cache minus cache: x2.0 per doubling" in (
        speed.format_per_token(rows)
    )


def test_bits_task_names_each_bit_of_the_token_before():
    task = sharing.BitsTask(bits=3, seq=5)
    tokens, targets = task.sample(4, torch.Generator().manual_seed(0))
    assert task.vocab == 8 and task.names == ["bit 0", "bit 1", "bit 2"]
    assert tokens.shape == (4, 5) and targets.shape == (4, 5, 3)
    assert (targets[:, 0] == IGNORE_INDEX).all()
    rebuilt = sum(targets[:, 1:, k] << k for k in range(3))
    assert torch.equal(rebuilt, tokens[:, :-1])
    with pytest.raises(ValueError, match="bits must be a positive integer"):
        sharing.BitsTask(bits=0)


def test_each_task_has_its_widths_and_training_unless_told():
    settings = sharing.settings_for(kv_heads=(8, 1))
    assert [(s.task, s.d_model, s.kv_heads) for s in settings] == [
        ("offsets", 64, 8), ("offsets", 64, 1), ("template", 64, 8), ("template", 64, 1),
        ("bits", 64, 8), ("bits", 64, 1), ("bits", 16, 8), ("bits", 16, 1),
    ]  # fmt: skip
    assert {(s.task, s.d_model) for s in sharing.settings_for(d_models=(32,))} == {(t, 32) for t in sharing.TASKS}
    narrow = sharing.SharingSetting("bits", kv_heads=1, d_model=16)
    assert (narrow.steps, narrow.batch, narrow.lr, narrow.d_head, narrow.value_width) == (600, 64, 1e-2, 2, 2)
    assert sharing.SharingSetting("offsets", lr=1e-3).lr == 1e-3


@pytest.mark.slow
def test_sharing_a_narrow_value_head_costs_what_it_cannot_carry():
    """Six bits from one position: eight value heads of 2 numbers carry them, one does not (the lesson's case)."""
    runs = {kv: sharing.run(sharing.SharingSetting("bits", kv, d_model=16), seed=0, progress=False) for kv in (8, 1)}
    assert runs[8]["accuracy"] > 0.95 and runs[1]["accuracy"] < 0.85
    assert runs[1]["value_width"] == 2 and runs[8]["value_width"] == 16
    assert len(runs[1]["looks"]) == 8 and len(runs[1]["looks"][0]) == 6


@pytest.mark.slow
def test_sharing_runs_one_model_per_setting_and_summarises():
    settings = [sharing.SharingSetting("offsets", kv, steps=30) for kv in (8, 1)]
    settings.append(sharing.SharingSetting("template", 2, steps=30))
    records = [sharing.run(s, seed=0, progress=False) for s in settings]
    assert records[0]["params"] > records[1]["params"]  # fewer key/value rows
    assert len(records[0]["looks"]) == 8 and len(records[0]["looks"][0]) == 3
    text = sharing.format_summary(records) + sharing.format_looks(records)
    for label in ("offsets, d_head 8, kv_heads 8 (MHA)", "offsets, d_head 8, kv_heads 1 (MQA)", "template"):
        assert label in text


def test_sharing_setting_checks_its_task_and_sizes():
    with pytest.raises(ValueError, match="task must be one of"):
        sharing.SharingSetting("poems")
    with pytest.raises(ValueError, match="heads=8 is not divisible by kv_heads=3"):
        sharing.SharingSetting("offsets", kv_heads=3)


def test_cache_sizes_command_writes_json(tmp_path, capsys):
    path = tmp_path / "sizes.json"
    main(["cache-sizes", "--json", str(path)])
    out = capsys.readouterr().out
    assert "Falcon 7B" in out and "sources:" in out
    payload = json.loads(path.read_text())
    assert payload["provenance"]["command"].startswith("python -m mha.decoding cache-sizes")
    assert len(payload["rows"]) == 2 * len(configs.PUBLISHED)


def test_a_bad_option_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["sharing", "--kv-heads", "3", "--seeds", "0", "--quiet"])
    assert "heads=8 is not divisible by kv_heads=3" in capsys.readouterr().err


# --- FLOPs against bytes ------------------------------------------------------------------------------------------


def test_the_step_cost_counts_the_flops_pytorch_counts_in_a_cached_step():
    config = DecoderConfig(vocab=50, seq=40, d_model=32, heads=4, kv_heads=2, layers=2)
    model, tokens = build_decoder(config, 0), torch.randint(50, (3, 21), generator=torch.Generator().manual_seed(0))
    cache = model.new_cache(3)
    with torch.no_grad():
        model.forward_cached(tokens[:, :20], cache)
        with FlopCounterMode(display=False) as counter:
            model.forward_cached(tokens[:, 20:], cache)  # one step: 21 positions to attend to
    cost = intensity.step_cost(intensity.decoder_shape(config), seq=21, batch=3, bytes_per_number=8)
    assert cost.flops == counter.get_total_flops()
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert intensity.decoder_shape(config).weights == linear_weights
    assert cost.cache_bytes == sum(c.keys[:, :, :21].nbytes + c.values[:, :, :21].nbytes for c in cache)


def test_llama_shape_gives_its_published_parameter_count():
    llama = intensity.LLAMA_3_1_8B
    embedding, norms = llama.vocab * llama.d_model, (2 * llama.layers + 1) * llama.d_model
    assert llama.weights + embedding + norms == 8_030_261_248  # "8.03B params" on the model card
    c = next(c for c in configs.PUBLISHED if c.name == llama.name)
    assert (c.layers, c.heads, c.kv_heads, c.d_head) == (llama.layers, llama.heads, llama.kv_heads, llama.d_head)


def test_intensity_of_the_weights_is_the_batch_and_of_the_cache_the_group():
    llama = intensity.LLAMA_3_1_8B
    for batch in (1, 8):
        cost = intensity.step_cost(llama, seq=4096, batch=batch, bytes_per_number=2)
        assert cost.weight_flops / cost.weight_bytes == batch  # bfloat16: 2 FLOPs per weight per sequence, 2 bytes
        assert cost.cache_flops / cost.cache_bytes == llama.heads // llama.kv_heads  # GQA: group FLOPs per byte
        assert cost.intensity == cost.flops / cost.bytes
    with pytest.raises(ValueError, match="seq must be a positive integer"):
        intensity.step_cost(llama, seq=0)


def test_balance_points_come_from_the_datasheet_figures():
    h100 = intensity.machine("H100 SXM")
    assert h100.balance == pytest.approx(989.5e12 / 3.35e12) and "H100 datasheet" in h100.source
    assert intensity.machine("H100 SXM", "float32").balance == pytest.approx(67e12 / 3.35e12)
    with pytest.raises(ValueError, match="device must be one of"):
        intensity.machine("Z80")
    rows = intensity.intensity_table()
    assert all(r["intensity"] < r["balance"] for r in rows), "every step in the table waits on memory"
    assert all(r["memory_s"] > 10 * r["compute_s"] for r in rows)
    text = intensity.format_intensity(rows)
    assert "Llama 3.1 8B" in text and "balance: peak FLOP/s / memory bandwidth" in text


def test_intensity_command_prints_and_writes(tmp_path, capsys):
    path = tmp_path / "intensity.json"
    main(["intensity", "--json", str(path)])
    out = capsys.readouterr().out
    assert "Llama 3.1 8B" in out and "3.35 TB/s" in out
    assert len(json.loads(path.read_text())["rows"]) == len(intensity.lesson_cases())


# --- the README's figures come from the recordings ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _readme_row(lesson: str) -> str:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| {lesson} |")]
    assert len(rows) == 1, f"one row for lesson {lesson} in the README's table, found {len(rows)}"
    return rows[0]


def test_readme_figures_of_lesson_07_are_the_recorded_ones():
    row = _readme_row("07")
    timed = json.loads((ROOT / "notebooks/results/07_speed_cpu.json").read_text())
    found = re.search(r"(\d+)x faster at ([\d,]+) tokens", row)
    assert found, "the README's lesson-07 row quotes the cached step's speed-up"
    at = int(found[2].replace(",", ""))
    [ratio] = [r["ratio"] for r in timed["per_token"] if r["context"] == at]
    assert int(found[1]) == round(ratio), f"README says {found[1]}x at {at} tokens, 07_speed_cpu.json {ratio:.1f}x"

    runs = json.loads((ROOT / "notebooks/results/07_sharing.json").read_text())["runs"]
    summary = {(s["task"], s["d_head"], s["kv_heads"]): s for s in sharing.summarize(runs)}
    found = re.search(r"d_head (\d+), from (\d+)% with 8 key/value heads to (\d+)% with 1 \((\d+) seeds\)", row)
    assert found, "the README's lesson-07 row quotes what one key/value head costs on the bits task"
    d_head, full, shared, seeds = (int(x) for x in found.groups())
    assert full == round(100 * summary["bits", d_head, 8]["accuracy"])
    assert shared == round(100 * summary["bits", d_head, 1]["accuracy"])
    assert seeds == len(summary["bits", d_head, 1]["seeds"])

    found = re.search(r"Llama 3.1 8B: (\d+\.\d+) FLOPs per byte read, where an H100 SXM can do (\d+)\)", row)
    assert found, "the README's lesson-07 row quotes the count of one decoding step"
    llama = intensity.step_cost(intensity.LLAMA_3_1_8B, seq=8_192, batch=1)
    assert found[1] == f"{llama.intensity:.1f}" and found[2] == f"{intensity.machine('H100 SXM').balance:.0f}"


# --- the pictures show every element they promise ----------------------------------------------------------------


def _record(task, d_head, kv_heads, seed, accuracy, relations):
    return {"task": task, "d_head": d_head, "kv_heads": kv_heads, "seed": seed, "accuracy": accuracy,
            "relations": relations, "relation_accuracy": [accuracy] * len(relations)}  # fmt: skip


def test_accuracy_plot_draws_relationships_and_seeds_beside_the_mean_even_when_all_are_equal():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mha.decoding import plots

    names = ["i-1", "i-2", "i-3"]
    runs = [_record("offsets", 8, kv, seed, 1.0, names) for kv in (8, 4, 2, 1) for seed in (0, 1, 2)]
    runs += [_record("bits", 2, kv, seed, 0.7, [f"bit {k}" for k in range(6)]) for kv in (8, 1) for seed in (0, 1)]
    axes = plots.accuracy_by_kv_heads(runs)
    assert len([ax for ax in axes if ax.get_visible()]) == 2
    lines = {line.get_label(): line for line in axes[0].get_lines()}
    xs = [tuple(lines[name].get_xdata()) for name in [*names, "mean of all"]]
    assert len(set(xs)) == 4, "each relationship's line and the mean's sit at their own x"
    dots = [tuple(xy) for c in axes[0].collections for xy in c.get_offsets()]
    assert len(dots) == 12 and len({x for x, _ in dots}) == 12, "one dot per run, each at its own x"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == [
        "8\nreads 64",
        "4\nreads 32",
        "2\nreads 16",
        "1\nreads 8",
    ]
    bits_lines = {line.get_label(): line for line in axes[1].get_lines()}
    assert lines["guessing"].get_ydata()[0] == 1 / 64 and bits_lines["guessing"].get_ydata()[0] == 0.5
    plt.close("all")


def test_cache_plot_keeps_the_tables_marks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mha.decoding import plots

    ax = plots.cache_sizes(configs.cache_table(), context=131_072)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "Mistral 7B+*\nGQA" in labels and "Gemma 7B+\nMHA" in labels and "Llama 3.1 8B\nGQA" in labels
    hatched = [bar for bar in ax.patches if bar.get_hatch()]
    assert len(hatched) == 3 * sum("+" in label for label in labels)
    notes = " ".join(t.get_text() for t in ax.texts)
    assert "+ (hatched): longer than the model was published for" in notes and "* a sliding window" in notes
    plt.close("all")
