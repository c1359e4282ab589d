"""Rule families of the report filter, with sentences taken from real reports (IU/OpenI dev half)."""
from __future__ import annotations

import pytest

from medklip.reports import ReportFilter


@pytest.fixture(scope="module")
def rf() -> ReportFilter:
    return ReportFilter()


def facts(rf: ReportFilter, text: str) -> set[tuple[str, str, int]]:
    return {(t.entity, t.position, t.exist) for t in rf.extract(text)}


def exist_of(rf: ReportFilter, text: str, entity: str) -> set[int]:
    return {t.exist for t in rf.extract(text) if t.entity == entity}


def positions_of(rf: ReportFilter, text: str, entity: str) -> set[str]:
    return {t.position for t in rf.extract(text) if t.entity == entity}


# ------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize(
    "text,entity",
    [
        ("Small bilateral pleural effusions.", "effusion"),
        ("Bilateral pleural fluid.", "effusion"),
        ("Bibasilar airspace opacities.", "opacity"),
        ("Streaky perihilar opacification.", "opacity"),
        ("The heart is enlarged.", "enlarge"),
        ("There is enlargement of the cardiac silhouette.", "enlarge"),
        ("Minimal bibasilar atelectasis.", "atelectasis"),
        ("Atelectatic changes at the left base.", "atelectasis"),
        ("The lungs are hyperinflated.", "hyperinflate"),
        ("Lungs are hyperexpanded with COPD.", "hyperinflate"),
        ("Moderate cardiomegaly.", "cardiomegaly"),
        ("Mild biapical scarring is identified.", "scar"),
        ("Patchy interstitial infiltrates are also present in the right lower lobe.", "infiltrate"),
        ("Lung volumes are low.", "low"),
        ("Tortuous calcified aorta.", "tortuous"),
        ("There are scattered calcified granulomas.", "tail_abnorm_obs"),
    ],
)
def test_synonyms_and_inflections(rf: ReportFilter, text: str, entity: str) -> None:
    assert exist_of(rf, text, entity) == {1}


def test_normal_statements(rf: ReportFilter) -> None:
    assert ("normal", "heart_size", 1) in facts(rf, "Heart size is normal.")
    assert ("clear", "pulmonary", 1) in facts(rf, "The lungs are clear.")
    got = facts(rf, "The cardiac silhouette and mediastinum size are within normal limits.")
    assert {("normal", "heart_size", 1), ("normal", "mediastinal", 1)} <= got
    assert ("unremarkable", "mediastinal", 1) in facts(rf, "The mediastinum is unremarkable.")


def test_implied_cardiomegaly(rf: ReportFilter) -> None:
    assert ("cardiomegaly", "heart_size", 1) in facts(rf, "The heart is large.")
    assert ("cardiomegaly", "heart_size", 1) in facts(rf, "The cardiac silhouette is moderately enlarged.")
    assert ("cardiomegaly", "heart_size", 0) in facts(rf, "Heart size is normal.")
    assert ("cardiomegaly", "heart_size", 0) in facts(rf, "The heart is not enlarged.")
    assert exist_of(rf, "A large right pleural effusion.", "enlarge") == set()  # "large" needs a heart


def test_out_of_vocabulary_and_nondiagnostic_words(rf: ReportFilter) -> None:
    assert exist_of(rf, "Bronchiectasis in the right lower lobe.", "tail_abnorm_obs") == {1}
    assert exist_of(rf, "Rotated patient positioning limits evaluation.", "excluded_obs") == {1}
    assert rf.extract("The XXXX examination consists of frontal and lateral radiographs of the chest.") == []


# -------------------------------------------------------------------------- existence
@pytest.mark.parametrize(
    "text,entity,exist",
    [
        ("There is no pneumothorax.", "pneumothorax", 0),
        ("Lungs are clear without infiltrate.", "infiltrate", 0),
        ("The lungs are free of focal airspace disease.", "disease", 0),
        ("Negative for acute cardiopulmonary process.", "process", 0),
        ("Pneumothorax is not seen.", "pneumothorax", 0),
        ("The left apical pneumothorax has resolved.", "pneumothorax", 0),
        ("Interval resolution of the right pleural effusion.", "effusion", 0),
        ("No evidence of pneumonia.", "pneumonia", 0),
        ("Possible small left pleural effusion.", "effusion", -1),
        ("Right basilar opacity may represent atelectasis.", "atelectasis", -1),
        ("Pneumonia cannot be excluded.", "pneumonia", -1),
        ("Findings likely represent atelectasis.", "atelectasis", -1),
        ("Stable left basilar atelectasis versus scarring.", "scar", -1),
        ("Stable left basilar atelectasis versus scarring.", "atelectasis", -1),
        ("Patchy opacity suggestive of pneumonia.", "pneumonia", -1),
        ("Right lower lobe opacity concerning for pneumonia.", "pneumonia", -1),
        ("Small left pleural effusion.", "effusion", 1),
    ],
)
def test_negation_and_uncertainty(rf: ReportFilter, text: str, entity: str, exist: int) -> None:
    assert exist_of(rf, text, entity) == {exist}


def test_clear_of_a_list(rf: ReportFilter) -> None:
    text = "The lungs are clear of focal consolidation, pleural effusion or pneumothorax."
    for entity in ("consolidation", "effusion", "pneumothorax"):
        assert exist_of(rf, text, entity) == {0}


def test_negated_list_with_commas_and_or(rf: ReportFilter) -> None:
    text = "No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax is identified."
    for entity in ("consolidation", "opacity", "effusion", "pneumothorax"):
        assert exist_of(rf, text, entity) == {0}


def test_scope_ends_at_clause_boundary(rf: ReportFilter) -> None:
    text = "No pneumothorax, but there is a small left pleural effusion."
    assert exist_of(rf, text, "pneumothorax") == {0}
    assert exist_of(rf, text, "effusion") == {1}
    text = "No pleural effusion; the heart is enlarged."
    assert exist_of(rf, text, "enlarge") == {1}
    text = "There is no pneumothorax, the right effusion is unchanged."
    assert exist_of(rf, text, "effusion") == {1}


def test_radiology_idioms(rf: ReportFilter) -> None:
    assert exist_of(rf, "No change in the small left pleural effusion.", "effusion") == {1}
    assert exist_of(rf, "Unchanged mild cardiomegaly.", "cardiomegaly") == {1}
    text = "There is redemonstration without significant interval change of mild subsegmental atelectasis."
    assert exist_of(rf, text, "atelectasis") == {1}
    assert exist_of(rf, "Persistent but decreased left lower lobe atelectasis.", "atelectasis") == {1}


# -------------------------------------------------------------------------- positions
@pytest.mark.parametrize(
    "text,entity,expected",
    [
        ("Small left pleural effusion.", "effusion", {"left_pleural"}),
        ("Small bilateral pleural effusions.", "effusion", {"left_pleural", "right_pleural"}),
        ("There is a small effusion on the left.", "effusion", {"left_pleural"}),
        ("Minimal bibasilar atelectasis.", "atelectasis", {"left_lower_lung", "right_lower_lung"}),
        ("Right lower lobe pneumonia.", "pneumonia", {"lower_right_lobe"}),
        ("Lingular atelectasis.", "atelectasis", {"upper_left_lobe"}),
        ("Opacity in the right midlung.", "opacity", {"right_mid_lung"}),
        ("Blunting of the left costophrenic angle.", "blunt", {"left_costophrenic"}),
        ("Elevated right hemidiaphragm.", "elevation", {"right_diaphragm"}),
        ("Calcified left hilar lymph nodes.", "calcification", {"left_hilar"}),
        ("Retrocardiac opacity.", "opacity", {"retrocardiac"}),
        ("Right IJ catheter tip in the proximal SVC.", "tip", {"svc"}),
        ("The tip is at the cavoatrial junction.", "tip", {"cavoatrial_junction"}),
        ("Opacity at the lung bases.", "opacity", {"lung_bases"}),
        ("Emphysema.", "emphysema", {"unspecified"}),
        ("There are small right and left pleural effusions.", "effusion", {"left_pleural", "right_pleural"}),
        ("Partial collapse of the left upper and lower lobes.", "collapse", {"upper_left_lobe", "lower_left_lobe"}),
        ("Increased opacity of the right base compared to the left.", "opacity", {"right_lower_lung"}),
        ("Pleural effusions, right greater than left.", "effusion", {"left_pleural", "right_pleural"}),
    ],
)
def test_positions(rf: ReportFilter, text: str, entity: str, expected: set[str]) -> None:
    assert positions_of(rf, text, entity) == expected


def test_position_words_are_not_lemmatized(rf: ReportFilter) -> None:
    # "lower" is not the entity "low"; "left" is not a verb
    assert exist_of(rf, "Left lower lobe consolidation.", "low") == set()
    assert exist_of(rf, "Low lung volumes.", "low") == {1}
    assert positions_of(rf, "Low lung volumes.", "low") == {"lung_volumes"}


# -------------------------------------------------------------------------- sections
def test_indication_is_not_a_finding(rf: ReportFilter) -> None:
    text = "INDICATION: eval for pneumonia\nFINDINGS: The lungs are clear.\nIMPRESSION: No acute disease."
    assert exist_of(rf, text, "pneumonia") == set()
    assert exist_of(rf, text, "clear") == {1}


def test_fallback_to_last_section_and_whole_text(rf: ReportFilter) -> None:
    text = "EXAMINATION: Chest PA and lateral\nINDICATION: cough\nCOMPARISON: None.\nNOTE: Small left effusion."
    # no FINDINGS / IMPRESSION: the last section that is not indication-like
    assert exist_of(rf, "HISTORY: pneumonia\n\nSmall left effusion.", "pneumonia") == set()
    assert exist_of(rf, "Small left effusion. No pneumothorax.", "effusion") == {1}
    assert exist_of(rf, "INDICATION: pneumonia", "pneumonia") == set()
    assert isinstance(rf.extract(text), list)


def test_masks_line_breaks_lists_and_upper_case(rf: ReportFilter) -> None:
    text = ("FINDINGS: There are no XXXX of a pleural\neffusion. ___ noted.\n"
            "IMPRESSION:\n1. SMALL LEFT PNEUMOTHORAX.\n2. Decreased lung volumes.")
    assert exist_of(rf, text, "effusion") == {0}
    assert ("pneumothorax", "left_pleural", 1) in facts(rf, text)
    assert ("low", "lung_volumes", 1) in facts(rf, text)


def test_spans_point_at_the_mention(rf: ReportFilter) -> None:
    text = "FINDINGS: Heart size normal.\nIMPRESSION: Small right pleural effusion."
    [t] = [t for t in rf.extract(text) if t.entity == "effusion"]
    assert text[t.start:t.end] == "effusion" and t.sentence == 1


# ------------------------------------------------- clause boundaries, lists, zones (mutation-guided)
NO_PTX = ("pneumothorax", "unspecified", 0)


@pytest.mark.parametrize(
    "text,expected",
    [
        # a negation ends at a hard boundary: ; : ( )
        ("No pneumothorax; small left effusion.", {NO_PTX, ("effusion", "left_pleural", 1)}),
        ("No pneumothorax: small left effusion.", {NO_PTX, ("effusion", "left_pleural", 1)}),
        ("No pneumothorax (small left effusion).", {NO_PTX, ("effusion", "left_pleural", 1)}),
        ("(No pneumothorax) small left effusion.", {NO_PTX, ("effusion", "left_pleural", 1)}),
        ("Small left effusion (no pneumothorax) and right opacity.",
         {NO_PTX, ("effusion", "left_pleural", 1), ("opacity", "right_lung_unspec", 1)}),
        # a negated list continues over "or" / "nor" past a comma, and stops at the next clause
        ("No focal consolidation, effusion or pneumothorax is seen, and the heart is enlarged.",
         {("consolidation", "unspecified", 0), ("effusion", "unspecified", 0), NO_PTX,
          ("cardiomegaly", "heart_size", 1), ("enlarge", "heart_size", 1)}),
        ("No effusion, pneumothorax nor consolidation is seen, and the heart is enlarged.",
         {("consolidation", "unspecified", 0), ("effusion", "unspecified", 0), NO_PTX,
          ("cardiomegaly", "heart_size", 1), ("enlarge", "heart_size", 1)}),
        # each chunk (split at , / and / without) keeps its own side
        ("Right effusion, left pneumothorax.", {("effusion", "right_pleural", 1), ("pneumothorax", "left_pleural", 1)}),
        ("Right effusion and left pneumothorax.", {("effusion", "right_pleural", 1), ("pneumothorax", "left_pleural", 1)}),
        ("Effusion on the right without left pneumothorax.",
         {("effusion", "right_pleural", 1), ("pneumothorax", "left_pleural", 0)}),
        # coordinated zones share their side and noun: lower / mid / middle / upper, joined by and / or
        ("Mid and lower lung opacities on the right.", {("opacity", "right_lower_lung", 1), ("opacity", "right_mid_lung", 1)}),
        ("Left lower and upper lobe opacities.", {("opacity", "lower_left_lobe", 1), ("opacity", "upper_left_lobe", 1)}),
        ("Left lower or upper lobe opacity.", {("opacity", "lower_left_lobe", 1), ("opacity", "upper_left_lobe", 1)}),
        ("Right middle and upper lobe opacities.", {("opacity", "middle_right_lobe", 1), ("opacity", "upper_right_lobe", 1)}),
        ("Right upper and middle lobe opacities.", {("opacity", "middle_right_lobe", 1), ("opacity", "upper_right_lobe", 1)}),
        ("Opacities in the lower and mid lungs bilaterally.",
         {("opacity", f"{side}_{zone}_lung", 1) for side in ("left", "right") for zone in ("lower", "mid")}),
        # a place named after "compared" / "relative" is a reference, not where the finding is
        ("Effusion is smaller compared to the left base.", {("effusion", "unspecified", 1)}),
        ("Opacity relative to the right apex.", {("opacity", "unspecified", 1)}),
    ],
)
def test_boundaries_lists_and_zones(rf: ReportFilter, text: str, expected: set) -> None:
    assert facts(rf, text) == expected


def test_triplet_dict_pickled_filter_and_a_full_cache(rf: ReportFilter) -> None:
    import pickle

    text = "Findings: No pneumothorax. Small left effusion."
    triplets = rf.extract(text)
    assert [t.to_dict() for t in triplets] == [
        {"entity": "pneumothorax", "position": "unspecified", "exist": 0, "sentence": 0,
         "start": text.index("pneumothorax"), "end": text.index("pneumothorax") + len("pneumothorax")},
        {"entity": "effusion", "position": "left_pleural", "exist": 1, "sentence": 1,
         "start": text.index("effusion"), "end": text.index("effusion") + len("effusion")}]
    copy = pickle.loads(pickle.dumps(rf))  # what a worker process receives: the vocabulary, an empty cache
    assert copy._cache == {} and copy.cache_size == rf.cache_size and copy.extract(text) == triplets
    small = ReportFilter(rf.vocab, cache_size=2)
    sizes = []
    for sentence in ("No pneumothorax.", "Small left effusion.", "Mild cardiomegaly.", "No pneumothorax."):
        small.extract(sentence)
        sizes.append(len(small._cache))
    assert sizes == [1, 2, 1, 2]  # full at 2: emptied, then the new sentence kept
    assert small.extract("Mild cardiomegaly.") == rf.extract("Mild cardiomegaly.")


@pytest.mark.parametrize(
    "text,expected",
    [
        # a cue after its mentions reaches back over a list, and stops at a clause with its own predicate
        ("Effusion, opacity or pneumothorax is not identified.",
         {("effusion", "unspecified", 0), ("opacity", "unspecified", 0), NO_PTX}),
        ("Effusion and pneumothorax are not seen.", {("effusion", "unspecified", 0), NO_PTX}),
        ("Effusion is present, pneumothorax is not seen.", {("effusion", "unspecified", 1), NO_PTX}),
        ("The heart is enlarged, pneumothorax is not seen.",
         {("cardiomegaly", "heart_size", 1), ("enlarge", "heart_size", 1), NO_PTX}),
        ("Opacity; effusion is not seen.", {("opacity", "unspecified", 1), ("effusion", "unspecified", 0)}),
        ("Pneumonia is not excluded.", {("pneumonia", "unspecified", -1)}),
        # a singular verb after the cue's subject stops at the comma before it, unless the items are
        # joined by "or" (above) or the comma opens a relative clause
        ("Opacity at the left base, effusion is unlikely.",
         {("opacity", "left_lower_lung", 1), ("effusion", "unspecified", -1)}),
        ("Opacity at the right base, pneumothorax is not seen.", {("opacity", "right_lower_lung", 1), NO_PTX}),
        ("Effusion is unlikely.", {("effusion", "unspecified", -1)}),
        ("Atelectasis, which is mild, is not excluded.", {("atelectasis", "unspecified", -1)}),
        ("Effusion, which was small, has resolved.", {("effusion", "unspecified", 0)}),
        # each word of the lists the scope rules read (a mutation run showed none of them mattered to
        # a sentence above): "and" ends a scope before a new clause, in both directions; "was" / "has"
        # are singular verbs; "who" opens a relative clause; "/" joins a list as "or" does
        ("The heart is enlarged and a pleural effusion is not seen.",
         {("cardiomegaly", "heart_size", 1), ("enlarge", "heart_size", 1), ("effusion", "pleural_unspec", 0)}),
        ("There is no effusion and there is mild cardiomegaly.",
         {("effusion", "unspecified", 0), ("cardiomegaly", "unspecified", 1)}),
        ("Opacity at the left base, effusion was not seen.",
         {("opacity", "left_lower_lung", 1), ("effusion", "unspecified", 0)}),
        ("Opacity at the left base, effusion has resolved.",
         {("opacity", "left_lower_lung", 1), ("effusion", "unspecified", 0)}),
        ("Pneumonia in this patient, who is febrile, is not excluded.", {("pneumonia", "unspecified", -1)}),
        ("Opacity, effusion / consolidation is not excluded.",
         {("opacity", "unspecified", -1), ("effusion", "unspecified", -1), ("consolidation", "unspecified", -1)}),
        # "with" inside a cue ("may be consistent with") still splits the chunk: the place belongs to
        # the finding named before it, not to the diagnosis it suggests
        ("Right basilar opacity may be consistent with pneumonia.",
         {("opacity", "right_lower_lung", 1), ("pneumonia", "unspecified", -1)}),
    ],
)
def test_cues_after_their_mentions(rf: ReportFilter, text: str, expected: set) -> None:
    assert facts(rf, text) == expected


def test_sentence_numbers_the_sentence_cache_and_the_radgraph_helpers(rf: ReportFilter, monkeypatch) -> None:
    """Sentences are numbered in order; each distinct sentence is analysed once however often
    reports repeat it; a Triplet cannot be changed; the RadGraph import's helpers: a side alone
    takes the entity's default anatomy (the lung unless the vocabulary names another), a plural
    anatomy both sides unless one is named, entities named once each."""
    import dataclasses

    text = "Findings: No pneumothorax. Small left effusion. Mild cardiomegaly."
    assert [(t.entity, t.sentence) for t in rf.extract(text)] == [("pneumothorax", 0), ("effusion", 1),
                                                                  ("cardiomegaly", 2)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rf.extract(text)[0].exist = 1  # type: ignore[misc]
    fresh = ReportFilter(rf.vocab)
    assert fresh.cache_size == 200_000
    analysed: list[tuple[str, ...]] = []
    analyse = fresh._sentence
    monkeypatch.setattr(fresh, "_sentence", lambda toks: analysed.append(tuple(toks)) or analyse(toks))
    first = fresh.extract("No pneumothorax. No pneumothorax. Small left effusion.")
    again = fresh.extract("No pneumothorax. Small left effusion.")
    assert len(analysed) == 2 and len(set(analysed)) == 2
    assert [t.entity for t in first] == ["pneumothorax", "pneumothorax", "effusion"]  # one per sentence
    assert [(t.entity, t.position, t.exist) for t in again] == [("pneumothorax", "unspecified", 0),
                                                                ("effusion", "left_pleural", 1)]
    assert rf.positions_of("left", "opacity") == ["left_lung_unspec"]
    assert rf.positions_of("left", "effusion") == ["left_pleural"]
    assert rf.positions_of("lower lobes", "opacity") == ["lower_left_lobe", "lower_right_lobe"]
    assert rf.positions_of("left lower lobes", "opacity") == ["lower_left_lobe"]
    assert rf.positions_of("banana", "opacity") == []
    assert rf.entities_of("effusion and pleural effusion, atelectasis") == ["effusion", "atelectasis"]
