from __future__ import annotations

import json

import pytest

from medklip.errors import KnowledgeBaseFileError, UnknownEntityError
from medklip.knowledge import KnowledgeBase, read_descriptions


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.default()


def test_sizes(kb: KnowledgeBase) -> None:
    assert len(kb.pretraining_entities) == 75
    assert len(kb.entities) == 76
    assert [e.name for e in kb.entities if not e.pretraining] == ["covid-19"]
    assert len(kb.positions) == 51


def test_entity_order_and_descriptions_match_the_release(kb: KnowledgeBase, fixtures_dir) -> None:
    official = json.loads((fixtures_dir / "official" / "observation_descriptions.json").read_text())
    names = ["pneumonia" if k == "eumonia" else k for k in official]
    assert [e.name for e in kb.pretraining_entities] == names
    assert [e.description for e in kb.pretraining_entities] == list(official.values())
    assert kb.pretraining_entities[20].name == "pneumonia"


def test_positions_follow_the_paper_in_order(kb: KnowledgeBase, fixtures_dir) -> None:
    # the list as the paper prints it ("... to form the position set P, as {trachea, ...}")
    listed = (fixtures_dir / "paper_positions.txt").read_text()
    names = [n.strip().replace("\\_", "_") for n in listed.split(",")]
    # the paper typesets the release's two positions "spine", "clavicle" as one item
    i = names.index("spine_clavicle")
    names[i : i + 1] = ["spine", "clavicle"]
    assert list(kb.positions) == names


def test_position_prompts(kb: KnowledgeBase) -> None:
    texts = kb.position_texts()
    assert texts[0] == "It is located at trachea"
    assert texts[kb.position_index("left_hilar")] == "It is located at left_hilar"


def test_lookup_is_case_and_spacing_insensitive(kb: KnowledgeBase) -> None:
    assert kb.entity("Pneumonia").name == "pneumonia"
    assert kb.entity("COVID 19").name == "covid-19"
    assert kb.entity("tail abnorm obs").name == "tail_abnorm_obs"


def test_unknown_entity_lists_closest_names(kb: KnowledgeBase) -> None:
    with pytest.raises(UnknownEntityError) as err:
        kb.entity("pneumothorx")
    assert "pneumothorax" in str(err.value)
    with pytest.raises(UnknownEntityError):
        kb.position_index("left_hilum")


def test_extend_adds_and_overrides(kb: KnowledgeBase) -> None:
    new = kb.extend({"sarcoidosis": "Bilateral hilar lymphadenopathy.", "Effusion": "Fluid."})
    assert new.entity("sarcoidosis").pretraining is False
    assert new.description("effusion") == "Fluid."
    assert new.entity("effusion").pretraining is True
    assert len(new) == len(kb) + 1
    assert kb.description("effusion") != "Fluid."  # the original is unchanged
    with pytest.raises(KnowledgeBaseFileError, match="empty"):
        kb.extend({"x": "  "})


@pytest.mark.parametrize(
    "name,content",
    [
        ("d.json", json.dumps({"sarcoidosis": "Hilar nodes."})),
        ("d.json", json.dumps([{"name": "sarcoidosis", "description": "Hilar nodes."}])),
        ("d.yaml", "sarcoidosis: Hilar nodes.\n"),
        ("d.csv", "name,description\nsarcoidosis,Hilar nodes.\n"),
        ("d.txt", "# my diseases\nsarcoidosis=Hilar nodes.\n"),
    ],
)
def test_user_description_files(tmp_path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert read_descriptions(path) == {"sarcoidosis": "Hilar nodes."}
    assert KnowledgeBase.load(path).description("sarcoidosis") == "Hilar nodes."


def test_whole_knowledge_base_file_replaces(tmp_path) -> None:
    path = tmp_path / "kb.json"
    path.write_text(json.dumps({"entities": [{"name": "a", "description": "A."}], "positions": ["p"]}))
    kb = KnowledgeBase.load(path)
    assert kb.entity_names == ["a"] and kb.positions == ("p",)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("bad.json", "{not json", "cannot parse"),
        ("bad.csv", "disease,text\na,b\n", "'name' and 'description'"),
        ("bad.txt", "no equals sign here\n", "NAME=DESCRIPTION"),
        ("bad2.json", json.dumps([{"name": "a"}]), "row 1"),
    ],
)
def test_bad_description_files_say_what_is_wrong(tmp_path, name: str, content: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(KnowledgeBaseFileError, match=match):
        read_descriptions(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(KnowledgeBaseFileError, match="no such file"):
        KnowledgeBase.load(tmp_path / "nope.json")


def test_round_trip_dict(kb: KnowledgeBase) -> None:
    again = KnowledgeBase.from_dict(kb.to_dict())
    assert again == kb


def test_the_release_cxr14_script_descriptions_differ_in_three_texts_only() -> None:
    """The packaged knowledge base is the pre-training file the official checkpoint was trained with;
    ``release-cxr14-script`` swaps in the three texts of the release's ChestX-ray14 script folder
    (curly quotes and dashes removed)."""
    base = KnowledgeBase.default()
    script = KnowledgeBase.load("release-cxr14-script")
    changed = {e.name for e, f in zip(base.pretraining_entities, script.pretraining_entities)
               if e.description != f.description}
    assert changed == {"sharply", "lesion", "chf"}
    assert [e.name for e in script.pretraining_entities] == [e.name for e in base.pretraining_entities]
    for name in changed:
        assert any(ord(c) > 127 for c in base.description(name))
        assert all(ord(c) < 128 for c in script.description(name))
    assert script.description("lesion").startswith("Lung nodules, pulmonary nodules, white spots, lesions these")


def test_a_name_described_twice_keeps_both_descriptions(tmp_path) -> None:
    from medklip.knowledge import parse_describe_args, read_descriptions

    got = parse_describe_args(["covid-19=Ground-glass opacities.", "x=One.", "covid-19=Bilateral peripheral opacities."])
    assert got == {"covid-19": ["Ground-glass opacities.", "Bilateral peripheral opacities."], "x": "One."}
    kb = KnowledgeBase.default().extend(got)
    assert kb.texts("covid-19") == ["Ground-glass opacities.", "Bilateral peripheral opacities."]
    assert kb.description("covid-19") == "Ground-glass opacities." and kb.texts("x") == ["One."]
    assert KnowledgeBase.from_dict(kb.to_dict()).texts("covid-19") == kb.texts("covid-19")  # round trip
    (tmp_path / "d.yaml").write_text("a: [first, second, third]\nb: only\n")
    (tmp_path / "d.csv").write_text("name,description\na,first\nb,only\na,second\n")
    (tmp_path / "d.txt").write_text("a=first\n# comment\na=second\n")
    assert read_descriptions(tmp_path / "d.yaml") == {"a": ["first", "second", "third"], "b": "only"}
    assert read_descriptions(tmp_path / "d.csv") == {"a": ["first", "second"], "b": "only"}
    assert read_descriptions(tmp_path / "d.txt") == {"a": ["first", "second"]}
    (tmp_path / "bad.yaml").write_text("a: [first, '']\n")
    with pytest.raises(KnowledgeBaseFileError, match="bad.yaml: the description of 'a' is empty"):
        read_descriptions(tmp_path / "bad.yaml")


def test_a_query_set_cut_to_some_entities() -> None:
    from medklip.errors import KnowledgeBaseFileError

    kb = KnowledgeBase.default()
    cut = kb.with_queries(["pneumothorax", "Effusion"])  # any order and case: the base's order is kept
    assert [e.name for e in cut.pretraining_entities] == ["effusion", "pneumothorax"]
    assert len(cut.entities) == len(kb.entities) and cut.description("atelectasis") == kb.description("atelectasis")
    assert not cut.entity("atelectasis").pretraining  # still queryable, by description
    with pytest.raises(KnowledgeBaseFileError, match="not pre-training entities of this knowledge base: covid-19"):
        KnowledgeBase.extended().with_queries(["effusion", "covid-19"])
    with pytest.raises(KnowledgeBaseFileError, match="at least one entity"):
        kb.with_queries([])
