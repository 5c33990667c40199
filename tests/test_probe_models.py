"""The probe heads: DIViTA's exact structure and size, masking, the registry."""

import pytest
import torch

from probe.models import PROBES, DIViTA, build_probe


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_divita_parameter_count_by_hand():
    d, h, labels = 768, 128, 10
    bn = 2 * d  # gamma, beta (running statistics are buffers)
    embed = d * h + h  # Linear(768, 128)
    attention = 4 * h * h  # W_q, W_k, W_v, W_o without bias
    norms = 2 * 2 * h  # two LayerNorms
    ff = (h * 6 * h + 6 * h) + (6 * h * h + h)  # Linear(128, 768), Linear(768, 128)
    cls = h * labels + labels
    assert bn + embed + attention + norms + ff + cls == 364_810
    assert n_params(build_probe("divita", d, labels)) == 364_810


def test_divita_structure_follows_the_reference():
    model = DIViTA(768, 10)
    attention = model.block.attention
    for proj in (attention.W_q, attention.W_k, attention.W_v, attention.W_o):
        assert proj.bias is None and proj.weight.shape == (128, 128)
    assert attention.heads == 4
    assert model.block.dropout.p == 0.25
    assert model.block.ff[0].out_features == 6 * 128


@pytest.mark.parametrize("name", list(PROBES))
def test_padding_is_invisible_when_masked(name):
    # In eval mode a window of 5 real clips padded to 8 scores as the 5 clips alone.
    torch.manual_seed(0)
    model = build_probe(name, 16, 3).eval()
    x = torch.randn(2, 5, 16)
    padded = torch.cat([x, torch.zeros(2, 3, 16)], dim=1)
    mask = torch.arange(8)[None, :] < 5
    with torch.no_grad():
        alone = model(x, None)
        masked = model(padded, mask.expand(2, 8))
        unmasked = model(padded, None)
    assert masked.shape == (2, 3)
    torch.testing.assert_close(masked, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked, alone, atol=1e-4)  # the reference's unmasked padding


@pytest.mark.parametrize("name", list(PROBES))
def test_every_probe_trains_a_step(name):
    torch.manual_seed(0)
    model = build_probe(name, 16, 3)
    x, mask = torch.randn(4, 6, 16), torch.ones(4, 6, dtype=torch.bool)
    mask[0, 3:] = False
    loss = model(x, mask).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_probe_names_the_choices():
    with pytest.raises(ValueError, match="divita"):
        build_probe("transformer", 16, 3)
