"""How a network spec is written: the grammar's help text (its activation list read from the one
activation table), its tokens, and errors that point at a position with a caret. Torch-free like
netspec.py, which turns the tokens into layers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnlab.errors import ConfigError
from cnnlab.specs.activations import ACTIVATION_NAMES

SPEC_GRAMMAR = f"""\
network specs: `--model` also takes a whole network in one line, the slides' pattern
INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC. Layers are joined by ->, a group
in [ ] (or a single layer) is repeated with *N (N >= 0), case does not matter and a leading
"input ->" is optional. Layers:
  conv32x3        32 filters of 3x3 with bias, stride 1, zero padding 1 ("same"); conv32 is
                  conv32x3; add sS for stride and pP for padding: conv64x5s2p0; conv alone
                  has 32 filters before the first pooling layer, doubling after each (32, 64,
                  128...), so the pattern above can be typed literally
  sep64x3         depthwise-separable conv (Xception): a 3x3 filter per band, then 1x1 to 64
  res64, res64s2  residual block (ResNet): two 3x3 conv-BN, a shortcut, ReLU
  se, se8         squeeze-excitation of the maps before it, reduction 16 or 8 (SENet)
  {" ".join(ACTIVATION_NAMES)}  activation
  bn              batch normalisation (of maps, or of a dense layer's outputs)
  dn, dn5x25      divisive normalisation over a 5x5 adjacency, or one 5 high and 25 wide
  maxpool2 minpool2 avgpool2
                  pooling over 2x2 with stride 2; maxpool3s2p1: 3x3, stride 2, padding 1;
                  pool is maxpool2
  dropout0.5      dropout with probability 0.5 (dropout alone is dropout0.5)
  gap gmp flatten global average pooling, global max pooling or flattening: maps -> vector
                  (flatten is implied before the first fc)
  fc128           dense layer of 128 units (fc before the last layer is fc128)
  fc              the classifier, sized to the number of classes: every spec ends with it
examples (in a TOML recipe: model = "..."):
  "INPUT -> [[CONV -> RELU]*2 -> POOL]*2 -> [FC -> RELU]*1 -> FC"   (the slides' pattern, the
      widths above: conv32 conv32 pool conv64 conv64 pool fc128 fc)
  "[[conv32 -> relu]*2 -> pool]*3 -> fc"
  "[conv16x5 -> bn -> relu -> maxpool2]*2 -> flatten -> [fc128 -> relu]*2 -> dropout -> fc"
  "conv8x5 -> fc"   (one layer of 8 kernels of 5x5x3: 5*5*3*8 + 8 = 608 parameters)
"""

# A word is letters, digits and dots (dropout0.5): no "-", which begins the arrow.
TOKEN = re.compile(
    r"(?P<arrow>->|>>|→)|(?P<open>\[)|(?P<close>\])|(?P<star>[*×])|(?P<number>\d+)"
    r"|(?P<word>[A-Za-z][A-Za-z0-9.]*)|(?P<space>\s+)"
)


@dataclass(frozen=True)
class Token:
    kind: str  # arrow, open, close, star, number or word
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def spec_error(text: str, start: int, end: int, message: str) -> ConfigError:
    """A ConfigError that shows the spec with a caret under characters start..end."""
    marker = " " * start + "^" * max(1, end - start)
    return ConfigError(f"Model spec error at position {start + 1}: {message}\n  {text}\n  {marker}")


def tokenize(text: str) -> list[Token]:
    """The tokens of a spec, spaces left out; an error points at a character no token takes."""
    tokens, position = [], 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match:
            raise spec_error(
                text, position, position + 1,
                f"unexpected character {text[position]!r}; a spec is made of layer names, "
                "->, [ ], and *N.",
            )  # fmt: skip
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), position))
        position = match.end()
    return tokens
