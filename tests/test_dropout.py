"""cnnlab.ops.dropout: the slides' dropout with a cheaper CPU mask, and its module and swap."""

import json
import math

import pytest
import torch
from torch import nn

from cnnlab.layers import Dropout, use_fast_dropout
from cnnlab.ops.dropout import dropout, keep_mask, keep_threshold, random_integers


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.25, (8, 64)),
        (0.5, (8, 128)),
        (0.0, (8, 0)),
        (0.3, (16, 19661)),  # 0.3 * 65536 = 19660.8
        (0.1, (16, 6554)),  # 6553.6
        (0.999995, (16, 65535)),  # would round to 65536: keep one value in 2**16
    ],
)
def test_threshold_rounds_p_to_the_stated_grid(p, expected):
    assert keep_threshold(p) == expected


def test_every_byte_of_a_draw_is_uniform():
    torch.manual_seed(0)
    values = random_integers(8 * 256 * 200, 8).view(-1, 8).long()  # byte k of each 64-bit draw
    for position in range(8):
        counts = torch.bincount(values[:, position], minlength=256).double()
        chi2 = float(((counts - 200) ** 2 / 200).sum())
        assert chi2 < 255 + 6 * math.sqrt(2 * 255), (position, chi2)  # df 255: mean 255, sd 22.6


def test_sixteen_bit_values_cover_their_range_uniformly():
    torch.manual_seed(1)
    values = random_integers(1 << 18, 16).long()
    assert values.min() >= -(2**15) and values.max() < 2**15
    counts = torch.bincount((values + 2**15) // 256, minlength=256).double()  # 256 bins of 256
    expected = (1 << 18) / 256
    assert float(((counts - expected) ** 2 / expected).sum()) < 255 + 6 * math.sqrt(2 * 255)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.3])
def test_drop_rate_and_scale_match_the_definition(p):
    torch.manual_seed(2)
    n = 400_000
    out = dropout(torch.ones(n), p)
    bits, threshold = keep_threshold(p)
    keep = 1 - threshold / (1 << bits)
    dropped = float((out == 0).double().mean())
    assert abs(dropped - (1 - keep)) < 5 * math.sqrt(keep * (1 - keep) / n)  # binomial, 5 sigma
    assert torch.equal(out[out != 0], torch.full_like(out[out != 0], 1 / keep))
    assert abs(float(out.double().mean()) - 1.0) < 5 * math.sqrt((1 - keep) / keep / n)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(3)
    x = (torch.rand(64, 50) + 0.5).requires_grad_(True)  # no zeros: the output shows the mask
    upstream = torch.randn(64, 50)
    out = dropout(x, 0.25)
    out.backward(upstream)
    kept = out.detach() != 0
    assert torch.allclose(out.detach(), torch.where(kept, x.detach() / 0.75, 0.0))
    assert torch.allclose(x.grad, torch.where(kept, upstream / 0.75, 0.0))


def test_layout_follows_the_input_and_the_gradient_comes_back_in_it():
    torch.manual_seed(4)
    x = torch.randn(8, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = dropout(x, 0.5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.flatten(1).sum().backward()  # flatten's gradient arrives NCHW-contiguous
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    assert not bool((x.detach() == 0).any())  # so a zero in the output is a dropped element
    assert torch.equal(x.grad != 0, out.detach() != 0)


def test_bf16_channels_last_values_are_the_rounded_float_products():
    """The mask is applied in x's dtype (a 0/1 tensor, then the scale): each output and input
    gradient is the float product rounded once to bfloat16, as with a bool mask, for p with an
    exact scale and one without, and an NCHW upstream gradient against a channels_last input."""
    for p in (0.25, 0.3):
        x = torch.randn(16, 8, 5, 5).to(torch.bfloat16)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        upstream = torch.randn(16, 8 * 5 * 5).to(torch.bfloat16)
        torch.manual_seed(11)
        out = dropout(x, p)
        out.flatten(1).backward(upstream)
        torch.manual_seed(11)
        keep, probability = keep_mask(x.detach(), p)  # the same draw, as a bool tensor
        scale = 1.0 / probability
        expected = (x.detach().float() * keep * scale).to(torch.bfloat16)
        assert torch.equal(out.detach(), expected)
        expected_grad = (upstream.view(16, 8, 5, 5).float() * keep * scale).to(torch.bfloat16)
        assert x.grad.dtype == torch.bfloat16
        assert x.grad.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x.grad, expected_grad)


def test_bf16_keeps_its_dtype_and_non_dense_inputs_work():
    torch.manual_seed(5)
    x = torch.randn(32, 40, dtype=torch.bfloat16)
    assert dropout(x, 0.5).dtype == torch.bfloat16
    strided = torch.randn(40, 32).t()  # not contiguous in any format
    out = dropout(strided, 0.5)
    assert out.shape == strided.shape
    assert torch.equal(out[out != 0], (strided * 2)[out != 0])


def test_seeded_draws_repeat_and_the_generator_state_resumes_them():
    x = torch.randn(1000)
    torch.manual_seed(6)
    first = dropout(x, 0.3)
    state = torch.get_rng_state()
    second = dropout(x, 0.3)
    torch.manual_seed(6)
    assert torch.equal(dropout(x, 0.3), first)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x, 0.3), second)
    assert not torch.equal(first, second)


def test_evaluation_zero_and_one():
    x = torch.randn(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout(x, 1.5)


def test_swap_replaces_plain_dropout_only_and_keeps_weights_and_eval_outputs():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Linear(8, 8),
        nn.Dropout(0.5),
        nn.Sequential(nn.AlphaDropout(0.2), nn.Linear(8, 4), nn.Dropout(0.25, inplace=True)),
    )
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 8)
    reference = model(x)
    assert use_fast_dropout(model) == 2
    assert type(model[1]) is Dropout and model[1].p == 0.5 and not model[1].training
    assert type(model[2][0]) is nn.AlphaDropout
    assert type(model[2][2]) is Dropout and model[2][2].inplace
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert torch.equal(model(x), reference)
    assert use_fast_dropout(model) == 0  # already swapped


def test_module_in_training_drops_like_the_functional_form():
    layer = Dropout(0.25)
    x = torch.randn(4, 100)
    torch.manual_seed(8)
    out = layer(x)
    torch.manual_seed(8)
    assert torch.equal(out, dropout(x, 0.25))
    inplace = Dropout(0.25, inplace=True).train()  # PyTorch's in-place dropout, same semantics
    y = torch.ones(1000)
    inplace(y)
    assert set(torch.unique(y).tolist()) == {0.0, torch.tensor(1 / 0.75).item()}


def test_training_model_gets_cnnlab_dropout():
    from cnnlab.runtime.fastpath import choose_fast_path, fast_model

    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 2))
    fast = choose_fast_path(torch.device("cpu"), "fp32", channels_last=False)
    assert type(fast_model(model, fast)[1]) is Dropout


def test_the_start_line_says_which_dropout_trains():
    from types import SimpleNamespace

    from cnnlab.training.session import describe_dropout

    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Dropout(0.0), nn.Linear(4, 2))
    cpu = torch.device("cpu")
    assert describe_dropout(SimpleNamespace(model=model, device=cpu)) == [
        "dropout: PyTorch's in 1 layer(s)"
    ]
    use_fast_dropout(model)
    assert describe_dropout(SimpleNamespace(model=model, device=cpu)) == [
        "dropout: cnnlab's cheaper CPU mask in 1 of 1 layer(s) (--no-fast-dropout: PyTorch's)"
    ]
    assert describe_dropout(SimpleNamespace(model=nn.Linear(2, 2), device=cpu)) == []


def test_no_fast_dropout_trains_with_pytorchs_and_is_recorded(tmp_path):
    from cnnlab.run.load import load_run
    from tests.test_cli import TINY, _train_in_this_process

    weights = {}
    for flag in ("--fast-dropout", "--no-fast-dropout"):
        run = tmp_path / flag
        _train_in_this_process(*TINY, "--epochs", "1", "--dropout", "0.5", flag, "--out", run)
        config = json.loads((run / "config.json").read_text())
        assert config["train"]["fast_dropout"] is (flag == "--fast-dropout")
        weights[flag] = load_run(run).model.state_dict()
    # the same seed, other masks: the weights differ (both streams are seeded: test_dropout above)
    assert any(not torch.equal(weights["--fast-dropout"][k], weights["--no-fast-dropout"][k])
               for k in weights["--fast-dropout"])  # fmt: skip
