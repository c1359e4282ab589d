from __future__ import annotations

import numpy as np
import pytest

from medklip.knowledge import KnowledgeBase
from medklip.labels import UNMENTIONED
from medklip.reports import ReportFilter
from medklip.reports.targets import report_targets


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.default()


def test_targets_from_a_report(kb: KnowledgeBase) -> None:
    text = ("FINDINGS: Small left pleural effusion. No pneumothorax. Possible right lower lobe pneumonia. "
            "IMPRESSION: Left effusion.")
    names = [e.name for e in kb.pretraining_entities]
    t = report_targets(ReportFilter().extract(text), names, kb.positions)
    e = {n: int(t.exist[i]) for i, n in enumerate(names)}
    assert e["effusion"] == 1 and e["pneumothorax"] == 0 and e["pneumonia"] == -1
    assert e["cardiomegaly"] == UNMENTIONED and e["normal"] == UNMENTIONED
    assert t.positives[names.index("effusion")] == [kb.position_index("left_pleural")]
    assert t.positives[names.index("pneumothorax")] == []


def test_strongest_statement_wins_and_unspecified_position(kb: KnowledgeBase) -> None:
    names = ["effusion", "edema"]
    trip = [
        {"entity": "effusion", "position": "left_pleural", "exist": 0},
        {"entity": "effusion", "position": "right_pleural", "exist": 1},
        {"entity": "edema", "position": "unspecified", "exist": -1},
        {"entity": "edema", "position": "unspecified", "exist": 0},
        {"entity": "not_in_model", "position": "unspecified", "exist": 1},
    ]
    t = report_targets(trip, names, kb.positions)
    assert t.exist.tolist() == [1, -1]
    assert t.positives == [[kb.position_index("right_pleural")], []]
    with pytest.raises(ValueError, match="exist"):
        report_targets([{"entity": "edema", "position": "x", "exist": 5}], names, kb.positions)


def test_position_sampling(kb: KnowledgeBase) -> None:
    names = ["effusion", "edema"]
    left, right = kb.position_index("left_pleural"), kb.position_index("right_pleural")
    t = report_targets([{"entity": "effusion", "position": "left_pleural", "exist": 1},
                        {"entity": "effusion", "position": "right_pleural", "exist": 1}], names, kb.positions)
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = t.sample_position_index(rng, len(kb.positions))
        assert idx.shape == (2, 8)
        assert idx[0, 0] in (left, right)
        assert not set(idx[0, 1:]) & {left, right}  # negatives are positions it is not at
        assert len(set(idx[0, 1:])) == 7
    a = t.sample_position_index(np.random.default_rng(1), 51)
    b = t.sample_position_index(np.random.default_rng(1), 51)
    assert np.array_equal(a, b)  # seeded


def test_rows_of_entities_not_present_cost_no_draw_and_no_loss(kb: KnowledgeBase) -> None:
    import torch

    from medklip.models.criterion import MedKLIPCriterion
    from medklip.models.outputs import MedKLIPOutput

    names = ["effusion", "edema", "atelectasis"]
    t = report_targets([{"entity": "effusion", "position": "left_pleural", "exist": 1},
                        {"entity": "edema", "position": "left_pleural", "exist": 0}], names, kb.positions)
    idx = t.sample_position_index(np.random.default_rng(0), len(kb.positions))
    assert idx[1].tolist() == idx[2].tolist() == list(range(8))  # absent / unmentioned: fixed, not drawn
    alone = report_targets([{"entity": "effusion", "position": "left_pleural", "exist": 1}], names[:1], kb.positions)
    assert np.array_equal(alone.sample_position_index(np.random.default_rng(0), len(kb.positions))[0], idx[0])
    # the criterion scores present pairs only: whatever the other rows hold, the loss is the same
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 2, generator=gen)
    out = MedKLIPOutput(logits=logits, probs=logits.softmax(-1)[..., 1], position_features=torch.randn(1, 3, 16, generator=gen),
                        position_logits=torch.zeros(1, 3, len(kb.positions)), attentions=[], heatmaps=None,
                        patch_grid=(1, 1))
    embeddings = torch.randn(len(kb.positions), 16, generator=gen)
    labels = torch.from_numpy(t.exist.astype(np.int64))[None]
    scrambled = torch.from_numpy(idx)[None].clone()
    scrambled[0, 1:] = torch.randint(0, len(kb.positions), (2, 8), generator=gen)
    a = MedKLIPCriterion()(out, labels, torch.from_numpy(idx)[None], embeddings)
    b = MedKLIPCriterion()(out, labels, scrambled, embeddings)
    assert a.total == b.total and a.position > 0
