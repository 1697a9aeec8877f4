"""xMIND: MIND's behaviours with translated news, read in non-Latin scripts by both tokenizer kinds."""

import pytest
from mind_files import BEHAVIORS, NEWS, write_mind

from once.assembly import load_data
from once.errors import DataError
from once.recipe import load_recipe
from once.train import train
from once_plugins.datasets.parts import XmindOptions
from once_plugins.datasets.xmind import XmindDataset

TRANSLATED = {  # N1..N4 of mind_files.NEWS in Tamil, Thai, Chinese and Georgian
    "N1": ("போட்டி சமநிலையில் முடிந்தது", "இரண்டு அணிகள் சந்தித்தன."),
    "N2": ("หุ้นขึ้นอีกครั้ง", "ตลาดฟื้นตัว"),
    "N3": ("冠军赢得决赛", ""),
    "N4": ("ქარიშხალი სანაპიროს დაარტყა", "ქარი და წვიმა."),
}


def write_xmind(root, translated=TRANSLATED, splits=("xMINDsmall_train", "xMINDsmall_dev")):
    for split in splits:
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{nid}\t{title}\t{abstract}\n" for nid, (title, abstract) in translated.items())
        (folder / "news.tsv").write_text(lines, encoding="utf8")
    return root


def read(tmp_path, **options):
    mind = write_mind(tmp_path / "mind", splits=("MINDsmall_train", "MINDsmall_dev"))
    news = options.pop("news", None) or write_xmind(tmp_path / "xMIND" / "mix")
    return XmindDataset(XmindOptions(path=mind, news=news, **options)).read()


def test_translations_replace_the_english_texts_and_mind_keeps_the_rest(tmp_path):
    corpus = read(tmp_path)
    items = corpus.items
    assert items.ids == ["", "N1", "N2", "N3", "N4"]
    assert items.text["title"][1:] == [TRANSLATED[n][0] for n in ("N1", "N2", "N3", "N4")]
    assert items.text["abstract"][3] == ""
    assert items.categories["category"][1:] == ["sports", "finance", "sports", "weather"]  # MIND's own
    assert "title_en" not in items.text and all(e == [] for e in items.entities["title"])
    train = corpus.splits["train"]
    assert list(train.impression_ids) == ["1", "2", "3"] and list(train.candidates[0]) == [2, 3, 4]
    assert list(train.labels[0]) == [0, 1, 0] and list(train.history[0]) == [1, 3]


def test_keep_english_keeps_mind_texts_and_their_entities(tmp_path):
    linked = '[{"WikidataId": "Q1", "SurfaceForms": ["match"]}]'
    news = [NEWS[0].replace("\t[]\t[]", f"\t{linked}\t[]"), *NEWS[1:]]
    mind = write_mind(tmp_path / "mind", news=news)
    options = XmindOptions(path=mind, news=write_xmind(tmp_path / "x"), keep_english=True)
    items = XmindDataset(options).read().items
    assert items.text["title_en"][1] == "The match ended in a draw"
    assert items.entities["title_en"][1] == [("Q1", "match")] and items.entities["title"][1] == []
    assert items.text["title"][1] == TRANSLATED["N1"][0]


def test_missing_translations_are_refused_or_kept_in_english(tmp_path):
    partial = {n: t for n, t in TRANSLATED.items() if n != "N3"}
    news = write_xmind(tmp_path / "x", partial)
    with pytest.raises(DataError, match=r"1 of 4 MIND news have no translation \(first: 'N3'\)") as error:
        read(tmp_path, news=news)
    assert "dataset.untranslated: english" in str(error.value)
    corpus = read(tmp_path, news=news, untranslated="english")
    assert corpus.items.text["title"][3] == "Champion wins the final"
    assert any("1 news untranslated" in note for note in corpus.notes)


def test_bad_translation_files_name_the_file_line_and_key(tmp_path):
    news = write_xmind(tmp_path / "x")
    path = news / "xMINDsmall_dev" / "news.tsv"
    path.write_text("N1\tonly a title\n", encoding="utf8")
    with pytest.raises(DataError, match="expected 3 tab-separated columns") as error:
        read(tmp_path, news=news)
    assert f"{path}:1" in str(error.value)
    with pytest.raises(DataError, match="xMIND folder not found") as error:
        read(tmp_path, news=tmp_path / "nowhere")
    assert "dataset.news" in str(error.value)
    (news / "xMINDsmall_train" / "news.tsv").unlink()
    with pytest.raises(DataError, match="file not found") as error:
        read(tmp_path, news=news)
    assert "xMINDsmall_train" in str(error.value)


def test_xmind_recipe_trains_on_translated_titles(tmp_path, registry):
    mind = write_mind(tmp_path / "mind", behaviors=BEHAVIORS * 8, splits=("MINDsmall_train", "MINDsmall_dev"))
    news = write_xmind(tmp_path / "xMIND" / "mix")
    overrides = [f"dataset.path={mind}", f"dataset.news={news}", "items.text={title: 8}", "train.epochs=1"]
    overrides += ["model.item.word_dim=16", "model.item.heads=2", "model.item.head_dim=8", "model.item.query_dim=8"]
    overrides += ["model.user.heads=2", "model.user.query_dim=8", "train.batch_size=8", "device=cpu"]
    resolved = load_recipe("xmind-nrms", registry, overrides)
    data = load_data(resolved)
    vocab = data.tokenizer_state["vocab"]
    assert [vocab[i] for i in data.features["title"][3].tolist()] == [*"冠军赢得决赛", "<pad>", "<pad>"]
    result = train(resolved, runs_root=tmp_path / "runs")
    assert result.test is None and 0 <= result.epochs[0]["dev"]["auc"] <= 1 and result.epochs[0]["train_loss"] > 0


def test_a_multilingual_transformers_tokenizer_reads_every_script(tmp_path, registry):
    from transformers import AutoTokenizer

    from once_plugins.lm.tiny import write_tiny_model

    texts = [t for pair in TRANSLATED.values() for t in pair if t] * 20
    folders = [tmp_path / family for family in ("llama", "bert")]  # byte-level BPE and WordPiece, as a multilingual
    for folder in folders:  # LLaMA-family or BERT-family checkpoint has, trained here on the translations
        write_tiny_model(folder.name, folder, texts, layers=1, hidden=16, seed=0)
    mind = write_mind(tmp_path / "mind", splits=("MINDsmall_train", "MINDsmall_dev"))
    news = write_xmind(tmp_path / "xMIND" / "mix")
    for folder in folders:
        tokenizer = f"tokenizer={{name: transformers, path: {folder}}}"
        resolved = load_recipe(
            "xmind-nrms",
            registry,
            [f"dataset.path={mind}", f"dataset.news={news}", tokenizer, "items.text={title: 64}"],
        )
        data = load_data(resolved)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        for row, nid in enumerate(("N1", "N2", "N3", "N4"), 1):
            ids = [i - 1 for i in data.features["title"][row].tolist() if i]  # the engine's ids are one up
            assert tokenizer.unk_token_id not in ids
            normalizer = tokenizer.backend_tokenizer.normalizer  # uncased BERT's strips marks, as on MiniLM
            title = normalizer.normalize_str(TRANSLATED[nid][0]) if normalizer else TRANSLATED[nid][0]
            assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == title.replace(" ", "")
