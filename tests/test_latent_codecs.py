"""Latent codecs (neurocodec.entropy.latent_codecs): one interface for the factorized prior, the
mean-scale hyperprior and a hyperprior with a context schedule; the model base class that walks
its entropy models; the 0.1.0 state-dict layout mapped at load time; the one R-D loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurocodec.entropy import latent_codecs
from neurocodec.entropy.latent_codecs import (
    ContextLatentCodec,
    FactorizedLatentCodec,
    LatentCodec,
)
from neurocodec.entropy.models import FactorizedPrior
from neurocodec.entropy.models.schedules import ContextSchedule
from neurocodec.errors import BitstreamError
from neurocodec.models.context import ContextPrior
from neurocodec.models.hyperprior import (
    HyperSynthesis,
    MeanScaleHyperprior,
    hyper_analysis,
    mean_scale_hyperprior,
)
from neurocodec.models.losses import rd_loss
from neurocodec.models.mlic import MLICv2
from neurocodec.models.walloc import WaLLoCAudio, WaLLoCImage

pytestmark = pytest.mark.usefixtures("one_thread")

M, N = 8, 4


def context_codec(schedule: ContextSchedule) -> ContextLatentCodec:
    """A hyperprior + context-schedule codec from the generic ContextPrior: a family that reuses the
    latent codec writes only its networks."""
    return ContextLatentCodec(
        hyper_analysis(M, N),
        HyperSynthesis(N, M, num_scales=64),
        ContextPrior(schedule, 2 * M, 64, context_channels=8, hidden_channels=16),
        hyper_channels=N,
    )


CODECS = {  # name: (the latent codec, the sides of its latent)
    "factorized": (lambda: FactorizedLatentCodec(M), (8, 12)),
    "hyperprior": (lambda: mean_scale_hyperprior(M, N), (8, 12)),
    "hyperprior-1d": (lambda: mean_scale_hyperprior(M, N, dims=1), (24,)),
    "single_step": (lambda: context_codec(ContextSchedule.single_step(M)), (8, 12)),
    "channel_slices": (lambda: context_codec(ContextSchedule.channel_slices([3, 5])), (8, 12)),
    "checkerboard": (lambda: context_codec(ContextSchedule.checkerboard(M)), (8, 12)),
    "sliced_checkerboard": (lambda: context_codec(ContextSchedule.sliced_checkerboard([4, 4])), (8, 12)),
}


@pytest.fixture(scope="module", params=sorted(CODECS))
def codec(request) -> LatentCodec:
    torch.manual_seed(0)
    build, sides = CODECS[request.param]
    c = build().eval()
    c.update_tables()
    c.test_sides = sides
    return c


def latent(codec: LatentCodec, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 4 * torch.randn(1, M, *codec.test_sides, generator=g)


def test_sections_are_a_dict_named_as_declared_and_decode_to_the_coded_latent(codec):
    y = latent(codec)
    with torch.no_grad():
        sections = codec.compress(y)
        assert isinstance(sections, dict) and tuple(sorted(sections)) == tuple(sorted(codec.section_names))
        assert all(isinstance(s, bytes) for s in sections.values())
        y_hat = codec.decompress(sections, y.shape)
        assert torch.equal(y_hat, codec.coded_latent(y))
        assert (y_hat - y).abs().max() <= 0.5 + 1e-6  # rounded around its means
        _, likelihoods = codec(y, mode="ste")
    assert likelihoods.keys() == set(codec.section_names)


def test_forward_is_coding_with_straight_through_rounding(codec):
    """The eval-mode training pass sees the decoder's y_hat and the same side latents as coding."""
    y = latent(codec, seed=2)
    with torch.no_grad():
        y_hat, _ = codec(y, mode="ste")
        side = codec.side_latents(y)
        assert torch.equal(codec(y, side, "ste")[0], y_hat)
        assert codec.compress(y, side) == codec.compress(y)
    assert torch.allclose(y_hat.double(), codec.coded_latent(y).double(), atol=1e-5)


def test_missing_sections_are_bitstream_errors(codec):
    with pytest.raises(BitstreamError, match="this test file lacks its y section"):
        codec.check_sections({"z": b""}, "this test file")
    codec.check_sections(dict.fromkeys(codec.section_names, b""))


def test_aux_loss_and_update_tables_walk_every_entropy_model():
    torch.manual_seed(0)
    model = WaLLoCImage(latent_dim=M, decoder_width=16, decoder_blocks=0, hyper_channels=N)
    priors = [m for m in model.modules() if isinstance(m, FactorizedPrior)]
    assert len(priors) == 1
    assert torch.equal(model.aux_loss(), priors[0].aux_loss())
    model.update_tables()
    assert (
        model.latent_codec.entropy_bottleneck.has_tables
        and model.latent_codec.gaussian_conditional.has_tables
    )
    assert float(latent_codecs.aux_loss(nn.Linear(1, 1))) == 0.0  # nothing to fit


OLD_PREFIXES = {  # model: (0.1.0's prefix, today's), the keys of 0.1.0's weight files
    "hyperprior": [("h_a.", "latent_codec.h_a."), ("h_s.", "latent_codec.h_s."),
                   ("entropy_bottleneck.", "latent_codec.entropy_bottleneck."),
                   ("gaussian.", "latent_codec.gaussian_conditional.")],
    "mlic": [("h_a.", "latent_codec.h_a."), ("h_s.", "latent_codec.h_s."),
             ("entropy_bottleneck.", "latent_codec.entropy_bottleneck."),
             ("gaussian.", "latent_codec.gaussian_conditional."),
             ("prior.", "latent_codec.context_model."), ("lrp.", "latent_codec.residual_prediction.")],
    "walloc-hyperprior": [("hyperprior.gaussian.", "latent_codec.gaussian_conditional."),
                          ("hyperprior.", "latent_codec.")],
    "walloc-factorized": [("entropy_bottleneck.", "latent_codec.entropy_bottleneck.")],
}  # fmt: skip
MODELS = {
    "hyperprior": lambda: MeanScaleHyperprior(N=8, M=12),
    "mlic": lambda: MLICv2("tiny", N=16, M=24, num_slices=3),
    "walloc-hyperprior": lambda: WaLLoCAudio(levels=3, latent_dim=8, decoder_width=16, hyper_channels=4),
    "walloc-factorized": lambda: WaLLoCImage(latent_dim=8, decoder_width=16),
}


def _old_layout(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    old = {}
    for key, value in state.items():
        for before, now in OLD_PREFIXES[name]:
            if key.startswith(now):
                key = before + key[len(now) :]
                break
        old[key] = value
    return old


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_dicts_of_the_0_1_0_layout_load(name):
    """Weights written before the latent codecs (the shipped files) load into the new layout,
    also nested (a codec's ``model.``, a checkpoint), and give the same tensors."""
    torch.manual_seed(0)
    model = MODELS[name]()
    model.update_tables()
    state = model.state_dict()
    old = _old_layout(name, state)
    assert not any(k.startswith("latent_codec.") for k in old)
    for before, _ in OLD_PREFIXES[name]:
        assert any(k.startswith(before) for k in old), before
    torch.manual_seed(1)
    fresh = MODELS[name]()
    fresh.load_state_dict(old)  # strict
    holder = nn.Module()
    holder.model = MODELS[name]()
    holder.load_state_dict({f"model.{k}": v for k, v in old.items()})
    for loaded in (fresh.state_dict(), holder.model.state_dict()):
        assert loaded.keys() == state.keys()
        for key, value in state.items():
            assert torch.equal(loaded[key], value), key
    fresh.load_state_dict(state)  # today's layout loads as it is


def test_rd_loss_crops_the_padding_and_counts_the_input_positions():
    x = torch.rand(1, 3, 10, 14)
    x_hat = torch.zeros(1, 3, 16, 16)
    x_hat[..., :10, :14] = x + 0.1
    likelihoods = {"y": torch.full((1, 4, 2, 2), 0.5), "z": torch.full((1, 2, 1, 1), 0.25)}
    loss, parts = rd_loss({"x_hat": x_hat, "likelihoods": likelihoods}, x, 0.01)
    bits = 16 * 1 + 2 * 2
    assert torch.allclose(parts["bpp"], torch.tensor(bits / 140))
    assert torch.allclose(parts["mse"], torch.tensor(0.01))
    assert torch.allclose(loss, 0.01 * 255**2 * parts["mse"] + parts["bpp"])
