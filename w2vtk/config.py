"""Typed stage configs: dataclass <-> YAML, dotted command-line overrides, resolved-config saving.

Every stage has one dataclass config.  :func:`load_config` reads a YAML file (optional), applies
``key=value`` overrides (dotted keys reach nested dataclasses; values are parsed as YAML scalars or
lists), and checks every key and type strictly: an unknown key or a wrong type is a
:class:`~w2vtk.errors.W2vtkError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text, decode_utf8

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; returns the converted value or raises W2vtkError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except W2vtkError as err:
                errors.append(str(err))
        raise W2vtkError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
        raise W2vtkError(f"{where}: expected one of {list(get_args(tp))}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise W2vtkError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise W2vtkError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        elem = args[0] if args else Any
        out = [_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise W2vtkError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise W2vtkError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise W2vtkError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise W2vtkError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-5" as a string
            except ValueError:
                pass
        raise W2vtkError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise W2vtkError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise W2vtkError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, strictly (unknown keys and wrong types refused)."""
    if not isinstance(data, dict):
        raise W2vtkError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # YAML keys need not be strings (``1: x``, ``null: x``); sorted by their text, they are named.
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise W2vtkError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where != "config" else k) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise W2vtkError(f"{where}: {err}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list/scalars, suitable for YAML and ``torch.save(weights_only)``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise W2vtkError(f"override {key!r}: empty key component (write section.key=value)")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise W2vtkError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict:
    """``["optim.lr=0.1", "layers=[1,2]"]`` -> nested dict; values parsed as YAML."""
    data: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise W2vtkError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if not key:
            raise W2vtkError(f"override {item!r} has an empty key")
        try:
            value = _yaml_load(raw) if raw.strip() else ""
        except W2vtkError:
            value = raw  # not YAML: the text itself (a string option such as a path)
        _set_dotted(data, key, value)
    return data


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _yaml_load(text: str, where: str = "YAML") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise W2vtkError(f"{where}: not valid YAML ({' '.join(str(err).split())})") from None
    except Exception as err:  # noqa: BLE001
        # PyYAML's constructors let other errors through for bad scalars ("2001-13-01" ->
        # ValueError, "!!timestamp x" -> AttributeError, a 5000-digit int -> ValueError) and
        # deep nesting ("[" * 3000) -> RecursionError: all mean the same thing to the user.
        msg = " ".join(str(err).split())[:160] or type(err).__name__
        raise W2vtkError(f"{where}: not valid YAML ({msg})") from None


def read_yaml_file(path: str | Path, what: str = "file") -> Any:
    """Any YAML document of a file (safe loader), or None for an empty one.  A missing file,
    non-UTF-8 bytes (named by line) or anything PyYAML cannot load is a one-line W2vtkError."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: {what} not found")
    text = decode_utf8(path.read_bytes(), path, "not valid YAML (not UTF-8)")
    return _yaml_load(text, str(path))


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a config file ({} for an empty file)."""
    path = Path(path)
    data = read_yaml_file(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise W2vtkError(f"{path}: expected a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> T:
    """Defaults of ``cls`` <- ``base`` <- YAML file ``path`` <- ``overrides``; strictly checked."""
    data: dict = dict(base or {})
    where = "config"
    if path is not None:
        data = _merge(data, read_yaml(path))
        where = str(path)
    data = _merge(data, parse_overrides(overrides))
    try:
        return from_dict(cls, data, where="config")
    except W2vtkError as err:
        raise W2vtkError(f"{where}: {err}" if path is not None else str(err)) from None


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, to_yaml(obj))
