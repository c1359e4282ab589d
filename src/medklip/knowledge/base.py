"""The knowledge base: entity name -> visual description, and the position vocabulary.

The default base ships inside the package (``knowledge/data/knowledge_base.json``): the 75
pre-training entities in the official query order, ``covid-19`` as an inference-only
entity, and the 51 positions in the official order. Users extend or override it with
their own descriptions (a new disease is just one more description).
"""
from __future__ import annotations

import csv
import difflib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import yaml

from medklip.errors import KnowledgeBaseFileError, UnknownEntityError

logger = logging.getLogger(__name__)

KB_FORMAT = "medklip-knowledge-base/1"
DEFAULT_POSITION_PROMPT = "It is located at {position}"
EXTENSION_FILE = "data/chest_findings.yaml"

DescriptionTexts = str | Sequence[str]
"""One description, or several of one entity (queried as an ensemble: the mean of their embeddings)."""


def as_texts(value: object, name: object = "", source: str = "descriptions") -> list[str]:
    """The description(s) of ``value`` as a non-empty list of stripped, non-empty texts."""
    texts = [str(v).strip() for v in (value if isinstance(value, (list, tuple)) else [value])]
    if not texts or not all(texts):
        raise KnowledgeBaseFileError(f"{source}: the description of {str(name)!r} is empty; describe what the "
                                     "finding looks like")
    return texts


def normalize_name(name: str) -> str:
    """Canonical form used to look names up: lower case, spaces/hyphens -> underscores.

    ``covid-19`` keeps its hyphen when written that way; lookups try both spellings.
    """
    return "_".join(name.strip().lower().replace("-", " ").split())


def close_names_hint(name: str, candidates: Iterable[str], what: str = "names") -> str:
    """`` Closest known names: a, b.`` (or ``""``): the one spelling hint every lookup gives."""
    keys = list(candidates)
    close = difflib.get_close_matches(normalize_name(name), keys, n=5, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name, keys, n=5, cutoff=0.5)
    return f" Closest known {what}: {', '.join(close)}." if close else ""


@dataclass(frozen=True)
class Entity:
    """One query of the model: a name and the description that the text encoder embeds."""

    name: str
    description: str
    pretraining: bool = False
    """True for the entities the model was pre-trained on (the 75 of the paper)."""
    variants: tuple[str, ...] = ()
    """Further descriptions of the same entity (a zero-shot query averages all their embeddings)."""

    @property
    def texts(self) -> list[str]:
        """Every description: the main one, then the variants."""
        return [self.description, *self.variants]


@dataclass(frozen=True)
class KnowledgeBase:
    """Entities (ordered: pre-training ones first, in query order) and positions."""

    entities: tuple[Entity, ...]
    positions: tuple[str, ...]
    position_prompt: str = DEFAULT_POSITION_PROMPT
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for i, entity in enumerate(self.entities):
            if not entity.name.strip():
                raise KnowledgeBaseFileError(f"entity #{i} has an empty name")
            if not entity.description.strip():
                raise KnowledgeBaseFileError(
                    f"entity {entity.name!r} has an empty description; every entity needs one"
                )
            key = normalize_name(entity.name)
            if key in seen:
                raise KnowledgeBaseFileError(f"entity {entity.name!r} is listed twice")
            seen[key] = i
        if len(set(self.positions)) != len(self.positions):
            raise KnowledgeBaseFileError("the position list has duplicates")
        if "{position}" not in self.position_prompt:
            raise KnowledgeBaseFileError(
                f"position_prompt must contain '{{position}}', got {self.position_prompt!r}"
            )
        object.__setattr__(self, "_index", seen)

    # ------------------------------------------------------------------ loading
    @classmethod
    def default(cls) -> KnowledgeBase:
        """The knowledge base shipped with medklip (paper Table 8 + the 51 positions)."""
        text = resources.files("medklip.knowledge").joinpath("data/knowledge_base.json").read_text(
            encoding="utf-8"
        )
        return cls.from_dict(json.loads(text), source="the packaged knowledge base")

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "knowledge base") -> KnowledgeBase:
        """Build from the packaged JSON layout (``entities``, ``positions``, ...)."""
        try:
            entities = [
                Entity(str(e["name"]), str(e["description"]), True, tuple(map(str, e.get("variants", ()))))
                for e in data["entities"]
            ]
            entities += [
                Entity(str(e["name"]), str(e["description"]), False, tuple(map(str, e.get("variants", ()))))
                for e in data.get("inference_only_entities", [])
            ]
            positions = tuple(str(p) for p in data["positions"])
        except (KeyError, TypeError) as exc:
            raise KnowledgeBaseFileError(
                f"{source}: expected keys 'entities' (list of {{name, description}}) and "
                f"'positions' (list of names); problem at {exc!r}"
            ) from exc
        prompt = str(data.get("position_prompt", DEFAULT_POSITION_PROMPT))
        return cls(tuple(entities), positions, prompt)

    @classmethod
    def extended(cls) -> KnowledgeBase:
        """The default base plus medklip's extension (``knowledge/data/chest_findings.yaml``):
        descriptions of 181 chest radiograph findings outside the 75 (PadChest's, VinDr-CXR's),
        so that they can be queried by name without writing a description."""
        return cls.default().extend(extension_descriptions())

    @classmethod
    def load(cls, path: str | Path | None = None, *, extend: bool = True) -> KnowledgeBase:
        """The default base, extended (or replaced) by the descriptions in ``path``.

        A file in the full packaged layout replaces the base; any other description file
        (see :func:`read_descriptions`) extends it, overriding same-named entities.
        """
        base = cls.default()
        if path is None:
            return base
        path = Path(path)
        if not path.exists() and not path.suffix:  # a packaged description file by name
            path = packaged_descriptions(str(path))
        raw = _read_structured(path) if path.suffix.lower() in {".json", ".yaml", ".yml"} else None
        if isinstance(raw, Mapping) and "entities" in raw and "positions" in raw:
            return cls.from_dict(raw, source=str(path))
        return base.extend(read_descriptions(path)) if extend else base

    # ----------------------------------------------------------------- editing
    def extend(self, descriptions: Mapping[str, DescriptionTexts]) -> KnowledgeBase:
        """A new base with these descriptions added (a list: several descriptions of one entity);
        a known name gets its descriptions replaced."""
        entities = list(self.entities)
        for name, value in descriptions.items():
            first, *variants = as_texts(value, name)
            key = normalize_name(name)
            if key in self._index:
                i = self._index[key]
                old = entities[i]
                entities[i] = Entity(old.name, first, old.pretraining, tuple(variants))
                logger.info("description of %r overridden", old.name)
            else:
                entities.append(Entity(name.strip(), first, False, tuple(variants)))
        return KnowledgeBase(tuple(entities), self.positions, self.position_prompt)

    def with_queries(self, names: Iterable[str]) -> KnowledgeBase:
        """A new base whose pre-training query set is only ``names`` (kept in this base's query
        order); the other pre-training entities become inference-only (queried by description)."""
        given = list(names)
        keep = {normalize_name(n) for n in given}
        queries = {normalize_name(e.name) for e in self.pretraining_entities}
        unknown = [n for n in given if normalize_name(n) not in queries]
        if unknown:
            raise KnowledgeBaseFileError(f"not pre-training entities of this knowledge base: {', '.join(unknown)}")
        if not keep:
            raise KnowledgeBaseFileError("a query set needs at least one entity")
        chosen = [e for e in self.pretraining_entities if normalize_name(e.name) in keep]
        rest = [replace(e, pretraining=False) for e in self.entities if e not in chosen]
        return KnowledgeBase(tuple(chosen + rest), self.positions, self.position_prompt)

    # ----------------------------------------------------------------- queries
    @property
    def pretraining_entities(self) -> tuple[Entity, ...]:
        """The entities of the pre-training query set, in query order (75 for the paper)."""
        return tuple(e for e in self.entities if e.pretraining)

    @property
    def entity_names(self) -> list[str]:
        return [e.name for e in self.entities]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def __len__(self) -> int:
        return len(self.entities)

    def _lookup(self, name: str) -> int | None:
        key = normalize_name(name)
        return self._index.get(key)

    def entity(self, name: str) -> Entity:
        """The entity called ``name`` (case and spacing do not matter).

        Raises:
            UnknownEntityError: naming the closest known entities.
        """
        i = self._lookup(name)
        if i is None:
            hint = close_names_hint(name, self._index)
            raise UnknownEntityError(
                f"unknown entity {name!r}.{hint} To use a new finding, give its description "
                f"(e.g. --describe \"{name}=<what it looks like on a chest X-ray>\")."
            )
        return self.entities[i]

    def select(self, names: Iterable[str]) -> list[Entity]:
        """The entities for ``names``, in the given order."""
        return [self.entity(n) for n in names]

    def description(self, name: str) -> str:
        return self.entity(name).description

    def texts(self, name: str) -> list[str]:
        """Every description of ``name`` (the main one first)."""
        return self.entity(name).texts

    def position_index(self, name: str) -> int:
        try:
            return self.positions.index(name)
        except ValueError:
            hint = close_names_hint(name, self.positions, "positions")
            raise UnknownEntityError(f"unknown position {name!r}.{hint}") from None

    def position_texts(self) -> list[str]:
        """The position prompts, e.g. ``"It is located at left_hilar"``."""
        return [self.position_prompt.format(position=p) for p in self.positions]

    def to_dict(self) -> dict:
        return {
            "format": KB_FORMAT,
            "position_prompt": self.position_prompt,
            "entities": [_entity_dict(e) for e in self.pretraining_entities],
            "inference_only_entities": [_entity_dict(e) for e in self.entities if not e.pretraining],
            "positions": list(self.positions),
        }


def _entity_dict(e: Entity) -> dict:
    return {"name": e.name, "description": e.description, **({"variants": list(e.variants)} if e.variants else {})}


def packaged_descriptions(name: str) -> Path:
    """The path of a description file shipped with medklip (``chest-findings``, ``synthetic-world``,
    ``release-cxr14-script``)."""
    path = Path(str(resources.files("medklip.knowledge").joinpath(f"data/{name.replace('-', '_')}.yaml")))
    if not path.is_file():
        raise KnowledgeBaseFileError(f"no packaged description file {name!r}; use chest-findings, synthetic-world, "
                                     "release-cxr14-script or a path")
    return path


def resolve_descriptions(name_or_path: str) -> Path:
    """A description file: an existing path, else a packaged name."""
    path = Path(name_or_path)
    return path if path.suffix and path.exists() else packaged_descriptions(name_or_path)


def extension_descriptions() -> dict[str, DescriptionTexts]:
    """The packaged extension: finding name -> description (see :meth:`KnowledgeBase.extended`)."""
    text = resources.files("medklip.knowledge").joinpath(EXTENSION_FILE).read_text(encoding="utf-8")
    return _descriptions_from_obj(yaml.safe_load(text), "the packaged knowledge-base extension")


def _read_structured(path: Path) -> object:
    if not path.is_file():
        raise KnowledgeBaseFileError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError is not a ValueError
        raise KnowledgeBaseFileError(f"{path}: cannot parse ({exc})") from exc


def read_descriptions(path: str | Path) -> dict[str, DescriptionTexts]:
    """Read user descriptions: JSON/YAML ``{name: description}`` (or ``{name: [description, ...]}``)
    or a list of ``{name, description}``, CSV/TSV with ``name`` and ``description`` columns, or a
    text file with one ``name=description`` per line (``#`` starts a comment). A name given
    several descriptions (a list, or several rows / lines) keeps them all, in order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in {".json", ".yaml", ".yml"}:
        return _descriptions_from_obj(_read_structured(path), str(path))
    if not path.is_file():
        raise KnowledgeBaseFileError(f"{path}: no such file")
    if suffix in {".csv", ".tsv"}:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames or not {"name", "description"} <= set(reader.fieldnames):
                raise KnowledgeBaseFileError(
                    f"{path}: needs a header with 'name' and 'description' columns"
                )
            return _descriptions_from_obj(list(reader), str(path), first_row=2)
    return parse_describe_args(
        [line for line in path.read_text(encoding="utf-8").splitlines()
         if line.strip() and not line.lstrip().startswith("#")],
        source=str(path),
    )


def read_description_variants(path: str | Path) -> dict[str, list[str]]:
    """Every description of every entity in a description file (any layout of
    :func:`read_descriptions`), as lists: a single text is a list of one."""
    return {name: as_texts(value, name, str(path)) for name, value in read_descriptions(path).items()}


def _single_or_list(texts: list[str]) -> DescriptionTexts:
    return texts[0] if len(texts) == 1 else texts


def _descriptions_from_obj(obj: object, source: str, first_row: int = 1) -> dict[str, DescriptionTexts]:
    if isinstance(obj, Mapping) and isinstance(obj.get("descriptions"), (Mapping, list)):
        obj = obj["descriptions"]  # the extension layout: {format, descriptions: {name: text}}
    if isinstance(obj, Mapping):
        return {str(k): _single_or_list(as_texts(v, k, source)) for k, v in obj.items()}
    if isinstance(obj, list):
        out: dict[str, list[str]] = {}
        for i, row in enumerate(obj, start=first_row):
            if not isinstance(row, Mapping) or "name" not in row or "description" not in row:
                raise KnowledgeBaseFileError(
                    f"{source}: row {i} must have 'name' and 'description', got {row!r}"
                )
            out.setdefault(str(row["name"]).strip(), []).extend(as_texts(row["description"], row["name"],
                                                                         f"{source} row {i}"))
        return {k: _single_or_list(v) for k, v in out.items()}
    raise KnowledgeBaseFileError(
        f"{source}: expected a mapping name -> description or a list of {{name, description}}"
    )


def parse_describe_args(items: Sequence[str], source: str = "--describe") -> dict[str, DescriptionTexts]:
    """Parse ``NAME=DESCRIPTION`` strings (the CLI's ``--describe``); a name given several times
    gets all its descriptions, in order (an ensemble: the query is the mean of their embeddings)."""
    out: dict[str, list[str]] = {}
    for i, item in enumerate(items, start=1):
        name, sep, description = item.partition("=")
        if not sep or not name.strip():
            raise KnowledgeBaseFileError(
                f"{source} item {i}: expected NAME=DESCRIPTION, got {item!r}"
            )
        if not description.strip():
            raise KnowledgeBaseFileError(
                f"{source} item {i}: the description of {name.strip()!r} is empty"
            )
        out.setdefault(name.strip(), []).append(description.strip())
    return {k: _single_or_list(v) for k, v in out.items()}
