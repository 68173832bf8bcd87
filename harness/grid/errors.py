"""Grid-file errors: one line that names the file, the key path and what is allowed."""
from __future__ import annotations

import typing
from typing import Any, Callable

from pydantic import BaseModel, ValidationError


class GridError(ValueError):
    """A malformed grid file. ``str()`` is the one line shown to the user."""

    def __init__(self, file: str, key_path: str, message: str):
        self.file, self.key_path, self.message = str(file), key_path, message
        super().__init__(f"{self.file}: {key_path or '(top level)'}: {message}")

    def lines(self) -> list[str]:
        """One line per problem (``error: `` is the caller's prefix)."""
        return [str(self)]


class GridErrors(GridError):
    """Every problem found in a grid file at once (repeats folded); one line each."""

    def __init__(self, errors: list[GridError]):
        unique: dict[str, None] = {}
        for e in errors:
            for line in e.lines():
                unique.setdefault(line, None)
        self.errors = list(unique)
        first = errors[0]
        ValueError.__init__(self, "\n".join(unique))
        self.file, self.key_path, self.message = first.file, first.key_path, first.message

    def lines(self) -> list[str]:
        return list(self.errors)


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (None if not a model)."""
    ann: Any = root
    for part in loc:
        ann = _strip(ann)
        if isinstance(part, int) or not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            args = typing.get_args(ann)
            ann = args[-1] if args else Any
            continue
        field = ann.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
    ann = _strip(ann)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _strip(ann: Any) -> Any:
    """Optional[X] / Union[X, None] -> X; the first model class of other unions."""
    if typing.get_origin(ann) is typing.Union:
        for a in typing.get_args(ann):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0] if args else ann
    return ann


def format_loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out and not out.endswith(" ") else "") + str(part)
    return out


def from_validation_error(file: str, err: ValidationError, root: type[BaseModel],
                          prefix: str | Callable[[tuple[Any, ...]], str] = "") -> GridErrors:
    """Every error of ``err``, each a :class:`GridError` naming the key path and what is
    allowed; ``prefix`` is put before each key path (a function of the error's location)."""
    return GridErrors([_one_error(file, e, root, prefix(tuple(e["loc"])) if callable(prefix) else prefix)
                       for e in err.errors()])


def _one_error(file: str, e: Any, root: type[BaseModel], prefix: str) -> GridError:
    loc = tuple(e["loc"])
    path = format_loc(loc, prefix)
    kind = e["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see the schema"
        msg = f"unknown key {loc[-1]!r}; allowed keys here: {allowed}"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "value_error":
        msg = str(e.get("ctx", {}).get("error", e["msg"]))
    else:
        msg = f"{e['msg']} (got {e.get('input')!r})"
    return GridError(file, path, msg)
