"""LeNet-5 as published in 1998: parameter budget, C3 connection table, RBF output, eq. (9)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from striate import models
from striate.models.lenet1998 import C3_TABLE, LeNet5Paper, rbf_prototypes

# Table I of the paper, written out again independently of the module: C3 map -> S2 maps it reads.
PAPER_TABLE_I = {
    0: {0, 1, 2}, 1: {1, 2, 3}, 2: {2, 3, 4}, 3: {3, 4, 5}, 4: {4, 5, 0}, 5: {5, 0, 1},
    6: {0, 1, 2, 3}, 7: {1, 2, 3, 4}, 8: {2, 3, 4, 5}, 9: {3, 4, 5, 0}, 10: {4, 5, 0, 1}, 11: {5, 0, 1, 2},
    12: {0, 1, 3, 4}, 13: {1, 2, 4, 5}, 14: {0, 2, 3, 5}, 15: {0, 1, 2, 3, 4, 5},
}


@pytest.fixture
def model() -> LeNet5Paper:
    torch.manual_seed(0)
    return models.create("lenet5-1998", num_classes=10, in_channels=1)


def test_exactly_60000_trainable_parameters(model):
    assert models.count_parameters(model) == 60_000


def test_per_layer_parameter_counts_match_the_paper(model):
    per_layer = {name: sum(p.numel() for p in module.parameters())
                 for name, module in [*model.features.named_children(), ("f6", model.f6), ("rbf", model.rbf)]}
    assert {k: v for k, v in per_layer.items() if v} == {
        "c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}
    assert per_layer["rbf"] == 0


def test_connection_table_is_table_one(model):
    mask = model.features.c3.connection_mask()
    assert mask.shape == (16, 6)
    assert {j: set(torch.nonzero(mask[j]).flatten().tolist()) for j in range(16)} == PAPER_TABLE_I
    assert {j: set(t) for j, t in enumerate(C3_TABLE)} == PAPER_TABLE_I


def test_unconnected_c3_weights_are_zero_and_get_zero_gradient(model):
    c3 = model.features.c3
    mask = c3.connection_mask()[:, :, None, None].expand(16, 6, 5, 5)
    dense = c3.dense_weight()
    assert torch.all(dense[~mask] == 0) and torch.all(dense[mask] != 0)
    model(torch.randn(8, 1, 32, 32)).sum().backward()
    # The gradient seen in the usual out x in x k x k layout: exactly zero off the table, non-zero on it.
    dense_grad = torch.zeros(16, 6, 5, 5).index_put((c3.out_index, c3.in_index), c3.weight.grad)
    assert torch.all(dense_grad[~mask] == 0) and torch.count_nonzero(dense_grad[mask]) > 0.9 * mask.sum()
    assert c3.weight.shape == (60, 5, 5)  # the 60 connections of Table I, nothing more


def test_each_c3_map_depends_only_on_its_s2_maps(model):
    c3 = model.features.c3
    s2 = torch.randn(1, 6, 14, 14, requires_grad=True)
    out = c3(s2)
    for j in range(16):
        (grad,) = torch.autograd.grad(out[0, j].sum(), s2, retain_graph=True)
        touched = {i for i in range(6) if grad[0, i].abs().sum() > 0}
        assert touched == PAPER_TABLE_I[j], j


def test_subsampling_is_sum_times_coefficient_plus_bias(model):
    s2 = model.features.s2
    x = torch.randn(2, 6, 4, 4)
    expected = x.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2)) * s2.weight.view(1, 6, 1, 1) + s2.bias.view(1, 6, 1, 1)
    torch.testing.assert_close(s2(x), expected)


def test_squashing_function_is_the_papers(model):
    a = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(model.features.f1(a), 1.7159 * torch.tanh(2 * a / 3))
    assert model.features.f1(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=1e-4)  # f(1) = 1 by design


def test_rbf_prototypes_are_fixed_plus_minus_one_bitmaps(model):
    protos = model.rbf.prototypes
    assert protos.shape == (10, 84) and set(protos.unique().tolist()) == {-1.0, 1.0}
    assert "rbf.prototypes" in model.state_dict()  # saved with the weights, so a checkpoint is self-contained
    assert all(p is not protos for p in model.parameters()) and not protos.requires_grad
    # Distinct codes, at least 7 of 84 pixels apart (3 vs 8, the closest pair of our glyphs).
    hamming = (protos[:, None, :] != protos[None, :, :]).sum(-1) + 84 * torch.eye(10, dtype=torch.long)
    assert hamming.min().item() >= 7
    # Rendered as 12 rows of 7: the "1" glyph has its stem in column 3 of every middle row.
    one = protos[1].view(12, 7)
    assert torch.all(one[3:11, 3] == 1) and torch.all(one[3:11, :3] == -1)


def test_prototypes_for_other_class_counts_are_deterministic():
    many = rbf_prototypes(30)
    assert torch.equal(many, rbf_prototypes(30)) and torch.equal(many[:10], rbf_prototypes(10))
    assert torch.equal(rbf_prototypes(4), many[:4])
    assert len({tuple(row.tolist()) for row in many}) == 30
    model = models.create("lenet5-1998", num_classes=30)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 30)
    assert models.count_parameters(model) == 60_000  # the output layer has nothing to train


def test_output_is_minus_squared_distance(model):
    x = torch.randn(3, 1, 32, 32)
    f6 = model.f6(model.forward_features(x))
    expected = -torch.cdist(f6, model.rbf.prototypes).pow(2)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    # A F6 output equal to a class's code has penalty 0 for that class: it is the prediction.
    assert model.rbf(model.rbf.prototypes[7:8]).argmax().item() == 7


@pytest.mark.parametrize("j", [0.5, 10.0])
def test_paper_loss_is_equation_nine(model, j):
    output = -torch.rand(5, 10) * 20  # minus RBF penalties
    target = torch.tensor([0, 3, 9, 3, 1])
    penalties = -output
    expected = torch.stack([penalties[p, target[p]] + torch.log(math.exp(-j) + torch.exp(-penalties[p]).sum())
                            for p in range(5)]).mean()
    torch.testing.assert_close(model.paper_loss(output, target, j=j), expected)


def test_paper_loss_trains_the_network():
    torch.manual_seed(0)
    model = models.create("lenet5-1998")
    x, y = torch.randn(10, 1, 32, 32), torch.arange(10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(3):
        loss = model.paper_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # Cross-entropy on the logits works too, ranking classes as the penalties do.
    assert F.cross_entropy(model(x), y).isfinite()


def test_initialisation_is_uniform_within_2_4_over_fan_in(model):
    assert model.features.c1.weight.abs().max() <= 2.4 / 25
    assert model.features.c5.weight.abs().max() <= 2.4 / 400
    assert model.f6[0].weight.abs().max() <= 2.4 / 120
    c3 = model.features.c3
    fan_in = torch.tensor([25.0 * len(C3_TABLE[j]) for j in c3.out_index.tolist()])
    assert torch.all(c3.weight.abs().amax((1, 2)) <= 2.4 / fan_in)


def test_input_sizes_and_channels():
    model = models.create("lenet5-1998", in_channels=3).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 31, 31))
    small = models.create("lenet5-1998", small_input=True).eval()
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert models.count_parameters(small) == 60_000


def test_reset_classifier_swaps_the_codes(model):
    models.reset_classifier(model, 26)
    assert model.rbf.prototypes.shape == (26, 84)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 26)
    assert models.count_parameters(model) == 60_000
