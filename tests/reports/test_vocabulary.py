from __future__ import annotations

from medklip.knowledge import KnowledgeBase
from medklip.reports import ReportFilter, Vocabulary
from medklip.reports.vocabulary import expand


def test_vocabulary_matches_the_knowledge_base() -> None:
    kb = KnowledgeBase.default()
    vocab = Vocabulary.load()
    vocab.check_against([e.name for e in kb.pretraining_entities], kb.positions)
    assert set(vocab.entities) == {e.name for e in kb.pretraining_entities}


def test_expand() -> None:
    assert expand("opacit[y|ies]") == ["opacity", "opacities"]
    assert expand("effusion[|s]") == ["effusion", "effusions"]
    assert expand("hil[um|a] x[1|2]") == ["hilum x1", "hilum x2", "hila x1", "hila x2"]


def test_a_user_vocabulary_file(tmp_path) -> None:
    import yaml

    data = yaml.safe_load(Vocabulary.load.__globals__["resources"].files("medklip.reports")
                          .joinpath("data/vocabulary.yaml").read_text())
    data["entities"]["effusion"].append("fluid collection[|s] in the pleural space")
    path = tmp_path / "vocab.yaml"
    path.write_text(yaml.safe_dump(data))
    rf = ReportFilter(path)
    assert [t.entity for t in rf.extract("Fluid collection in the pleural space.")] == ["effusion"]
