"""Typed stage configs: dataclass <-> YAML, dotted command-line overrides, resolved-config saving.

Every stage has one dataclass config.  :func:`load_config` reads a YAML file (optional), applies
``key=value`` overrides (dotted keys reach nested dataclasses; values are parsed as YAML scalars or
lists), and checks every key and type strictly: an unknown key or a wrong type is a
:class:`~w2vtk.errors.W2vtkError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

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
        hint = suggest(str(unknown[0]), key_paths(cls)[0])
        prefix = "" if where == "config" else f"{where}: "  # top level: the caller names the file
        raise W2vtkError(f"{prefix}unknown key {unknown[0]!r}" + (f"; did you mean {hint!r}?" if hint else
                                                                  f" (known: {', '.join(sorted(fields))})"))
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
    import yaml  # here, not at the top: models and checkpoints import this module on GPU hosts without PyYAML

    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)

# ----------------------------------------------------------------------------------------------
# key paths, suggestions and renamed keys

def key_paths(cls: type) -> tuple[set[str], set[str]]:
    """(every dotted leaf key of dataclass ``cls``, the dotted keys of its sections), recursing into
    nested dataclasses; a mapping-typed field (``paper: dict``) is a leaf whose sub-keys are free."""
    leaves: set[str] = set()
    sections: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sections.add(f.name)
            sub_leaves, sub_sections = key_paths(tp)
            leaves |= {f"{f.name}.{k}" for k in sub_leaves}
            sections |= {f"{f.name}.{k}" for k in sub_sections}
        else:
            leaves.add(f.name)
    return leaves, sections


def suggest(key: str, candidates: typing.Iterable[str]) -> str | None:
    """The known dotted key nearest to ``key`` (same last component first, then spelling), or None."""
    candidates = sorted(candidates)
    last = key.rsplit(".", 1)[-1]
    same_last = [c for c in candidates if c.rsplit(".", 1)[-1] == last]
    if same_last:
        return same_last[0]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if close:
        return close[0]
    by_last = {c.rsplit(".", 1)[-1]: c for c in candidates}
    close = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.7)
    return by_last[close[0]] if close else None


def _get_dotted(data: dict, key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _pop_dotted(data: dict, key: str) -> Any:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node[part]
    value = node.pop(parts[-1])
    if len(parts) > 1 and not node:  # an emptied section is dropped, not left as {}
        _pop_dotted(data, ".".join(parts[:-1]))
    return value


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    return data


def apply_renames(data: dict, renamed: dict[str, str], where: str, notes: list[str] | None = None) -> dict:
    """Move keys a config class has renamed (``{"lr": "optim.lr"}``) to their new place; a copy.

    ``notes`` (when given) collects one deprecation line per old key used; the same setting given
    under both names is an error naming both."""
    data = _deep_copy(data)
    for old, new in renamed.items():
        found, value = _get_dotted(data, old)
        if not found:
            continue
        if _get_dotted(data, new)[0]:
            raise W2vtkError(f"{where}: {old!r} and {new!r} are the same setting (the old and the new "
                             f"name); give only {new!r}")
        _pop_dotted(data, old)
        _set_dotted(data, new, value)
        if notes is not None:
            notes.append(f"{where}: {old!r} is now {new!r} (the old name still works for now)")
    return data


def check_override_keys(cls: type, overrides: dict, items: list[str]) -> None:
    """Refuse an override naming no field of ``cls``, blaming the command-line item (not the conf
    file) and suggesting the nearest key."""
    leaves, sections = key_paths(cls)

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if key in leaves:
                continue
            if key in sections and isinstance(v, dict):
                walk(v, key + ".")
                continue
            if key in sections:
                continue  # a whole section given as a value: from_dict checks it
            if any(key.startswith(s + ".") for s in leaves):
                continue  # inside a free mapping (paper.*) or a leaf's own value
            item = next((i for i in items if _override_key(i) == key), key)
            hint = suggest(key, leaves)
            raise W2vtkError(f"override {item!r}: unknown key {key!r}" + (f"; did you mean {hint!r}?" if hint else ""))

    walk(overrides, "")


def print_notes(notes: list[str]) -> None:
    for line in notes:
        print(f"note: {line}", file=sys.stderr)


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


def _override_key(item: str) -> str:
    """The dotted key of a ``key=value`` override as parse_overrides reads it (``--max-epochs`` ->
    ``max_epochs``)."""
    return item.split("=", 1)[0].strip().lstrip("-").replace("-", "_")


def parse_overrides(overrides: list[str] | None) -> dict:
    """``["optim.lr=0.1", "layers=[1,2]"]`` -> nested dict; values parsed as YAML."""
    data: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise W2vtkError(f"override {item!r} must look like key=value")
        key, raw = _override_key(item), item.split("=", 1)[1]
        if not key:
            raise W2vtkError(f"override {item!r} has an empty key")
        try:
            value = _yaml_load(raw) if raw.strip() else ""
        except W2vtkError:
            value = raw  # not YAML: the text itself (a string option such as a path)
        _set_dotted(data, key, value)
    return data


def merge_dicts(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out


def _yaml_load(text: str, where: str = "YAML") -> Any:
    import yaml

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
                base: dict | None = None, notes: list[str] | None = None) -> T:
    """Defaults of ``cls`` <- ``base`` <- YAML file ``path`` <- ``overrides``; strictly checked.

    Keys the class has renamed (its ``RENAMED`` mapping, old dotted key -> new) are accepted under
    their old name with a deprecation line (to ``notes`` when given, else stderr). An unknown key on
    the command line is blamed on the override, with the nearest known key."""
    renamed = getattr(cls, "RENAMED", {})
    own_notes: list[str] = [] if notes is None else notes
    data: dict = apply_renames(dict(base or {}), renamed, "saved config")
    where = "config"
    if path is not None:
        data = merge_dicts(data, apply_renames(read_yaml(path), renamed, str(path), own_notes))
        where = str(path)
    extra = apply_renames(parse_overrides(overrides), renamed, "override", own_notes)
    check_override_keys(cls, extra, list(overrides or []))
    data = merge_dicts(data, extra)
    return build_config(cls, data, where if path is not None else None, own_notes if notes is None else None)


def build_config(cls: type[T], data: dict, where: str | None, notes_to_print: list[str] | None) -> T:
    """The last step of loading a config: print ``notes_to_print`` (renamed keys; None: nothing) and
    build ``cls`` from the merged ``data``, an error naming ``where`` (the config file; None: none)."""
    if notes_to_print is not None:
        print_notes(notes_to_print)
    try:
        return from_dict(cls, data, where="config")
    except W2vtkError as err:
        raise W2vtkError(f"{where}: {err}" if where is not None else str(err)) from None


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, to_yaml(obj))
