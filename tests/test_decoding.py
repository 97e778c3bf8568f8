"""Lesson 07's wing: the next-word language, the writer, published configurations, timing and sharing experiments."""

import json

import pytest
import torch

from mha.decoding import configs, sharing, speed, writer
from mha.decoding.__main__ import main
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
