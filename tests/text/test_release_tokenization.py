"""Texts become the token ids the release feeds its encoder (``special_tokens="cls-only"``), written
from the release's rule (tests/text/release_tokenizer.py), on every text medklip ships."""
from __future__ import annotations

import shutil

import pytest
import torch

from medklip.knowledge import KnowledgeBase
from medklip.knowledge.base import packaged_descriptions, read_description_variants
from medklip.text import TextEncoder, packaged_minilm_path
from tests.text.release_tokenizer import read_vocab, release_ids

CLS, SEP, PAD = 101, 102, 0  # in the bert-base-uncased vocabulary the MiniLM package ships


def shipped_texts() -> list[str]:
    """The 75 descriptions, the 51 position prompts, the extension (covid-19, PadChest) and the
    synthetic world's descriptions with their variants."""
    kb = KnowledgeBase.extended()
    texts = [t for e in kb.entities for t in e.texts] + kb.position_texts()
    for name in ("synthetic-world", "chest-findings"):
        texts += [t for group in read_description_variants(packaged_descriptions(name)).values() for t in group]
    return list(dict.fromkeys(texts))


@pytest.fixture(scope="module")
def vocab_only_folder(tmp_path_factory):
    """A BERT folder as Bio_ClinicalBERT's hub folder is laid out: config.json, weights and
    vocab.txt, no tokenizer_config.json (so the tokenizer runs on its defaults)."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("bert-vocab-only")
    shutil.copy(packaged_minilm_path() / "vocab.txt", folder / "vocab.txt")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(read_vocab(folder / "vocab.txt")), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    assert not (folder / "tokenizer_config.json").exists()
    return folder


def test_the_rule_written_out() -> None:
    """The rule itself on a position prompt, with the vocabulary's literal ids: [CLS], the word
    pieces, no [SEP], [PAD] to max_length, mask 1 on [CLS] + pieces."""
    vocab = read_vocab(packaged_minilm_path() / "vocab.txt")
    ids, mask = release_ids("It is located at left lung", vocab, 10)
    assert ids == [CLS, 2009, 2003, 2284, 2012, 2187, 11192, PAD, PAD, PAD]
    assert mask == [1] * 7 + [0] * 3


@pytest.mark.parametrize("max_length", [64, 128])
def test_every_shipped_text_gets_the_release_ids(max_length: int) -> None:
    vocab = read_vocab(packaged_minilm_path() / "vocab.txt")
    encoder = TextEncoder(max_length=max_length, special_tokens="cls-only")
    texts = shipped_texts()
    assert len(texts) > 200
    tokens = encoder.tokenize(texts)
    assert tokens["input_ids"].shape == (len(texts), max_length)
    for row, text in enumerate(texts):
        ids, mask = release_ids(text, vocab, max_length)
        assert tokens["input_ids"][row].tolist() == ids, text
        assert tokens["attention_mask"][row].tolist() == mask, text
    assert not (tokens["input_ids"] == SEP).any()


def test_the_two_long_descriptions_are_cut_as_the_release_cuts_them() -> None:
    """Two of the 75 descriptions have 64 tokens or more: the release keeps [CLS] + 63 word pieces
    (Hugging Face's default keeps 62 and a [SEP])."""
    vocab = read_vocab(packaged_minilm_path() / "vocab.txt")
    kb = KnowledgeBase.default()
    long = [e.description for e in kb.pretraining_entities if sum(release_ids(e.description, vocab, 512)[1]) > 64]
    assert len(long) == 2, [t[:40] for t in long]
    ours = TextEncoder(max_length=64, special_tokens="cls-only").tokenize(long)
    hf = TextEncoder(max_length=64, special_tokens="cls-sep").tokenize(long)
    for row, text in enumerate(long):
        full, _ = release_ids(text, vocab, 512)
        assert ours["input_ids"][row].tolist() == full[:64]  # [CLS] + the first 63 pieces
        assert ours["attention_mask"][row].sum() == 64
        assert hf["input_ids"][row, -1] == SEP and hf["input_ids"][row].tolist()[:63] == full[:63]


def test_a_folder_without_tokenizer_config_lower_cases_and_strips_accents(vocab_only_folder) -> None:
    """Bio_ClinicalBERT's hub folder has no tokenizer_config.json; the release's BertTokenizer then
    lower-cases and strips accents by default, and so does the tokenizer medklip loads."""
    vocab = read_vocab(vocab_only_folder / "vocab.txt")
    texts = ["Pleural Effusión, RIGHT-sided", "naïve 中文 text", "x" * 101 + " mass", "Pneumonia (CAP) ≥ 2 cm"]
    tokens = TextEncoder(str(vocab_only_folder), max_length=24, special_tokens="cls-only",
                         use_cache=False).tokenize(texts)
    for row, text in enumerate(texts):
        assert tokens["input_ids"][row].tolist() == release_ids(text, vocab, 24)[0], text
    assert tokens["input_ids"][0].tolist() == tokens["input_ids"].new_tensor(
        release_ids("pleural effusion, right-sided", vocab, 24)[0]).tolist()
    assert vocab["[UNK]"] in tokens["input_ids"][2].tolist()  # a word over 100 characters


def test_cls_only_changes_the_embedding_and_the_cache_keys_on_it(vocab_only_folder, tmp_path) -> None:
    text = ["Fluid in the pleural space, blunting the costophrenic angle."]
    a = TextEncoder(str(vocab_only_folder), special_tokens="cls-only", cache_dir=tmp_path)
    b = TextEncoder(str(vocab_only_folder), special_tokens="cls-sep", cache_dir=tmp_path)
    assert a.identity != b.identity and a.cache.folder != b.cache.folder
    ea, eb = a.encode(text), b.encode(text)
    assert (ea - eb).abs().max() > 1e-3  # the [SEP] token is attended to: the CLS vector moves
    again = TextEncoder(str(vocab_only_folder), special_tokens="cls-only", cache_dir=tmp_path)
    assert torch.equal(again.encode(text), ea) and again.stats.hits == 1
    assert a.info()["special_tokens"] == "cls-only"


def test_special_tokens_is_validated() -> None:
    with pytest.raises(ValueError, match="special_tokens"):
        TextEncoder(special_tokens="sep")


def test_the_paper_config_tokenises_as_the_release_and_the_model_records_it(vocab_only_folder, tmp_path) -> None:
    from medklip import MedKLIP, MedKLIPConfig
    from medklip.config_utils import load_config
    from medklip.train.config import PretrainConfig, builtin_config

    paper = load_config(PretrainConfig, builtin_config("paper"))
    assert (paper.text.special_tokens, paper.text.max_length) == ("cls-only", 128)
    assert load_config(PretrainConfig, builtin_config("demo")).text.special_tokens == "cls-sep"
    encoder = TextEncoder(str(vocab_only_folder), special_tokens="cls-only", max_length=128, cache_dir=tmp_path)
    model = MedKLIP.from_knowledge_base(MedKLIPConfig(backbone="local", image_size=64, d_model=32, num_layers=1,
                                                      dim_feedforward=32, text_dim=32), KnowledgeBase.default(), encoder)
    again = MedKLIP.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert again.text_encoder_info["special_tokens"] == "cls-only"
    assert again.text_encoder_info["max_length"] == 128 and again.text_encoder_info["query_max_length"] == 64
