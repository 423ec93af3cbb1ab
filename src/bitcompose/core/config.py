"""One configuration mechanism: frozen dataclasses with a JSON round trip and ``key=value`` overrides.

A config class is a frozen dataclass that inherits :class:`Config`; its fields are typed with ``bool``, ``int``,
``float``, ``str``, ``X | None``, ``tuple[...]`` or another config class (nested). It gets

* :meth:`Config.to_dict` / :meth:`Config.from_dict`: a plain JSON-friendly dict and back (unknown keys and
  ill-typed values raise ``ValueError``; missing keys take their defaults);
* :meth:`Config.to_json`;
* :meth:`Config.with_overrides`: dotted ``key=value`` strings (``optim.lr=3e-4``, ``model.channel_mults=1,2,2``),
  parsed from the field types, then validated by the class's ``__post_init__``.

Fields declared with ``field(init=False)`` are derived, not stored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["CONFIG_FILE", "MODEL_FILE", "Config", "check", "to_jsonable", "diff_keys"]

#: The file names of a saved model folder (a training checkpoint, or a small network): the JSON config and the
#: weights.
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"

C = TypeVar("C", bound="Config")


def check(cond: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``cond`` (for ``__post_init__`` validation)."""
    if not cond:
        raise ValueError(message)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, dicts, lists and tuples as nested plain dicts and lists."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and issubclass(tp, Config)


def _init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a JSON value to the annotated type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{key} must have {len(args)} entries, got {value!r}")
        return tuple(_convert(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    if _is_config(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{key} must be an object, got {value!r}")
        return tp._from_mapping(value, prefix=f"{key}.")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # pragma: no cover - programming error


def _parse(text: str, tp: Any, key: str) -> Any:
    """Parse the text of a ``key=value`` override as the annotated type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse(text, inner[0], key)
    if origin is tuple:
        body = text.strip().strip("()[]").strip()
        parts = [p.strip() for p in body.split(",") if p.strip()] if body else []
        elem = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        types_ = [elem] * len(parts) if elem is not None else list(args)
        if elem is None and len(parts) != len(args):
            raise ValueError(f"bad value {text!r} for {key}: expected {len(args)} comma-separated entries")
        return tuple(_parse(p, t, key) for p, t in zip(parts, types_, strict=True))
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"bad value {text!r} for {key}: expected true or false")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            what = "an integer" if tp is int else "a number"
            raise ValueError(f"bad value {text!r} for {key}: expected {what}") from None
    if tp is str:
        return text
    raise ValueError(f"{key} is a group of settings, not a value; set one of its fields ({key}.NAME=VALUE)")


class Config:
    """Base of every configuration dataclass (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly nested dict (tuples become lists; derived fields are left out)."""
        assert dataclasses.is_dataclass(self)
        return {f.name: to_jsonable(getattr(self, f.name)) for f in _init_fields(type(self))}

    def to_json(self) -> str:
        """The config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys and ill-typed values raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
        return cls._from_mapping(data, prefix="")

    @classmethod
    def _from_mapping(cls: type[C], data: Mapping[str, Any], prefix: str) -> C:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in _init_fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown config key(s) {', '.join(prefix + k for k in unknown)}"
            )
        required = [
            f.name
            for f in _init_fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [prefix + k for k in required if k not in data]
        if missing:
            raise ValueError(f"{cls.__name__}: missing key(s) {', '.join(missing)} (required)")
        return cls(**{k: _convert(v, hints[k], prefix + k) for k, v in data.items()})

    def with_overrides(self: C, overrides: Iterable[str]) -> C:
        """A copy with dotted ``key=value`` overrides applied (e.g. ``optim.lr=3e-4``); validated.

        Every override that is wrong on its own (unknown key, unparsable or invalid value) is reported together
        in one ``ValueError``; then the combination is validated.
        """
        items = list(overrides)
        try:
            return self._apply(items)
        except ValueError as combined:
            problems = []
            for item in items:
                try:
                    self._apply([item])
                except ValueError as exc:
                    problems.append(str(exc))
            raise ValueError("; ".join(problems) if len(problems) > 1 else str(combined)) from None

    def _apply(self: C, overrides: list[str]) -> C:
        data = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} must look like key=value (e.g. optim.lr=3e-4)")
            key, text = item.split("=", 1)
            key = key.strip()
            parts = key.split(".")
            cls: type = type(self)
            node = data
            for i, part in enumerate(parts):
                hints = typing.get_type_hints(cls)
                names = {f.name for f in _init_fields(cls)}
                if part not in names:
                    known = ", ".join(".".join([*parts[:i], n]) for n in sorted(names))
                    raise ValueError(f"unknown config key {key!r} (known here: {known})")
                tp = hints[part]
                if i < len(parts) - 1:
                    if not _is_config(tp):
                        raise ValueError(f"unknown config key {key!r}: {'.'.join(parts[: i + 1])} is a value")
                    cls = tp
                    node = node[part]
                else:
                    node[part] = to_jsonable(_parse(text, tp, key))
        return type(self).from_dict(data)


def diff_keys(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.extend(diff_keys(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out.append(prefix + key)
    return out
