"""``recombiner-image`` and ``recombiner-audio``: RECOMBINER (He et al., ICLR 2024), a Bayesian
implicit neural codec of images and of audio, sharing every step but the cutting into patches.

The image (padded to a multiple of the patch, 64 pixels) is cut into patches; each patch gets a
factorised Gaussian posterior over its parameters ``theta`` (:mod:`neurocodec.models.recombiner`),
fitted at encode time against the shipped prior for ``MSE + beta * KL/pixel`` (``beta`` from the
weights: quality = the KL budget the prior was trained for). The posterior is then transmitted by
relative-entropy coding (:mod:`neurocodec.entropy.relative_entropy`): each patch's parameters, in
a fixed order (:func:`~neurocodec.models.recombiner.fixed_permutation`), are split into blocks;
each block costs ``k`` bits, the index of one of ``2^k`` shared prior samples. The blocks are
coded in :data:`STAGES` stages (the same share of every patch's blocks each), and between stages
the parameters not yet coded are fine-tuned with the coded ones fixed (RECOMBINER's progressive
fine-tuning, coarsened from one fine-tuning per block to a few per image: CPU).

``recombiner-audio`` codes mono or stereo audio at the file's own sample rate (no resampling:
the network sees patches of samples, and the prior was learned at 44.1 kHz; another rate is coded
as well as its patches resemble those, and the file records it). Stereo is coded as two signals,
mid ``(L + R) / 2`` and side ``(L - R) / 2`` (:func:`~neurocodec.models.recombiner.to_signals`),
each cut into patches of 1024 samples (the end zero-padded), all fitted together under one
``beta``: the side signal of most music is small, so the shared rate-distortion trade-off spends
few bits on it (joint coding without a joint model), and a mono file codes one signal. The
decoder rebuilds L = M + S and R = M - S in float64 and rounds to the 16-bit grid (1/32768).

``effort``: posterior-fitting iterations (:data:`PRESETS`, ``effort=0`` is ``fast``); each
stage's fine-tuning is a tenth of it. During the first 60 % of the fit, ``beta`` follows the
training's KL-budget controller on this image (x / 1.5 every 10 iterations), so that the image's KL
per pixel, hence its rate, lands in the quality's budget band whatever the shipped ``beta``. Decoding regenerates the chosen samples and evaluates the
networks once: no fitting, no search.

Blocks: patch ``p`` declares ``n_p`` shares; the grouping is :func:`~neurocodec.entropy.
relative_entropy.group_blocks` of the weights' integer KL profile ``w = floor(1024 kl_profile) +
1`` (in the fixed order) with the budget ``ceil(sum(w) / n_p)``: the same integers on both sides,
at least ``n_p`` blocks (a few more: each ends a little under the budget) whose shares of the
mean training KL are about even. The
encoder picks ``n_p = ceil(KL_p / k)``, ``KL_p`` the patch's posterior KL in bits.

File sections (little-endian):

``patches``::

    offset  size  field
    0       1     version: 1
    1       1     k, bits of a block index (1..24)
    2       2     patch side (the weights' patch, checked; audio: samples)
    4       4     seed s of the shared sampler
    8       4     P, patches (must be rows * cols of the padded image, raster order; audio:
                  signals * ceil(samples / patch), signal by signal, in time order)
    12      2 P   n_p (uint16, 1..4096), shares of each patch

``indexes``: the block indexes, ``k`` bits each, most significant bit first, patch by patch and
block by block, zero-padded to a byte; its length is exactly ``ceil(k * blocks / 8)``.

Block ``j`` of patch ``p`` is coded under the block id ``p * 2^20 + j`` and seed ``s``; its
parameters are ``mu_p + sigma_p * n`` (float64) of the prior in the weights (float32 exactly
widened). The decoder evaluates the network in float64, clamps to [0, 1] and rounds to the
8-bit grid (audio: rounds to the 16-bit grid, clamped to [-1, 32767/32768]): the parameters are exact, float64 keeps the networks' rounding near 1e-13 (sin(30 x)
amplifies it) and the rounding to 1/255 removes it but for samples within that of a half step,
so the output is the same on 1 and 2 threads (tested) and, but for such ties, on any CPU.
"""

from __future__ import annotations

import functools
import math
import struct
import sys

import numpy as np
import torch
from tqdm import tqdm

from neurocodec.codecs.base import Codec, pad_to_multiple
from neurocodec.container import AudioGeometry, Header, ImageGeometry
from neurocodec.entropy import relative_entropy as rec
from neurocodec.errors import BitstreamError, ConfigError
from neurocodec.models.recombiner import (
    AUDIO_ARCH,
    CPU_ARCH,
    INIT_LOG_STD_OFFSET,
    BetaController,
    Posterior,
    Recombiner,
    elbo_loss,
    fixed_permutation,
    from_patches,
    from_segments,
    from_signals,
    posterior_optimizer,
    to_patches,
    to_segments,
    to_signals,
)
from neurocodec.registry import register_codec

__all__ = [
    "AUDIO_PRESETS",
    "PRESETS",
    "RecombinerAudioCodec",
    "RecombinerImageCodec",
    "RecombinerSpeechCodec",
]

# posterior-fitting iterations: at 150 the steering had not brought a q1 fit down to its budget
# (0.235 KL bits per pixel for 0.1, a 192x256 crop of kodim23), at 300 it had (0.075)
PRESETS = {"fast": 300, "medium": 1000, "slow": 3000}
# audio: an iteration over a 10-s stereo clip (862 patches) costs about 1.3 s on one thread
AUDIO_PRESETS = {"fast": 150, "medium": 500, "slow": 1500}
BLOCK_BITS = 10  # k: 2^10 prior samples a block (the paper: 16; see the report's costs)
STAGES = 4
INIT_NOISE = 1.0  # the fit starts from a prior sample (0: from the prior mean)
PROFILE_FULL = 0.5  # audio: bits of training KL from which a parameter starts as a full prior sample
STEER_SHARE, STEER_EVERY = 0.6, 10  # beta steered to the KL budget during 60 % of the fit
LR = 2e-2
MAX_SHARES = 4096
VERSION = 1
_HEAD = struct.Struct("<BBHII")
BLOCK_ID_BITS = 20


# --------------------------------------------------------------------------------------------
# Blocks


@functools.lru_cache(maxsize=64)
def _blocks(profile: bytes, shares: int) -> tuple[tuple[int, int], ...]:
    weights = np.frombuffer(profile, dtype=np.int64)
    budget = -(-int(weights.sum()) // shares)
    return tuple(rec.group_blocks(weights, budget))


class Layout:
    """The fixed order of a model's parameters and its integer KL profile (:func:`blocks`)."""

    def __init__(self, model: Recombiner) -> None:
        self.order = fixed_permutation(model.size)
        profile = model.kl_profile.detach().to(torch.float64).cpu().numpy()[self.order]
        self.weights = (np.floor(np.clip(profile, 0, 1e6) * 1024) + 1).astype(np.int64).tobytes()
        self.mean = model.prior_mean.detach().to(torch.float64).cpu().numpy()[self.order]
        self.std = model.prior_std().detach().to(torch.float64).cpu().numpy()[self.order]

    def blocks(self, shares: int) -> tuple[tuple[int, int], ...]:
        """[start, stop) of each block (positions in :attr:`order`) of a patch with ``shares``."""
        return _blocks(self.weights, shares)


def lambda_of(beta: float) -> float:
    """The codec convention's lambda (``bpp + lambda 255^2 MSE``) of the loss ``MSE + beta KL/pixel``."""
    return 1 / (beta * 255**2)


def block_id(patch: int, block: int) -> int:
    return (patch << BLOCK_ID_BITS) | block


# --------------------------------------------------------------------------------------------
# Sections


def pack_patches(bits: int, patch: int, seed: int, shares: list[int]) -> bytes:
    return _HEAD.pack(VERSION, bits, patch, seed, len(shares)) + np.asarray(shares, "<u2").tobytes()


def unpack_patches(data: bytes, patch: int, count: int) -> tuple[int, int, list[int]]:
    """(k, seed, shares) of a ``patches`` section for ``count`` patches of side ``patch``."""
    if len(data) < _HEAD.size:
        raise BitstreamError("the recombiner patches section is truncated")
    version, bits, side, seed, n = _HEAD.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(f"recombiner patches section version {version} is not supported")
    if not 1 <= bits <= 24 or side != patch or n != count:
        raise BitstreamError("the recombiner patches section does not match the image and weights")
    if len(data) != _HEAD.size + 2 * n:
        raise BitstreamError("the recombiner patches section has the wrong length")
    shares = np.frombuffer(data, "<u2", n, _HEAD.size).astype(int).tolist()
    if not all(1 <= s <= MAX_SHARES for s in shares):
        raise BitstreamError("the recombiner patches section is corrupt")
    return bits, seed, shares


def pack_indexes(indexes: list[int], bits: int) -> bytes:
    """``indexes`` as ``bits``-bit fields, most significant bit first, zero-padded to a byte."""
    values = np.asarray(indexes, dtype=np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((values[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_indexes(data: bytes, bits: int, count: int) -> np.ndarray:
    if len(data) != -(-bits * count // 8):
        raise BitstreamError(
            f"the recombiner indexes section holds {len(data)} bytes, not {-(-bits * count // 8)}"
        )
    flat = np.unpackbits(np.frombuffer(data, np.uint8))[: bits * count].reshape(count, bits).astype(np.int64)
    return flat @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# The codec


class _RecombinerCodec(Codec):
    """What both media share: fitting, block coding, regenerating the parameters. A medium gives
    its default architecture (:attr:`arch_defaults`), and cuts its input into patches in ``_encode``."""

    adaptive = True
    arch_defaults: dict = CPU_ARCH

    def __init__(self, quality: int = 0, weights_hash: bytes = bytes(4), **arch) -> None:
        super().__init__(quality, weights_hash)
        unknown = set(arch) - set(self.arch_defaults)
        if unknown:
            raise ConfigError(f"{self.name} has no architecture parameter {', '.join(sorted(unknown))}")
        self.model = Recombiner(**{**self.arch_defaults, **arch})
        if self.model.arch.dims != self.arch_defaults["dims"]:
            raise ConfigError(
                f"{self.name} codes {self.media}: its patches have {self.arch_defaults['dims']} dimensions"
            )
        self.lmbda = lambda_of(float(self.model.beta))
        self.progress = sys.stderr.isatty()
        self.seed = 0
        self.block_bits = BLOCK_BITS
        self.kl_budget: float | None = None  # bits per pixel the fit steers beta to (None: beta as shipped)
        self.kl_band = 0.0
        self.last_fit: dict = {}

    @classmethod
    def from_weights(cls, config, state: dict[str, torch.Tensor], device: torch.device) -> _RecombinerCodec:
        codec = cls(**config.arch)
        codec.model.load_state_dict(state)
        codec.lmbda = lambda_of(float(codec.model.beta))
        codec.kl_budget = config.model_card.get("kl_budget_bpp")
        codec.kl_band = config.model_card.get("kl_band_bpp", 0.0)
        return codec.to(device).eval()

    # ----------------------------------------------------------------------------------------
    # Encoding

    def _fit(
        self, patches: torch.Tensor, posterior: Posterior, steps: int, bar: tqdm, steer: bool = False
    ) -> tuple[float, float]:
        """``steps`` of Adam on the posterior's free parameters (cosine learning rate); (MSE, KL bpp).
        ``steer``: during the first :data:`STEER_SHARE` of the steps, every :data:`STEER_EVERY`,
        beta follows the training's controller (x / 1.5) to bring the image's mean KL per pixel
        into the weights' budget band; :attr:`beta` keeps where it ended."""
        control = BetaController(self.kl_budget or 0.0, self.kl_band, self.beta)
        steered = int(steps * STEER_SHARE) if steer and self.kl_budget else 0
        opt = posterior_optimizer(posterior, LR)
        mse = kl = math.nan
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = group["scale"] * LR * 0.5 * (1 + math.cos(math.pi * i / max(1, steps)))
            loss, mse_t, kl_t = elbo_loss(self.model, posterior, patches, control.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            mse, kl = mse_t.item(), kl_t.item()
            if i < steered and (i + 1) % STEER_EVERY == 0:
                control.update(kl)
            bar.update()
            bar.set_postfix(
                psnr=f"{-10 * math.log10(max(mse, 1e-10)):.2f}", kl_bpp=f"{kl:.3f}", refresh=False
            )
        self.beta = control.beta
        return mse, kl

    def _code_stage(
        self, posterior: Posterior, layout: Layout, plan: list, stage: int, indexes: list, chosen: np.ndarray
    ) -> None:
        """Code the blocks of stage ``stage`` of every patch: their indexes into ``indexes``, their
        samples into ``chosen`` (P, size; float64) and, fixed, into ``posterior``."""
        bits = self.block_bits
        mean = posterior.mean.detach().to(torch.float64).numpy()
        std = torch.exp(posterior.log_std.detach()).to(torch.float64).numpy()
        with torch.no_grad():
            for p, blocks in enumerate(plan):
                for j, (a, b) in enumerate(blocks):
                    if j * STAGES // len(blocks) != stage:
                        continue
                    where = layout.order[a:b]
                    choice = rec.encode_block(
                        mean[p, where],
                        std[p, where],
                        layout.mean[a:b],
                        layout.std[a:b],
                        self.seed,
                        block_id(p, j),
                        bits,
                    )
                    indexes[p][j] = choice.index
                    chosen[p, where] = choice.sample
                    posterior.values[p, where] = torch.from_numpy(choice.sample).float()
                    posterior.coded[p, where] = True

    def _posterior(self, count: int) -> Posterior:
        """The posteriors the fit starts from: a prior sample, with standard deviations
        ``exp(INIT_LOG_STD_OFFSET)`` times the prior's."""
        return Posterior(self.model, count, init_noise=INIT_NOISE)

    def _code(self, patches: torch.Tensor, effort: int) -> dict[str, bytes]:
        """The sections coding ``patches`` (P, C, *patch): fitted, then coded block by block."""
        iterations = effort or self.presets["fast"]
        finetune = max(1, iterations // 10)
        layout = Layout(self.model)
        with torch.inference_mode(False), torch.enable_grad():
            patches = patches.clone()
            torch.manual_seed(self.seed)
            posterior = self._posterior(len(patches))
            total = iterations + (STAGES - 1) * finetune
            bar = tqdm(
                total=total, disable=not self.progress, file=sys.stderr, unit="it", desc=f"{self.name} fit"
            )
            for p in self.model.parameters():
                p.requires_grad_(False)
            try:
                self.beta = float(self.model.beta)
                mse, kl_bpp = self._fit(patches, posterior, iterations, bar, steer=True)
                with torch.no_grad():
                    kl_bits = posterior.kl_bits(self.model).numpy()
                shares = [int(min(MAX_SHARES, max(1, math.ceil(k / self.block_bits)))) for k in kl_bits]
                plan = [layout.blocks(s) for s in shares]
                indexes = [[0] * len(blocks) for blocks in plan]
                chosen = np.zeros((len(patches), self.model.size))
                for stage in range(STAGES):
                    self._code_stage(posterior, layout, plan, stage, indexes, chosen)
                    if stage < STAGES - 1:
                        self._fit(patches, posterior, finetune, bar)
            finally:
                for p in self.model.parameters():
                    p.requires_grad_(True)
                bar.close()
        flat = [i for patch in indexes for i in patch]
        self.last_fit = {
            "psnr_fit": -10 * math.log10(max(mse, 1e-10)),
            "kl_bpp_fit": kl_bpp,
            "blocks": len(flat),
            "iterations": iterations,
            "finetune": finetune,
            "beta": self.beta,
            "parameters": chosen,  # what the decoder regenerates (tests)
        }
        return {
            "patches": pack_patches(self.block_bits, self.model.arch.patch, self.seed, shares),
            "indexes": pack_indexes(flat, self.block_bits),
        }

    # ----------------------------------------------------------------------------------------
    # Decoding

    def parameters_of(self, shares: list[int], indexes: np.ndarray, bits: int, seed: int) -> torch.Tensor:
        """The coded parameters (P, size), float64, of patches with ``shares`` and block ``indexes``
        (every block of the image regenerated in one vectorised pass)."""
        layout = Layout(self.model)
        ids, sizes = [], []
        for p, s in enumerate(shares):
            blocks = layout.blocks(s)
            ids += [block_id(p, j) for j in range(len(blocks))]
            sizes += [b - a for a, b in blocks]
        count = len(shares)
        ordered = rec.decode_blocks(
            np.tile(layout.mean, count), np.tile(layout.std, count), seed, ids, indexes, sizes
        ).reshape(count, -1)
        theta = np.empty_like(ordered)
        theta[:, layout.order] = ordered
        return torch.from_numpy(theta)

    def _decode_patches(self, sections: dict[str, bytes], count: int) -> torch.Tensor:
        """The decoded patches (count, C, *patch), float64, not yet clamped, of a file's sections."""
        missing = {"patches", "indexes"} - sections.keys()
        if missing:
            raise BitstreamError(f"this recombiner file lacks its {' and '.join(sorted(missing))} section")
        bits, seed, shares = unpack_patches(sections["patches"], self.model.arch.patch, count)
        layout = Layout(self.model)
        blocks = sum(len(layout.blocks(s)) for s in shares)
        indexes = unpack_indexes(sections["indexes"], bits, blocks)
        theta = self.parameters_of(shares, indexes, bits, seed)
        with torch.no_grad():
            theta = theta.to(self.device)
            return torch.cat([self.model(t) for t in torch.split(theta, 32)])


@register_codec(priority=-1)  # never the default: it fits each image
class RecombinerImageCodec(_RecombinerCodec):
    name = "recombiner-image"
    media = "image"
    channels = (3,)
    presets = PRESETS
    arch_defaults = CPU_ARCH

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, c, h, w = x.shape
        side = self.model.arch.patch
        patches = to_patches(pad_to_multiple(x.clone(), side), side)
        return ImageGeometry(height=h, width=w, channels=c, bit_depth=8), self._code(patches, effort)

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        g = header.geometry
        side = self.model.arch.patch
        rows, cols = -(-g.height // side), -(-g.width // side)
        patches = self._decode_patches(sections, rows * cols).clamp(0, 1)
        patches = torch.round(patches * 255) / 255
        return from_patches(patches.float(), rows, cols).to(self.device)


@register_codec(priority=-1)  # never the default: it fits each clip
class RecombinerAudioCodec(_RecombinerCodec):
    name = "recombiner-audio"
    media = "audio"
    channels = (1, 2)
    sample_rate = 44100  # the rate a file records when encode is not told one (the prior's)
    presets = AUDIO_PRESETS
    arch_defaults = AUDIO_ARCH

    def _posterior(self, count: int) -> Posterior:
        """The posteriors the fit starts from, shaped by the prior's KL profile: a parameter that
        carried ``PROFILE_FULL`` bits or more in training starts as in the image codec (a prior
        sample, standard deviations ``exp(INIT_LOG_STD_OFFSET)`` times the prior's), one that
        carried nothing at the prior itself (no KL), in between in proportion. Most of an audio
        prior's parameters carry nothing (2294 of 5249 over 0.01 bit in q1): started like the
        image's, a 2-s clip was still at 1.39 bits per sample after 150 iterations for a budget
        of 0.15."""
        share = (self.model.kl_profile.detach() / PROFILE_FULL).clamp(0, 1)
        return Posterior(
            self.model, count, init_noise=INIT_NOISE * share, log_std_offset=INIT_LOG_STD_OFFSET * share
        )

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[AudioGeometry, dict[str, bytes]]:
        _, c, t = x.shape
        signals = pad_to_multiple(to_signals(x[0])[None], self.model.arch.patch, "constant")[0]
        sections = self._code(to_segments(signals, self.model.arch.patch), effort)
        return AudioGeometry(sample_rate=self.sample_rate, channels=c, samples=t), sections

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        g = header.geometry
        per_signal = -(-g.samples // self.model.arch.patch)
        patches = self._decode_patches(sections, g.channels * per_signal)
        audio = torch.round(from_signals(from_segments(patches, g.channels)) * 32768) / 32768
        return audio.clamp(-1, 32767 / 32768).float()  # 16-bit PCM holds every decoded sample


@register_codec(priority=-2)  # never the default: it fits each clip, and music goes to recombiner-audio
class RecombinerSpeechCodec(RecombinerAudioCodec):
    """``recombiner-audio`` with priors learned on speech at 16 kHz: the same model, fitting, blocks
    and byte format; a file records its own rate (16 kHz when encode is not told one)."""

    name = "recombiner-speech"
    sample_rate = 16000
