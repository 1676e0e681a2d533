"""The one activation registry: every entry works the same in ops, layers and the spec grammar,
against torch.nn.functional as the oracle; old spellings warn and give the same result."""

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers.blocks import ClassifierHead, ConvNormAct, make_activation
from cnnlab.models import ModelSpec, build_model
from cnnlab.ops import ACTIVATIONS, activation
from cnnlab.ops.activations import accepted_names
from cnnlab.specs.activations import ACTIVATION_NAMES, OLD_SPELLINGS
from cnnlab.specs.network import SPEC_GRAMMAR, Activation, parse_spec

ORACLES = {
    "relu": F.relu,
    "lrelu": lambda x: F.leaky_relu(x, 0.01),
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
}


def _inputs() -> torch.Tensor:  # [2, 3, 4, 5], both signs and zero
    x = torch.linspace(-4, 4, 2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    return x.requires_grad_()


def test_one_spelling_list_for_the_registry_the_grammar_and_its_help():
    assert ACTIVATIONS.names() == sorted(ACTIVATION_NAMES) == sorted(ORACLES)
    assert f"  {' '.join(ACTIVATION_NAMES)}  activation\n" in SPEC_GRAMMAR
    assert not set(OLD_SPELLINGS) & set(ACTIVATION_NAMES)
    assert set(OLD_SPELLINGS.values()) <= set(ACTIVATION_NAMES)
    assert accepted_names() == (*ACTIVATIONS.names(), *OLD_SPELLINGS)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_the_op_matches_torch_forward_and_gradient(name):
    x = _inputs()
    torch.testing.assert_close(activation(x, name), ORACLES[name](x))
    (grad,) = torch.autograd.grad(activation(x, name).sum(), x)
    (expected,) = torch.autograd.grad(ORACLES[name](x).sum(), x)
    torch.testing.assert_close(grad, expected)
    assert ACTIVATIONS.get(name)(x).shape == x.shape  # an entry is callable like its function


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_the_module_is_fresh_not_in_place_and_matches_torch(name):
    x = _inputs().detach()
    before = x.clone()
    module = make_activation(name)
    assert isinstance(module, nn.Module) and module is not make_activation(name)
    assert not getattr(module, "inplace", False)
    torch.testing.assert_close(module(x), ORACLES[name](x))
    assert torch.equal(x, before)
    layer = ConvNormAct(3, 4, activation=name)
    head = ClassifierHead(3 * 4 * 5, 2, pool="flatten", hidden_units=(6,), activation=name)
    assert type(layer.act) is type(module) and type(head.act1) is type(module)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_the_grammar_word_builds_the_same_module(name):
    spec = parse_spec(f"conv4 -> {name.upper()} -> fc")
    assert spec.layers[1] == Activation(name) and spec.text() == f"conv4x3 -> {name} -> fc"
    options = {"spec": spec.text()}
    model = build_model(ModelSpec("spec", 3, 10, (8, 8), options))
    module = model.features[1]
    assert type(module) is type(make_activation(name))
    x = _inputs().detach()
    torch.testing.assert_close(module(x), ORACLES[name](x))


@pytest.mark.parametrize(("old", "new"), sorted(OLD_SPELLINGS.items()))
def test_an_old_spelling_warns_with_the_new_one_and_gives_the_same_result(old, new):
    x = _inputs().detach()
    with pytest.warns(DeprecationWarning, match=f"now spelled '{new}'") as caught:
        result = activation(x, old)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    torch.testing.assert_close(result, activation(x, new))
    with pytest.warns(DeprecationWarning, match=f"write '{new}'") as caught:
        module = make_activation(old)
    assert caught[0].filename == __file__
    torch.testing.assert_close(module(x), make_activation(new)(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current spelling never warns
        activation(x, new), make_activation(new), parse_spec(f"{new} -> fc")


def test_an_unknown_activation_names_the_close_ones():
    with pytest.raises(ConfigError, match=r"Unknown activation 'rellu'.*Did you mean 'relu'"):
        make_activation("rellu")


def test_the_spec_grammar_stays_torch_free():
    code = "import sys, cnnlab.specs.network; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
