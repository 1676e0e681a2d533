"""Network specs: cs231n's pattern INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC
(seed 002) in one line, parsed into frozen dataclasses that round-trip. Torch-free, so the
command line can show the grammar (netspec_grammar.py: help text and tokens) without torch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from cnnlab.errors import ConfigError
from cnnlab.specs.activations import ACTIVATION_NAMES
from cnnlab.specs.grammar import SPEC_GRAMMAR as SPEC_GRAMMAR  # the CLI's help reads it here
from cnnlab.specs.grammar import Token, spec_error, tokenize


@dataclass(frozen=True)
class Conv:
    kind: ClassVar[str] = "conv"
    out_channels: int  # None only while parsing a bare "conv" (see _with_default_widths)
    kernel_size: int = 3
    stride: int = 1
    padding: int | None = None  # None: kernel_size // 2, "same" at stride 1

    def text(self) -> str:
        padding = "" if self.padding is None else f"p{self.padding}"
        return f"conv{self.out_channels}x{self.kernel_size}{_stride(self.stride)}{padding}"


@dataclass(frozen=True)
class SeparableConv:
    kind: ClassVar[str] = "sep"
    out_channels: int
    kernel_size: int = 3
    stride: int = 1

    def text(self) -> str:
        return f"sep{self.out_channels}x{self.kernel_size}{_stride(self.stride)}"


@dataclass(frozen=True)
class Residual:
    kind: ClassVar[str] = "res"
    out_channels: int
    stride: int = 1

    def text(self) -> str:
        return f"res{self.out_channels}{_stride(self.stride)}"


@dataclass(frozen=True)
class SqueezeExcitation:
    kind: ClassVar[str] = "se"
    reduction: int = 16

    def text(self) -> str:
        return "se" if self.reduction == 16 else f"se{self.reduction}"


@dataclass(frozen=True)
class Activation:
    kind: ClassVar[str] = "activation"
    function: str = "relu"

    def text(self) -> str:
        return self.function


@dataclass(frozen=True)
class Norm:
    kind: ClassVar[str] = "norm"
    method: str = "batch"  # "batch" or "divisive"
    kernel_size: tuple[int, int] | None = None  # (height, width) of the divisive adjacency

    def text(self) -> str:
        return "bn" if self.method == "batch" else f"dn{self.kernel_size[0]}x{self.kernel_size[1]}"


@dataclass(frozen=True)
class Pool:
    kind: ClassVar[str] = "pool"
    method: str = "max"  # "max", "min" or "avg"
    kernel_size: int = 2
    stride: int | None = None  # None: kernel_size
    padding: int = 0

    def text(self) -> str:
        stride = "" if self.stride is None else f"s{self.stride}"
        padding = f"p{self.padding}" if self.padding else ""
        return f"{self.method}pool{self.kernel_size}{stride}{padding}"


@dataclass(frozen=True)
class GlobalPool:
    kind: ClassVar[str] = "global_pool"
    method: str = "avg"  # "avg" or "max"

    def text(self) -> str:
        return "gap" if self.method == "avg" else "gmp"


@dataclass(frozen=True)
class Flatten:
    kind: ClassVar[str] = "flatten"

    def text(self) -> str:
        return "flatten"


@dataclass(frozen=True)
class Dropout:
    kind: ClassVar[str] = "dropout"
    probability: float = 0.5

    def text(self) -> str:
        return f"dropout{self.probability!r}"


@dataclass(frozen=True)
class Dense:
    kind: ClassVar[str] = "dense"
    units: int | None = None  # None: the classifier, one unit per class

    def text(self) -> str:
        return "fc" if self.units is None else f"fc{self.units}"


@dataclass(frozen=True)
class Repeat:
    kind: ClassVar[str] = "repeat"
    body: tuple[Node, ...]
    count: int

    def text(self) -> str:
        return "[" + " -> ".join(node.text() for node in self.body) + f"]*{self.count}"


Layer = (
    Conv | SeparableConv | Residual | SqueezeExcitation | Activation | Norm | Pool | GlobalPool
) | (Flatten | Dropout | Dense)
Node = Layer | Repeat
NODE_TYPES: dict[str, type] = {cls.kind: cls for cls in (*Layer.__args__, Repeat)}


@dataclass(frozen=True)
class NetworkSpec:
    """A parsed spec: a tuple of layers and repeated groups. `text()` is its canonical form."""

    layers: tuple[Node, ...]

    def text(self) -> str:
        return " -> ".join(node.text() for node in self.layers)

    def expand(self) -> tuple[Layer, ...]:
        """The layers in order with every repetition written out."""
        return tuple(_expand(self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [_node_to_dict(node) for node in self.layers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        try:
            return cls(tuple(_node_from_dict(item) for item in data["layers"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(
                f"Not a valid network spec dictionary ({error!r}); expected {{'layers': [...]}} "
                "with one {'kind': ..., ...} per layer, as NetworkSpec.to_dict() writes it."
            ) from None


def _expand(nodes: tuple[Node, ...]) -> Iterator[Layer]:
    for node in nodes:
        if isinstance(node, Repeat):
            for _ in range(node.count):
                yield from _expand(node.body)
        else:
            yield node


def _node_to_dict(node: Node) -> dict[str, Any]:
    if isinstance(node, Repeat):
        return {
            "kind": "repeat",
            "body": [_node_to_dict(n) for n in node.body],
            "count": node.count,
        }
    values = {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(node).items()}
    return {"kind": node.kind, **values}


def _node_from_dict(data: dict[str, Any]) -> Node:
    values = dict(data)
    cls = NODE_TYPES[values.pop("kind")]
    if cls is Repeat:
        return Repeat(tuple(_node_from_dict(n) for n in values["body"]), int(values["count"]))
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.kind}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _stride(stride: int) -> str:
    return "" if stride == 1 else f"s{stride}"


# ---------------------------------------------------------------- parsing

MAX_REPEAT = 1_000  # *N beyond this is a typo or a fuzzer, not a network
MAX_LAYERS = 10_000  # layers after every repetition is expanded
_NUMBER = r"(\d+)"
_FLOAT = r"(\d*\.?\d+)"
# word prefix -> (argument pattern, how to write it, constructor from the match groups)
_WORDS: dict[str, tuple[str, str, Any]] = {
    "conv": (
        rf"(?:{_NUMBER}(?:x{_NUMBER})?(?:s{_NUMBER})?(?:p{_NUMBER})?)?",
        "conv<filters>[x<kernel>][s<stride>][p<padding>], e.g. conv32x3, or conv alone",
        lambda g: Conv(_int(g[0], None), _int(g[1], 3), _int(g[2], 1), _int(g[3], None)),
    ),
    "sep": (
        rf"{_NUMBER}(?:x{_NUMBER})?(?:s{_NUMBER})?",
        "sep<filters>[x<kernel>][s<stride>], e.g. sep64x3",
        lambda g: SeparableConv(int(g[0]), _int(g[1], 3), _int(g[2], 1)),
    ),
    "res": (
        rf"{_NUMBER}(?:s{_NUMBER})?",
        "res<filters>[s<stride>], e.g. res64s2",
        lambda g: Residual(int(g[0]), _int(g[1], 1)),
    ),
    "se": (
        rf"{_NUMBER}?",
        "se[<reduction>], e.g. se8",
        lambda g: SqueezeExcitation(_int(g[0], 16)),
    ),
    "bn": ("", "bn", lambda g: Norm("batch")),
    "dn": (
        rf"(?:{_NUMBER}(?:x{_NUMBER})?)?",
        "dn[<height>[x<width>]], e.g. dn5x25",
        lambda g: Norm("divisive", (_int(g[0], 5), _int(g[1], _int(g[0], 5)))),
    ),
    "pool": ("", "pool (= maxpool2)", lambda g: Pool("max")),
    "gap": ("", "gap", lambda g: GlobalPool("avg")),
    "gmp": ("", "gmp", lambda g: GlobalPool("max")),
    "flatten": ("", "flatten", lambda g: Flatten()),
    "dropout": (rf"{_FLOAT}?", "dropout[<p>], e.g. dropout0.5", lambda g: Dropout(_float(g[0]))),
    "fc": (rf"{_NUMBER}?", "fc or fc<units>, e.g. fc128", lambda g: Dense(_int(g[0], None))),
}
for _method in ("max", "min", "avg"):
    _WORDS[f"{_method}pool"] = (
        rf"{_NUMBER}?(?:s{_NUMBER})?(?:p{_NUMBER})?",
        f"{_method}pool[<size>][s<stride>][p<padding>], e.g. {_method}pool3s2p1",
        lambda g, m=_method: Pool(m, _int(g[0], 2), _int(g[1], None), _int(g[2], 0)),
    )
for _name in ACTIVATION_NAMES:
    _WORDS[_name] = ("", _name, lambda g, n=_name: Activation(n))


def _int(text: str | None, default: int | None) -> int | None:
    return default if text is None else int(text)


def _float(text: str | None) -> float:
    return 0.5 if text is None else float(text)


@dataclass(frozen=True)
class _Located:
    """A parsed node with where it was written, so later checks can point at it."""

    node: Node
    start: int
    end: int
    children: tuple[_Located, ...] = ()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def error_here(self, message: str) -> ConfigError:
        token = self.peek()
        if token is None:
            return spec_error(self.text, len(self.text), len(self.text), message)
        return spec_error(self.text, token.start, token.end, message)

    def chain(self) -> list[_Located]:
        items = [self.term()]
        while (token := self.peek()) is not None and token.kind == "arrow":
            self.index += 1
            items.append(self.term())
        return items

    def term(self) -> _Located:
        token = self.peek()
        if token is None or token.kind not in ("word", "open"):
            found = "the end of the spec" if token is None else repr(token.text)
            raise self.error_here(f"expected a layer (such as conv32x3) or [ here, found {found}.")
        self.index += 1
        if token.kind == "open":
            body = self.chain()
            closing = self.peek()
            if closing is None or closing.kind != "close":
                raise spec_error(
                    self.text, token.start, token.end, "this [ is never closed; add a ]."
                )
            self.index += 1
            group = Repeat(tuple(i.node for i in body), 1)
            item = _Located(group, token.start, closing.end, tuple(body))
            if self._star():
                return self._repeat(item, allow_bare=True)
            return item
        item = _Located(_layer(self.text, token), token.start, token.end)
        return self._repeat(item, allow_bare=False) if self._star() else item

    def _star(self) -> bool:
        token = self.peek()
        return token is not None and token.kind == "star"

    def _repeat(self, item: _Located, allow_bare: bool) -> _Located:
        self.index += 1
        count = self.peek()
        if count is None or count.kind != "number":
            raise self.error_here("expected a repetition count after *, as in [conv32 -> relu]*2.")
        if int(count.text) > MAX_REPEAT:
            raise self.error_here(
                f"a repetition count of {int(count.text):,} is more than {MAX_REPEAT:,}; "
                "networks that deep are not what a spec is for."
            )
        self.index += 1
        body = item.children if allow_bare else (item,)
        node = Repeat(tuple(i.node for i in body), int(count.text))
        return _Located(node, item.start, count.end, body)


def _layer(text: str, token: Token) -> Layer:
    word = token.text.lower()
    match = re.fullmatch(r"([a-z]+)(.*)", word)
    prefix, arguments = match.group(1), match.group(2)
    if prefix not in _WORDS:
        known = ", ".join(sorted(_WORDS))
        raise spec_error(
            text, token.start, token.end,
            f"unknown layer {token.text!r}; layers are {known} (see `cnnlab train --help`).",
        )  # fmt: skip
    pattern, usage, make = _WORDS[prefix]
    parsed = re.fullmatch(pattern, arguments)
    if parsed is None:
        raise spec_error(
            text, token.start, token.end, f"{token.text!r} is not a valid layer: write {usage}."
        )
    layer = make(parsed.groups())
    problem = _check_values(layer)
    if problem:
        raise spec_error(text, token.start, token.end, f"{token.text!r}: {problem}.")
    return layer


def _check_values(layer: Layer) -> str:
    for name in ("out_channels", "kernel_size", "stride", "units", "reduction"):
        value = getattr(layer, name, None)
        values = value if isinstance(value, tuple) else (value,)
        if any(v is not None and v < 1 for v in values):
            return f"{name.replace('_', ' ')} must be at least 1"
    if isinstance(layer, Dropout) and not 0.0 <= layer.probability < 1.0:
        return "the dropout probability must be in [0, 1)"
    if isinstance(layer, Pool) and layer.padding * 2 > layer.kernel_size:
        return "padding may be at most half the pooling window"
    return ""


def parse_spec(text: str) -> NetworkSpec:
    """Parse a spec such as "[[conv32 -> relu]*2 -> pool]*3 -> fc" (see SPEC_GRAMMAR)."""
    parser = _Parser(text)
    token = parser.peek()
    if token is not None and token.kind == "word" and token.text.lower() == "input":
        parser.index += 1
        if parser.peek() is not None:
            if parser.peek().kind != "arrow":
                raise parser.error_here("expected -> after INPUT.")
            parser.index += 1
    items = parser.chain()
    if parser.peek() is not None:
        raise parser.error_here(
            f"unexpected {parser.peek().text!r}; join layers with -> and close groups with ]."
        )
    layers = _expanded_size(items)
    if layers > MAX_LAYERS:
        raise spec_error(
            text, 0, len(text),
            f"the repetitions expand to {layers:,} layers, more than {MAX_LAYERS:,}.",
        )  # fmt: skip
    flat = list(_expand_located(items))
    if any(_needs_default_width(item, item is flat[-1]) for item in flat):
        flat = _with_default_widths(flat)
        items = flat  # the widths differ between repetitions: the spec is written out
    _check_structure(text, flat)
    return NetworkSpec(tuple(item.node for item in items))


DEFAULT_FIRST_FILTERS = 32  # a bare conv: 32 filters, doubled after every pooling layer
DEFAULT_HIDDEN_UNITS = 128  # a bare fc before the classifier: fc128


def _needs_default_width(item: _Located, last: bool) -> bool:
    node = item.node
    return (isinstance(node, Conv) and node.out_channels is None) or (
        isinstance(node, Dense) and node.units is None and not last
    )


def _with_default_widths(flat: list[_Located]) -> list[_Located]:
    """The slides' pattern typed literally ("[[CONV -> RELU]*2 -> POOL]*2 -> [FC -> RELU]*1 ->
    FC"): a bare conv gets 32 filters in the first stage, doubling after each pool (32, 64,
    128...); a bare fc before the last is a hidden layer of 128 units."""
    stage, filled = 0, []
    for item in flat:
        node = item.node
        if _needs_default_width(item, item is flat[-1]):
            if isinstance(node, Conv):
                width = DEFAULT_FIRST_FILTERS * 2**stage
                node = Conv(width, node.kernel_size, node.stride, node.padding)
            else:
                node = Dense(DEFAULT_HIDDEN_UNITS)
        stage += isinstance(node, Pool)
        filled.append(_Located(node, item.start, item.end))
    return filled


def _expanded_size(items: list[_Located] | tuple[_Located, ...]) -> int:
    """How many layers `items` expand to, counted without expanding them (nested repeats
    multiply, so expanding first could take forever)."""
    return sum(
        item.node.count * _expanded_size(item.children) if isinstance(item.node, Repeat) else 1
        for item in items
    )


def _expand_located(items: list[_Located] | tuple[_Located, ...]) -> Iterator[_Located]:
    for item in items:
        if isinstance(item.node, Repeat):
            for _ in range(item.node.count):
                yield from _expand_located(item.children)
        else:
            yield item


_VECTOR_LAYERS = (Dense, Activation, Dropout)


def _check_structure(text: str, flat: list[_Located]) -> None:
    """Maps first (conv, pool, ...), then at most one switch to a vector, then dense layers."""
    vector_from: _Located | None = None
    for item in flat:
        node = item.node
        if vector_from is not None:
            allowed = isinstance(node, _VECTOR_LAYERS) or node == Norm("batch")
            if not allowed:
                where = text[vector_from.start : vector_from.end]
                raise spec_error(
                    text, item.start, item.end,
                    f"{text[item.start:item.end]!r} works on image maps, but {where!r} (position "
                    f"{vector_from.start + 1}) already turned the maps into a vector; move it "
                    "before that.",
                )  # fmt: skip
        elif isinstance(node, (Dense, GlobalPool, Flatten)):
            vector_from = item
    if not flat or flat[-1].node != Dense(None):
        raise spec_error(
            text, len(text), len(text),
            "a spec ends with fc, the classifier sized to the number of classes "
            "(append -> fc).",
        )  # fmt: skip


def looks_like_spec(text: str) -> bool:
    """True if `text` is meant as a spec rather than a model name (to choose the error message)."""
    if any(mark in text for mark in ("->", ">>", "→", "[", "*")):
        return True
    match = re.match(r"\s*([A-Za-z]+)", text)
    return bool(match) and (match.group(1).lower() in _WORDS or match.group(1).lower() == "input")
