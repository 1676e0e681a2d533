"""The activation functions' names, one spelling each, importable without torch: the spec grammar
(netspec.py) and its help read them, and cnnlab/ops/activations.py registers every function and
module under exactly these names (one registry, STYLE.md rule 1)."""

from __future__ import annotations

import warnings

# In the order the grammar help lists them. Each is one word of letters because the spec grammar's
# words are letters and digits, and "-" begins its arrow "->".
ACTIVATION_NAMES = ("relu", "lrelu", "elu", "gelu", "silu", "tanh", "sigmoid", "softplus")

# Spellings that earlier versions accepted in one place or another -> the spelling to write now.
OLD_SPELLINGS = {"leaky-relu": "lrelu"}


def current_spelling(name: str, stacklevel: int = 1) -> str:
    """name itself, or the current spelling of an old one, with a DeprecationWarning that names it
    (stacklevel as if the caller called warnings.warn: 2 points at the caller's caller)."""
    new = OLD_SPELLINGS.get(name)
    if new is None:
        return name
    warnings.warn(
        f"The activation {name!r} is now spelled {new!r}; write {new!r} (the old spelling still "
        "works, but will be removed).",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return new
