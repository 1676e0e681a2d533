"""Does a value read from JSON or TOML fit a type annotation? Plain Python, no torch: the
training settings (cnnlab.training.config) and the model builders' options
(cnnlab.models.registry) are checked with it before anything is built."""

from __future__ import annotations

import builtins
import types
import typing
from typing import Any


def resolve(annotation: Any, namespace: dict[str, Any] | None = None) -> Any:
    """An annotation written as a string ("float | None") as a type; None if it names something
    `namespace` (a module's globals) does not hold."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, vars(builtins), namespace or {})  # an annotation, not input
    except Exception:  # a name only the annotating module knows at run time
        return None


def fits(value: Any, expected: Any) -> bool:
    """Whether `value` (from JSON or TOML) is of type `expected`; an int is a float, a bool is no
    int, a list is a tuple; an annotation this does not understand accepts anything."""
    origin, arguments = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, argument) for argument in arguments)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(map(fits, value, arguments))
        return all(fits(item, arguments[0]) for item in value) if arguments else True
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # an annotation this check does not understand: the builder decides


def describe(expected: Any, none: str = "null") -> str:
    """How a message names the type: "a list of whole numbers", "a number or null"; `none` is
    how None is named (TOML has no null: its settings pass "" and leave the word out)."""
    origin, arguments = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        words = [describe(argument, none) for argument in arguments]
        return " or ".join(word for word in words if word)
    if origin in (tuple, list):
        plurals = {int: "whole numbers", float: "numbers", bool: "booleans", str: "strings"}
        return f"a list of {plurals.get(arguments[0], 'values')}" if arguments else "a list"
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
    if expected is type(None):
        return none
    return names.get(expected, getattr(expected, "__name__", str(expected)))
