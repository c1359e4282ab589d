"""Dataclass configs: load from YAML/JSON, override with ``key.sub=value``, save resolved."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from medklip.errors import ConfigError

T = TypeVar("T")


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds (config validation)."""
    if not condition:
        raise ConfigError(message)


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build a (nested) dataclass from a mapping; unknown keys are errors that name the key."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(where + k for k in unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {}
    defaults = cls() if _has_defaults(cls) else None
    for name, value in data.items():
        default = getattr(defaults, name, None)
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            kwargs[name] = from_mapping(type(default), value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, str(fields[name].type), default, f"{where}{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config {where.rstrip('.') or cls.__name__}: {exc}") from exc


def _coerce(value: Any, annotation: str, default: Any, where: str) -> Any:
    """YAML reads ``3e-4`` as a string and ``5`` as an int: make numbers fit float/int fields."""
    wants_float = isinstance(default, float) or (default is None and "float" in annotation)
    wants_int = not wants_float and (isinstance(default, int) and not isinstance(default, bool)
                                     or (default is None and "int" in annotation))
    try:
        if wants_float and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if wants_int and isinstance(value, str):
            return int(value)
    except ValueError:
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
    return value


def _has_defaults(cls: type) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls))


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults <- file (YAML or JSON) <- ``key.sub=value`` overrides (values parsed as YAML)."""
    data: dict = to_dict(cls())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: cannot parse ({exc})") from exc
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: expected a mapping of settings")
        _merge(data, loaded, "")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. optim.lr=3e-4)")
        value = yaml.safe_load(raw) if raw.strip() else None
        _merge(data, _nest(key.strip().split("."), value), "")
    return from_mapping(cls, data)


def _nest(keys: list[str], value: Any) -> dict:
    out: Any = value
    for k in reversed(keys):
        out = {k: out}
    return out


def _merge(base: dict, new: Mapping, where: str) -> None:
    for k, v in new.items():
        if k not in base:
            raise ConfigError(f"unknown config key {where}{k}; known: {', '.join(sorted(base))}")
        if isinstance(base[k], dict) and isinstance(v, Mapping):
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v


def save_config(config: Any, path: str | Path) -> None:
    """The resolved config as YAML (``.yaml``) or JSON."""
    path = Path(path)
    data = to_dict(config)
    text = json.dumps(data, indent=1) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def packaged_config(package: str, name: str) -> Path:
    """``configs/<name>.yaml`` shipped inside ``package``; an unknown name lists the known ones."""
    from importlib import resources

    path = Path(str(resources.files(package).joinpath(f"configs/{name}.yaml")))
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no built-in config {name!r}; known: {', '.join(known)}")
    return path
