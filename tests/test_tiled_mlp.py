"""The tiled per-position MLP equals plain autograd: outputs and every gradient."""

import itertools

import pytest
import torch

from neurocodec.models.tiled_mlp import tiled_mlp


def plain(inputs, layers):
    (first, b1), *rest = layers
    h = sum(w @ x for w, x in zip(first, inputs, strict=True)) + b1[:, None]
    for w, b in rest:
        h = w @ torch.relu(h) + b[:, None]
    return h


@pytest.mark.parametrize("sizes", [([7], [32, 3]), ([12, 9], [8, 8, 2]), ([5], [4])])
@pytest.mark.parametrize("tile", [64, 1000])
def test_tiled_mlp_equals_plain_autograd(sizes, tile):
    torch.manual_seed(0)
    channels, widths = sizes
    n = 777  # not a multiple of the tile
    inputs = [torch.randn(c, n, dtype=torch.float64, requires_grad=True) for c in channels]
    first = [torch.randn(widths[0], c, dtype=torch.float64, requires_grad=True) for c in channels]
    layers = [(first, torch.randn(widths[0], dtype=torch.float64, requires_grad=True))]
    for a, b in itertools.pairwise(widths):
        layers.append(
            (
                torch.randn(b, a, dtype=torch.float64, requires_grad=True),
                torch.randn(b, dtype=torch.float64, requires_grad=True),
            )
        )
    params = [*inputs, *first, layers[0][1], *[t for w, b in layers[1:] for t in (w, b)]]
    weight = torch.randn(widths[-1], n, dtype=torch.float64)

    expected = plain(inputs, layers)
    want = torch.autograd.grad((expected * weight).sum(), params)
    got = tiled_mlp(inputs, layers, tile)
    grads = torch.autograd.grad((got * weight).sum(), params)
    torch.testing.assert_close(got, expected)
    for g, w in zip(grads, want, strict=True):
        torch.testing.assert_close(g, w)
