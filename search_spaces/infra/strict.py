"""The one strict reader of user files: YAML configs into dataclasses, JSON documents
field by field. Full key paths, did-you-mean, every error collected, then one
`UserError` naming the file.

Dataclass types understood: dataclasses, `int`, `float`, `str`, `bool`, `Path`
(resolved against the YAML file's folder), `Literal[...]`, `list[T]`, `dict[str, T]`,
`Any`, `T | None` and unions of a scalar with a dataclass (picked by the value's
shape). A field's `metadata={"check": fn}` adds a value check (`search_spaces.infra.checks`).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from search_spaces.infra.checks import bounded_repr, closest, did_you_mean, named, show
from search_spaces.infra.errors import UserError, read_user_text
from search_spaces.infra.limits import MAX_DEPTH, document_problem

_BAD = object()  # marks a value that failed to load (its error is already recorded)

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               Path: "a path"}


class _StrictSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps
    the last one silently, so a copy-paste slip would go unnoticed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """`yaml.safe_load` of a file, with errors as one line naming file and line; a
    document past the limits (`search_spaces.infra.limits`) is refused the same way."""
    return parse_yaml(read_user_text(path), str(path))


def parse_yaml(text: str, source: str, what: str = "invalid YAML", path: str = "") -> Any:
    """Safe-load `text` (a file's, or a `--set` value's for key `path`) within the
    document limits."""
    try:
        data = yaml.load(text, Loader=_StrictSafeLoader)  # safe_load's loader, stricter
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark and not path else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{where}{what}: {problem}", source) from None
    except RecursionError:
        raise UserError(f"{what}: nested deeper than {MAX_DEPTH} levels", source) from None
    except ValueError as err:  # an integer of thousands of digits
        raise UserError(f"{what}: {str(err).split(';')[0]}", source) from None
    problem = document_problem(data, path)
    if problem:
        raise UserError(problem, source)
    return data


class Loader:
    """Converts plain YAML data into typed dataclasses, collecting every error."""

    def __init__(self, base_dir: Path, cwd_keys: frozenset[str] = frozenset()) -> None:
        self.base_dir = base_dir
        self.cwd_keys = cwd_keys  # keys set on the command line: paths relative to cwd
        self.errors: list[str] = []

    def load(self, tp: Any, value: Any, path: str) -> Any:
        if tp is Any:
            return value
        origin = get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return self._union(get_args(tp), value, path)
        if origin is Literal:
            problem = named(get_args(tp))(value)
            return self._fail(path, problem) if problem else value
        if origin is list:
            if not isinstance(value, list):
                return self._fail(path, f"expected a list, got {_show(value)}")
            (item_tp,) = get_args(tp)
            items = [self.load(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
            return _BAD if any(i is _BAD for i in items) else items
        if origin is dict:
            if not isinstance(value, dict):
                return self._fail(path, f"expected a mapping, got {_show(value)}")
            _, item_tp = get_args(tp)
            out = {str(k): self.load(item_tp, v, f"{path}.{k}") for k, v in value.items()}
            return _BAD if any(v is _BAD for v in out.values()) else out
        if dataclasses.is_dataclass(tp):
            return self._dataclass(tp, value, path)
        return self._scalar(tp, value, path)

    def _fail(self, path: str, message: str) -> object:
        self.errors.append(f"{path}: {message}")
        return _BAD

    def _scalar(self, tp: type, value: Any, path: str) -> Any:
        if tp is float and isinstance(value, str):
            # PyYAML (YAML 1.1) reads `1e-3` (no dot) as a string; users mean a number.
            try:
                value = float(value)
            except ValueError:
                pass
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
            Path: isinstance(value, str) and value != "" and "\0" not in value,
        }.get(tp)
        if ok is None:
            raise TypeError(f"unsupported config type {tp!r} at {path}")
        if not ok:
            return self._fail(path, f"expected {_TYPE_WORDS[tp]}, got {_show(value)}")
        if tp is float:
            return float(value)
        if tp is Path:
            p = Path(value).expanduser()
            base = Path.cwd() if path in self.cwd_keys else self.base_dir
            return p if p.is_absolute() else (base / p).resolve()
        return value

    def _union(self, arms: tuple, value: Any, path: str) -> Any:
        if value is None and type(None) in arms:
            return None
        arms = tuple(a for a in arms if a is not type(None))
        # Pick the arm by the value's shape: a mapping loads into the dataclass arm.
        if isinstance(value, dict):
            for arm in arms:
                if dataclasses.is_dataclass(arm) or get_origin(arm) is dict:
                    return self.load(arm, value, path)
        for arm in arms:
            trial = Loader(self.base_dir, self.cwd_keys)
            result = trial.load(arm, value, path)
            if result is not _BAD:
                return result
        words = " or ".join(_type_word(a) for a in arms)
        return self._fail(path, f"expected {words}, got {_show(value)}")

    def _dataclass(self, tp: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            return self._fail(path or "(top level)", f"expected a mapping, got {_show(value)}")
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        hints = get_type_hints(tp)
        for key in value:
            if key not in fields:
                close = closest(key, list(fields))
                hint = f" (did you mean '{_join(path, close)}'?)" if close else ""
                self.errors.append(f"{_join(path, key)}: unknown key{hint}")
        kwargs: dict[str, Any] = {}
        bad = False
        for name, f in fields.items():
            where = _join(path, name)
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.errors.append(f"{where}: missing required key")
                    bad = True
                continue
            loaded = self.load(hints[name], value[name], where)
            if loaded is _BAD:
                bad = True
                continue
            check = f.metadata.get("check")
            problem = check(loaded) if check and loaded is not None else None
            if problem:
                self.errors.append(f"{where}: {problem}")
                bad = True
                continue
            kwargs[name] = loaded
        if bad or any(k not in fields for k in value):
            return _BAD
        try:
            return tp(**kwargs)
        except UserError as err:  # a cross-field check in the dataclass itself
            msg = err.message
            self.errors.append(msg if msg.startswith(path) and path else _join(path, msg))
            return _BAD


def load_dataclass(tp: type, data: Any, source: str, base_dir: Path,
                   cwd_keys: frozenset[str] = frozenset()) -> Any:
    """Load `data` into dataclass `tp`; raise one `UserError` listing every problem."""
    loader = Loader(base_dir, cwd_keys)
    result = loader.load(tp, {} if data is None else data, "")
    if loader.errors:
        first, rest = loader.errors[0], len(loader.errors) - 1
        more = f" (and {rest} more: {'; '.join(loader.errors[1:4])})" if rest else ""
        raise UserError(first + more, source)
    return result


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """Apply `key.path=value` overrides (values parsed as YAML) to raw config data."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key.path=value, got {bounded_repr(item)}",
                            source)
        # The file's own safe reader: a tag is an error, not a string.
        value = parse_yaml(raw, source, f"--set {key}: invalid YAML value", key)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: '{part}' is not a section", source)
            node = child
        node[parts[-1]] = value
    return data


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any) -> str:
    # YAML values are quoted as Python reprs (`'relu'`, `None`), as the user's YAML reads.
    return bounded_repr(value)


def _type_word(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    return _TYPE_WORDS.get(tp, str(tp))


# ------------------------------------------------------------------ JSON documents

def read_json(path: Path | str, what: str = "") -> Any:
    """A user's JSON file, parsed; unreadable or invalid JSON is one `UserError`."""
    text = read_user_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"line {err.lineno}: invalid JSON: {err.msg}", str(path)) from None
    except RecursionError:
        raise UserError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels",
                        str(path)) from None
    except ValueError as err:  # an integer of thousands of digits
        raise UserError(f"invalid JSON: {str(err).split(';')[0]}", str(path)) from None
    problem = document_problem(data)
    if problem:
        raise UserError(problem, str(path))
    return data


class FieldReader:
    """Reads JSON objects strictly against field specs, collecting errors with their
    key paths: `{name: (type, check)}`, every field required, no other allowed."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def obj(self, data: Any, path: str, fields: dict[str, tuple]) -> dict[str, Any] | None:
        """Check `data` is an object with exactly `fields` ({name: (type, check)})."""
        if not isinstance(data, dict):
            self.errors.append(f"{path or '(top level)'}: expected an object, got {show(data)}")
            return None
        out: dict[str, Any] = {}
        for key in data:
            if key not in fields:
                self.errors.append(f"{_join(path, key)}: unknown field{did_you_mean(key, fields)}")
        for key, (kind, check) in fields.items():
            where = _join(path, key)
            if key not in data:
                self.errors.append(f"{where}: missing field")
                continue
            value = data[key]
            if not _is_type(value, kind):
                self.errors.append(f"{where}: expected {kind.__name__}, got {show(value)}")
                continue
            if kind is float:
                value = float(value)
            problem = check(value) if check else None
            if problem:
                self.errors.append(f"{where}: {problem}")
                continue
            out[key] = value
        return out if len(out) == len(fields) else None


def _is_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


