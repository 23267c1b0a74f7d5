"""VQGAN for extreme image compression: one codebook index per 16x16 pixels.

After Esser, Rombach and Ommer, "Taming Transformers for High-Resolution Image Synthesis"
(CVPR 2021), as used by Mao et al., "Extreme Image Compression using Fine-tuned VQGANs"
(DCC 2024), at a width these machines train:

- ``g_a``: a convolutional encoder (``conv_in``, then per level ``num_res`` residual blocks of
  GroupNorm-SiLU-conv3x3 and a stride-2 convolution, a middle of residual blocks around one
  self-attention block, GroupNorm-SiLU-conv3x3 out) with ``width * ch_mult`` channels per level,
  ``len(ch_mult) - 1`` halvings (four: f16), then a 1x1 "quant conv" to ``embed_dim`` and unit
  length;
- the latent codec: :class:`~neurocodec.entropy.latent_codecs.VectorQuantizedLatentCodec`, a
  VQGAN-LC codebook of ``codebook_size`` codewords (frozen vectors taken from the encoder's
  features, a learned projection) and a prior over the indices: their marginal (each codeword's
  share of the picks in training), or with
  ``prior_layers > 0`` the masked integer transformer of :mod:`neurocodec.models.index_prior`
  (``prior_dim`` wide, ``prior_heads`` heads, ``prior_window``-square windows), coded in four
  passes; train it on a trained VQGAN with ``--init RUN --arch ...,prior_layers=2 --train-only
  latent_codec.context``;
- ``g_s``: a 1x1 "post-quant conv" and the mirrored decoder (nearest 2x upsampling + conv3x3);
- an optional PatchGAN discriminator (Isola et al. 2017, three stride-2 layers), trained by the
  harness's second optimizer on the hinge loss (:meth:`VQGAN.discriminator_loss`).

Training loss (with the harness's distortion, MSE or MS-SSIM): ``l1_weight * L1`` + the VQ terms
(codebook, ``beta`` commitment) + ``disc_weight * `` the generator's hinge term once
``disc_start`` training steps have passed (taming's schedule; a fixed weight instead of taming's
adaptive one, whose gradient-norm ratio needs a second backward pass through the decoder). The
rate is the index prior's cross-entropy: about ``log2(codebook_size) / 256`` bits per pixel.

Variable rate from one model (Mao et al.): :meth:`VQGAN.inherit` gives a model of a smaller
``codebook_size`` the k-means reduction of a trained model's codebook, so ``neurocodec train vqgan
--init RUN --arch codebook_size=S --train-only latent_codec`` fine-tunes the reduced codebook.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy.latent_codecs import VectorQuantizedLatentCodec
from neurocodec.entropy.latent_codecs.vector import Codebook
from neurocodec.models.base import CompressionModel
from neurocodec.models.index_prior import IndexTransformer

__all__ = ["VQGAN", "PatchDiscriminator"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels, eps=1e-6)


def _zero(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        _zero(self.body[-1])  # the block starts as its skip: deep stacks train from the first steps

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the positions of a feature map, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        _zero(self.out)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(2, 3).unbind(1)
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(y.transpose(1, 2).reshape(n, c, h, w))


def _middle(channels: int, attention: bool) -> list[nn.Module]:
    return [ResidualBlock(channels, channels)] + (
        [AttentionBlock(channels), ResidualBlock(channels, channels)] if attention else []
    )


class Encoder(nn.Sequential):
    def __init__(self, width: int, ch_mult: Sequence[int], num_res: int, out_channels: int, attention: bool):
        widths = [width * m for m in ch_mult]
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        c = widths[0]
        for level, w in enumerate(widths):
            for _ in range(num_res):
                layers.append(ResidualBlock(c, w))
                c = w
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        layers += _middle(c, attention) + [_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1)]
        super().__init__(*layers)


class Decoder(nn.Sequential):
    def __init__(self, width: int, ch_mult: Sequence[int], num_res: int, in_channels: int, attention: bool):
        widths = [width * m for m in ch_mult][::-1]
        c = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1), *_middle(c, attention)]
        for level, w in enumerate(widths):
            for _ in range(num_res):
                layers.append(ResidualBlock(c, w))
                c = w
            if level < len(widths) - 1:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        layers += [_norm(c), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1)]
        super().__init__(*layers)


class PatchDiscriminator(nn.Sequential):
    """PatchGAN: a real/fake logit per overlapping patch (70x70 receptive field at 3 layers)."""

    def __init__(self, width: int = 64, layers: int = 3):
        stack: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            stack += [
                nn.Conv2d(c, out, 4, stride=stride, padding=1, bias=False),
                _norm(out),
                nn.LeakyReLU(0.2),
            ]
            c = out
        stack.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        super().__init__(*stack)


class UnitVectors(nn.Module):
    """Each position's channel vector scaled to unit length (the codewords are unit vectors)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1)


class VQGAN(CompressionModel):
    """The VQGAN (module docstring). Architecture keywords are those of ``neurocodec train --arch``."""

    latent_stride = 16

    def __init__(
        self,
        width: int = 32,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res: int = 1,
        embed_dim: int = 32,
        codebook_size: int = 4096,
        attention: bool = True,
        beta: float = 0.25,
        l1_weight: float = 1.0,
        disc_weight: float = 0.1,
        disc_start: int = 2000,
        disc_width: int = 32,
        prior_layers: int = 0,
        prior_dim: int = 64,
        prior_heads: int = 4,
        prior_window: int = 8,
    ):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        if len(ch_mult) != 5:
            raise ValueError(
                f"ch_mult needs 5 levels (four halvings: one index per 16x16 pixels), not {ch_mult}"
            )
        self.M = self.embed_dim = int(embed_dim)
        self.downsampling = 2 ** (len(ch_mult) - 1)
        z = width * ch_mult[-1]
        self.g_a = nn.Sequential(
            Encoder(width, ch_mult, num_res, z, attention), nn.Conv2d(z, embed_dim, 1), UnitVectors()
        )
        self.g_s = nn.Sequential(nn.Conv2d(embed_dim, z, 1), Decoder(width, ch_mult, num_res, z, attention))
        context = (
            IndexTransformer(codebook_size, prior_dim, prior_heads, prior_layers, prior_window)
            if prior_layers
            else None
        )
        self.latent_codec = VectorQuantizedLatentCodec(codebook_size, embed_dim, context)
        self.beta, self.l1_weight = float(beta), float(l1_weight)
        self.disc_weight, self.disc_start = float(disc_weight), int(disc_start)
        self.discriminator = PatchDiscriminator(disc_width) if disc_weight > 0 else None
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))  # training forwards

    def forward(self, x: Tensor) -> dict:
        y = self.g_a(x)
        lc = self.latent_codec
        chosen, indices = lc.quantize(y)
        x_hat = self.g_s(y + (chosen - y).detach())
        terms = lc.losses(y, chosen, self.beta)
        if self.l1_weight:
            terms["l1"] = self.l1_weight * (x_hat - x).abs().mean()
        if self.training:
            self.steps_seen += 1
            if self.discriminator is not None and int(self.steps_seen) > self.disc_start:
                terms["adversarial"] = -self.disc_weight * self.discriminator(x_hat).mean()
        return {"x_hat": x_hat, "likelihoods": {"indices": lc.likelihoods(indices)}, "loss_terms": terms}

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        if self.discriminator is None:  # a codec's model: a training run's discriminator is not needed
            for key in [k for k in state_dict if k.startswith(prefix + "discriminator.")]:
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args)

    def discriminator_loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """The discriminator's hinge loss on real ``x`` and reconstructed ``x_hat`` (detached);
        zero, with no gradient, before ``disc_start``."""
        if self.discriminator is None or int(self.steps_seen) <= self.disc_start:
            return torch.zeros((), device=x.device)
        real, fake = self.discriminator(x), self.discriminator(x_hat.detach())
        return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())

    def inherit(self, source: MutableMapping[str, Tensor]) -> None:
        """Make the weights of a model with a larger codebook fit this one (``--init``): its
        codewords become their k-means reduction to this size, seen through an identity
        projection, with uniform usage and the index prior reset."""
        key = "latent_codec.codebook."
        frozen = source.get(key + "frozen")
        size = self.latent_codec.codebook.size
        if frozen is None or len(frozen) == size:
            return
        other = Codebook(len(frozen), frozen.shape[1])
        other.load_state_dict({k[len(key) :]: v for k, v in source.items() if k.startswith(key)})
        source[key + "frozen"] = other.reduced(size).to(frozen)
        source[key + "filled"] = torch.tensor(size)
        source[key + "usage"] = torch.full((size,), 1.0 / size)
        source[key + "projection.weight"] = torch.eye(frozen.shape[1])
        source[key + "projection.bias"] = torch.zeros(frozen.shape[1])
        for k in [k for k in source if k.startswith("latent_codec.index_prior.")]:
            del source[k]
