"""The official-checkpoint path end to end, offline: a checkpoint in the release's format and a
768-d BERT folder laid out as Bio_ClinicalBERT's hub folder (random weights, a real WordPiece
vocabulary, no tokenizer_config.json). Every medklip path (``create_model``, ``Predictor``,
``convert-official`` + ``predict``, ``evaluate --split release``) gives the probabilities the
release computes: its tokenisation (``[CLS]`` + word pieces, no ``[SEP]``, padded to 64), the CLS
vector of the last hidden state, its preprocessing and its 14 ChestX-ray14 queries."""
from __future__ import annotations

import csv
import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from medklip import MedKLIP, create_model
from medklip.cli import main
from medklip.knowledge import KnowledgeBase
from medklip.text import TextEncoder, packaged_minilm_path
from medklip.zeroshot.predict import Predictor
from tests.data.benchmark_fixtures import radiograph
from tests.text.release_tokenizer import read_vocab, release_ids

# the release's ChestX-ray14 script: its 14 queries, in its order (reference README)
RELEASE_CXR14_QUERIES = ["atelectasis", "cardiomegaly", "effusion", "infiltrate", "mass", "nodule", "pneumonia",
                         "pneumothorax", "consolidation", "edema", "emphysema", "tail_abnorm_obs", "thicken", "hernia"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("bio-clinicalbert-like")
    shutil.copy(packaged_minilm_path() / "vocab.txt", folder / "vocab.txt")
    torch.manual_seed(1234)
    BertModel(BertConfig(vocab_size=len(read_vocab(folder / "vocab.txt")), hidden_size=768, num_hidden_layers=2,
                         num_attention_heads=12, intermediate_size=1024)).save_pretrained(folder)
    return folder


def release_embeddings(folder: Path, texts: list[str], max_length: int = 64) -> torch.Tensor:
    """The release's text features: its token ids (written from its rule), BERT's last hidden state at
    position 0."""
    from transformers import BertModel

    vocab = read_vocab(folder / "vocab.txt")
    rows = [release_ids(t, vocab, max_length) for t in texts]
    ids = torch.tensor([r[0] for r in rows])
    mask = torch.tensor([r[1] for r in rows])
    bert = BertModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state[:, 0]


def release_pixels(path: Path) -> torch.Tensor:
    """The release's ChestX-ray14 test transform."""
    t = transforms.Compose([transforms.Resize([224, 224]), transforms.ToTensor(),
                            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    return t(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Four radiographs named with rows of the release's ChestX-ray14 test list."""
    from medklip.data.benchmarks.release import release_list

    rows = release_list("chestxray14").values.tolist()
    root = tmp_path_factory.mktemp("cxr14") / "images"
    root.mkdir()
    paths = []
    for k, row in enumerate(rows[:2] + rows[5000:5002]):
        Image.fromarray(radiograph((300, 280), 40 + k)).save(root / row[1])
        paths.append(root / row[1])
    return paths


def probabilities(model: MedKLIP, pixels: torch.Tensor) -> np.ndarray:
    """[images, 14] probabilities of the release's ChestX-ray14 queries."""
    index = [model.query_index(name) for name in RELEASE_CXR14_QUERIES]
    with torch.no_grad():
        return model(pixels, need_attentions=False).probs[:, index].numpy()


@pytest.fixture(scope="module")
def release(official_fixture, bert_folder, images) -> dict:
    """What the release computes on the images: its embeddings fed to the checkpoint's model (the
    model itself is the release's to 1e-5: tests/models/test_official.py)."""
    kb = KnowledgeBase.default()
    entity = release_embeddings(bert_folder, [e.description for e in kb.pretraining_entities])
    position = release_embeddings(bert_folder, kb.position_texts())
    model = MedKLIP.from_official_checkpoint(official_fixture.checkpoint, entity_embeddings=entity,
                                             position_embeddings=position)
    pixels = torch.stack([release_pixels(p) for p in images])
    return {"entity": entity, "position": position, "pixels": pixels, "probs": probabilities(model, pixels)}


def test_the_fixture_responds_to_text_and_image(official_fixture, release, bert_folder) -> None:
    """Negative controls at the test's own tolerance: Hugging Face's [CLS] X [SEP] embeddings, or one
    image swapped, move the probabilities at least ten times past 1e-5."""
    encoder = TextEncoder(str(bert_folder), max_length=64, special_tokens="cls-sep", use_cache=False)
    kb = KnowledgeBase.default()
    sep = encoder.encode([e.description for e in kb.pretraining_entities] + kb.position_texts())
    model = MedKLIP.from_official_checkpoint(official_fixture.checkpoint, entity_embeddings=sep[:75],
                                             position_embeddings=sep[75:])
    assert np.abs(probabilities(model, release["pixels"]) - release["probs"]).max() > 100 * TOLERANCE
    swapped = release["probs"][[1, 0, 2, 3]]
    assert np.abs(swapped - release["probs"]).max() > 10 * TOLERANCE


def test_create_model_from_the_pth_computes_what_the_release_computes(official_fixture, bert_folder, release,
                                                                      images) -> None:
    model, preprocess = create_model(official_fixture.checkpoint, text_encoder=str(bert_folder), device="cpu")
    torch.testing.assert_close(model.entity_embeddings, release["entity"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(model.position_embeddings, release["position"], atol=TOLERANCE, rtol=0)
    info = model.text_encoder_info
    assert (info["special_tokens"], info["max_length"], info["pooling"]) == ("cls-only", 64, "cls")
    pixels = torch.stack([preprocess(p) for p in images])
    torch.testing.assert_close(pixels, release["pixels"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(probabilities(model, pixels), release["probs"], atol=TOLERANCE, rtol=0)


def test_predictor_and_the_predict_cli_on_the_pth_and_its_converted_folder(official_fixture, bert_folder, release,
                                                                           images, tmp_path) -> None:
    findings = [n for n in RELEASE_CXR14_QUERIES if n != "tail_abnorm_obs"]
    columns = [RELEASE_CXR14_QUERIES.index(n) for n in findings]
    predictor = Predictor(str(official_fixture.checkpoint), text_encoder=str(bert_folder), device="cpu")
    got = np.array([[p.probabilities[n] for n in findings] for p in predictor.predict(images, findings)])
    np.testing.assert_allclose(got, release["probs"][:, columns], atol=TOLERANCE, rtol=0)

    folder = tmp_path / "official"
    assert main(["convert-official", str(official_fixture.checkpoint), "-o", str(folder), "--text-encoder",
                 str(bert_folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    assert json.dumps(config).count('"cls-only"') >= 1
    assert "| special tokens | cls-only |" in (folder / "README.md").read_text()
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["predict", *map(str, images), "--model", str(folder), "--format", "csv",
                     "--findings", ",".join(findings), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [Path(r["image"]).name for r in rows] == [p.name for p in images]
    got = np.array([[float(r[n]) for n in findings] for r in rows])
    np.testing.assert_allclose(got, release["probs"][:, columns], atol=TOLERANCE, rtol=0)
    # an added description is encoded the model's way: the release's tokens, 64 at most
    again = Predictor(str(folder), text_encoder=str(bert_folder), device="cpu")
    assert (again.encoder.special_tokens, again.encoder.max_length) == ("cls-only", 64)
    # covid-19 as the release queries it: its one description, not the shipped variants' ensemble
    kb_covid = again.knowledge.texts("covid-19")
    assert len(kb_covid) > 1 and not again.variants and predictor.variants is False
    _, queries, rows = again.queries(["covid-19"])
    torch.testing.assert_close(queries[rows[0]], again.encoder.encode(kb_covid[:1])[0], atol=0, rtol=0)


def test_evaluate_cli_on_the_release_list_with_the_pth(official_fixture, bert_folder, release, images,
                                                       tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["evaluate", "--dataset", "chestxray14", "--root", str(images[0].parent.parent), "--model",
                 str(official_fixture.checkpoint), "--text-encoder", str(bert_folder), "--split", "release",
                 "--bootstrap", "0", "--device", "cpu", "-q", "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["images"] == 4 and m["preprocess"] == "release-cxr14"
    with (out / "predictions.csv").open() as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    classes = list(m["class_counts"])
    got = np.array([[float(rows[p.name][f"prob:{c}"]) for c in classes] for p in images])
    np.testing.assert_allclose(got, release["probs"], atol=TOLERANCE, rtol=0)
