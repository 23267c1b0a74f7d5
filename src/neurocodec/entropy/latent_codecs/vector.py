"""The vector-quantized latent codec: each latent vector becomes the index of its nearest codeword.

``y`` (N, D, h, w) -> one index per position into a codebook of ``K`` vectors of ``D`` -> section
``indices`` (a rANS stream, in row-major order of the index map, under the indices' marginal:
each codeword's share of the picks in training, held in a
:class:`~neurocodec.entropy.models.Categorical` table); the decoder looks the codewords up.

The codebook (:class:`Codebook`) follows VQGAN-LC (Zhu et al., "Scaling the Codebook Size of
VQGAN to 100,000 with a Utilization Rate of 99%", 2024): the codewords are a frozen matrix ``E``
seen through a learned linear projection, ``codes = E W^T + b``. Every codeword moves whenever
the projection does, so none is left behind unused, as codewords trained one by one are. The
codewords are unit vectors (as in ViT-VQGAN, Yu et al. 2022: the lookup is by cosine similarity,
and the latents' scale cannot drift away from the codebook's), so a model gives unit latents. ``E``
is initialized from the encoder's own features: the first training batches fill it with latent
vectors drawn from them (:meth:`Codebook.fill`), where VQGAN-LC uses a pretrained CLIP model's
features, which do not exist offline.

:meth:`Codebook.reduced` gives a smaller codebook by k-means over the codewords (weighted by
how often each was used): a family's lower rates come from one trained model (Mao et al.,
"Extreme Image Compression using Fine-tuned VQGANs", DCC 2024).

**Packets** (loss resilience). With :attr:`VectorQuantizedLatentCodec.packets` set to ``N`` (2 ...
:data:`MAX_PACKETS`), the indices are spread over ``N`` independently decodable sections
``pk0`` ... ``pk<N-1>``: the index at row ``r``, column ``c`` of the map goes to packet
:func:`packet_of` ``= (7 r + 3 c) mod N`` (for ``N = 16`` and every ``N >= 11``, each of a position's
eight neighbours is in another packet), in row-major order. A packet's payload is ``N`` (u8),
the CRC-32 of the rest (u32, little-endian), then the rANS stream of its indices under the
marginal prior, which needs no other packet. A decoder given a file whose packets are missing
(or fail their CRC) fills their positions with the mean of the known neighbours' codewords
(:func:`restored`) and says how many were lost (:class:`~neurocodec.errors.PacketLossWarning`).
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import coder
from neurocodec.entropy.latent_codecs.base import LatentCodec
from neurocodec.entropy.models import Categorical
from neurocodec.entropy.models.base import Mode
from neurocodec.errors import BitstreamError, PacketLossWarning

__all__ = ["Codebook", "VectorQuantizedLatentCodec", "kmeans", "packet_of", "restored"]

USAGE_DECAY = 0.99  # the moving average of how often each codeword is picked in training
MARGINAL_FLOOR = 0.1  # the least marginal probability of a codeword, in units of 1 / size
MAX_PACKETS = 48  # with the container's other sections, within its default limit of 64
PACKET_PREFIX = "pk"


class Codebook(nn.Module):
    """``size`` codewords of ``dim``: a frozen matrix through a learned projection (VQGAN-LC)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 2 or dim < 1:
            raise ValueError(
                f"a codebook needs at least 2 codewords of at least 1 dimension, not {size} x {dim}"
            )
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("frozen", torch.randn(size, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # rows of `frozen` from data
        self.register_buffer("usage", torch.full((size,), 1.0 / size))
        self.projection = nn.Linear(dim, dim)
        with torch.no_grad():
            self.projection.weight.copy_(torch.eye(dim))
            self.projection.bias.zero_()

    def codes(self) -> Tensor:
        """The codewords, ``(size, dim)``: unit vectors."""
        return F.normalize(self.projection(self.frozen), dim=1)

    @torch.no_grad()
    def fill(self, vectors: Tensor) -> None:
        """Training: copy latent vectors ``(n, dim)`` into the rows of the frozen matrix not yet
        taken from data (random ones of them, at most the rows left), until all are."""
        left = self.size - int(self.filled)
        if left <= 0 or not len(vectors):
            return
        take = vectors[torch.randperm(len(vectors), device=vectors.device)[:left]].to(self.frozen)
        start = int(self.filled)
        self.frozen[start : start + len(take)] = take
        self.filled += len(take)

    def nearest(self, vectors: Tensor, codes: Tensor | None = None) -> Tensor:
        """The index of the codeword nearest to each of ``vectors`` ``(n, dim)`` (squared
        Euclidean distance; ties to the lowest index)."""
        codes = self.codes() if codes is None else codes
        distances = vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codes.t() + codes.pow(2).sum(1)[None]
        return distances.argmin(1)

    @torch.no_grad()
    def observe(self, indices: Tensor) -> None:
        """Training: update the moving average of how often each codeword is picked."""
        counts = torch.bincount(indices.flatten(), minlength=self.size).to(self.usage)
        self.usage.mul_(USAGE_DECAY).add_(counts / counts.sum(), alpha=1 - USAGE_DECAY)

    def utilization(self, threshold: float = 0.01) -> float:
        """The share of codewords picked at least ``threshold / size`` of the time, recently."""
        return float((self.usage * self.size >= threshold).float().mean())

    @torch.no_grad()
    def reduced(self, size: int, *, iterations: int = 50, seed: int = 0) -> Tensor:
        """``size`` unit codewords: the k-means centroids of these codewords (weighted by their
        usage), scaled to unit length."""
        centres = kmeans(
            self.codes().double(), size, weights=self.usage.double(), iterations=iterations, seed=seed
        )
        return F.normalize(centres, dim=1)


@torch.no_grad()
def kmeans(
    points: Tensor, k: int, *, weights: Tensor | None = None, iterations: int = 50, seed: int = 0
) -> Tensor:
    """Weighted k-means (k-means++ seeding from a seeded generator, then Lloyd's iterations) of
    ``points`` ``(n, d)``: the ``(k, d)`` centroids, deterministic for a seed. A cluster that
    empties keeps its centroid."""
    n = len(points)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= {n} points, not k = {k}")
    weights = torch.ones(n, dtype=points.dtype) if weights is None else weights.to(points).clamp_min(1e-12)
    gen = torch.Generator().manual_seed(seed)
    first = int(torch.multinomial(weights.cpu().float(), 1, generator=gen))
    centroids = [points[first]]
    nearest = (points - points[first]).pow(2).sum(1)
    for _ in range(1, k):
        chance = (weights * nearest).cpu().float()
        pick = int(torch.multinomial(chance, 1, generator=gen)) if chance.sum() > 0 else int(nearest.argmax())
        centroids.append(points[pick])
        nearest = torch.minimum(nearest, (points - points[pick]).pow(2).sum(1))
    centres = torch.stack(centroids)
    for _ in range(iterations):
        assign = torch.cdist(points, centres).argmin(1)
        mass = torch.zeros(k, dtype=points.dtype).index_add_(0, assign, weights)
        sums = torch.zeros_like(centres).index_add_(0, assign, points * weights[:, None])
        moved = mass > 0
        centres[moved] = sums[moved] / mass[moved, None]
    return centres


class VectorQuantizedLatentCodec(LatentCodec):
    """``y`` (N, D, h, w) -> index sections -> the codewords (the module docstring).

    Without a ``context`` the indices are one section, ``indices``, under the marginal
    (:meth:`marginal`, its table in :attr:`index_prior`). With one -- a network over the index map with the interface of
    :class:`neurocodec.models.index_prior.IndexTransformer` (``pass_masks``, ``masked``,
    ``cdfs``, ``likelihoods``), handed in by the model that owns it -- the map is coded in its
    passes, one rANS stream (section ``pass<p>``) each, every position with its own table
    computed exactly from the indices of the earlier passes.
    """

    def __init__(self, codebook_size: int, dim: int, context: nn.Module | None = None):
        super().__init__()
        self.codebook = Codebook(codebook_size, dim)
        self.index_prior = Categorical(codebook_size)
        self.context = context
        passes = len(context.pass_masks(1, 1)) if context is not None else 0
        self.section_names = tuple(f"pass{p}" for p in range(passes)) or ("indices",)

    def quantize(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(codewords, indices)`` of ``y``: the codeword of each position ``(N, D, h, w)``,
        differentiable in the projection, and its index ``(N, h, w)``. In training, the first
        calls fill the codebook from ``y`` and usage is tracked."""
        n, d, h, w = y.shape
        vectors = y.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training:
            self.codebook.fill(vectors.detach())
        codes = self.codebook.codes()
        indices = self.codebook.nearest(vectors.detach(), codes.detach())
        if self.training:
            self.codebook.observe(indices)
        chosen = codes[indices].reshape(n, h, w, d).permute(0, 3, 1, 2)
        return chosen, indices.reshape(n, h, w)

    packets: int = 0  # > 1: compress() writes loss-resilient packets (module docstring)

    def forward(
        self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``y_hat``: the codewords with a straight-through gradient to ``y``; the likelihoods of
        the indices under the learned prior (their gradient trains the prior alone)."""
        chosen, indices = self.quantize(y)
        return y + (chosen - y).detach(), {"indices": self.likelihoods(indices)}

    def likelihoods(self, indices: Tensor) -> Tensor:
        """The probability of each index (N, h, w) under the context, or else the marginal."""
        if self.context is not None:
            return self.context.likelihoods(indices)
        return self.marginal()[indices]

    def marginal(self) -> Tensor:
        """The probability of each codeword without context: its share of the picks in training
        (the moving average :attr:`Codebook.usage`), at least ``MARGINAL_FLOOR / size``."""
        share = self.codebook.usage.clamp_min(MARGINAL_FLOOR / self.codebook.size)
        return share / share.sum()

    @torch.no_grad()
    def update_tables(self) -> None:
        """The marginal's table from the usage (:meth:`marginal`), and any others, once."""
        self.index_prior.logits.copy_(torch.log(self.marginal()))
        super().update_tables()

    def losses(self, y: Tensor, chosen: Tensor, beta: float = 0.25) -> dict[str, Tensor]:
        """The VQ-VAE terms: ``codebook`` pulls the codewords to the latents (through the
        projection), ``commitment`` (weighted ``beta``) the latents to their codewords."""
        return {
            "codebook": F.mse_loss(chosen, y.detach()),
            "commitment": beta * F.mse_loss(y, chosen.detach()),
        }

    def compress(self, y: Tensor, side: Mapping[str, Tensor] | None = None) -> dict[str, bytes]:
        _, indices = self.quantize(y)
        indices = indices.cpu()
        if self.packets:
            return self._packets(indices, self.packets)
        if self.context is None:
            return {"indices": self.index_prior.compress(indices)}
        sections, known = {}, torch.zeros_like(indices, dtype=torch.bool)
        for name, phase in zip(self.section_names, self.context.pass_masks(*indices.shape[1:]), strict=True):
            where = phase.expand_as(indices)
            tableset = self._pass_tables(indices, known, where)
            values = indices[where].to(torch.int32)
            steps = torch.arange(len(values), dtype=torch.int32)
            sections[name] = coder.fit_lanes(functools.partial(_encode, values, steps, tableset), len(values))
            known |= where
        return sections

    def _pass_tables(self, indices: Tensor, known: Tensor, where: Tensor) -> coder.TableSet:
        cdfs = self.context.cdfs(self.context.masked(indices, known), where)
        return coder.TableSet(cdfs, torch.zeros(len(cdfs), dtype=torch.int32))

    def _packets(self, indices: Tensor, count: int) -> dict[str, bytes]:
        if not 2 <= count <= MAX_PACKETS:
            raise ValueError(f"packets must be 2 ... {MAX_PACKETS}, not {count}")
        owner = packet_of(*indices.shape[1:], count).expand_as(indices)
        sections = {}
        for p in range(count):
            stream = self.index_prior.compress(indices[owner == p])
            sections[f"{PACKET_PREFIX}{p}"] = (
                bytes([count]) + zlib.crc32(stream).to_bytes(4, "little") + stream
            )
        return sections

    def check_sections(self, sections: Mapping[str, bytes], what: str = "this file") -> None:
        if not any(name.startswith(PACKET_PREFIX) for name in sections):
            super().check_sections(sections, what)

    def _unpacked(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The index map of packet sections and where it is lost (its indices there are 0)."""
        payloads = {name: data for name, data in sections.items() if name.startswith(PACKET_PREFIX)}
        counts = {data[0] for data in payloads.values() if data}
        if len(counts) != 1 or not 2 <= (count := counts.pop()) <= MAX_PACKETS:
            raise BitstreamError("the packets disagree on their count, or state an impossible one")
        owner = packet_of(*shape[1:], count).expand(tuple(shape))
        indices = torch.zeros(tuple(shape), dtype=torch.long)
        lost = torch.ones(tuple(shape), dtype=torch.bool)
        received = 0
        for p in range(count):
            data = payloads.get(f"{PACKET_PREFIX}{p}", b"")
            stream = data[5:]
            if len(data) < 5 or zlib.crc32(stream) != int.from_bytes(data[1:5], "little"):
                continue  # lost, or damaged: restored by decompress()
            where = owner == p
            indices[where] = self._checked(self.index_prior.decompress(stream, (int(where.sum()),)))
            lost &= ~where
            received += 1
        if received < count:
            if bool(lost.all()):
                raise BitstreamError("every index packet was lost: nothing to restore the image from")
            warnings.warn(
                PacketLossWarning(
                    f"{count - received} of {count} index packets were lost; their indices were restored"
                ),
                stacklevel=3,
            )
        return indices, lost

    def decode_indices(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The index map ``shape`` ``(N, h, w)`` (int64, CPU) of the sections, and where it is lost
        (missing packets; all False otherwise). BitstreamError when the sections hold an index
        outside the codebook."""
        if any(name.startswith(PACKET_PREFIX) for name in sections):
            return self._unpacked(sections, shape)
        if self.context is None:
            indices = self.index_prior.decompress(sections["indices"], shape)
        else:
            indices = torch.zeros(tuple(shape), dtype=torch.long)
            known = torch.zeros_like(indices, dtype=torch.bool)
            for name, phase in zip(self.section_names, self.context.pass_masks(*shape[1:]), strict=True):
                where = phase.expand_as(indices)
                tableset = self._pass_tables(indices, known, where)
                steps = torch.arange(int(where.sum()), dtype=torch.int32)
                indices[where] = self._checked(
                    torch.from_numpy(coder.decode(sections[name], steps, tableset))
                )
                known |= where
        return self._checked(indices), torch.zeros(tuple(shape), dtype=torch.bool)

    def _checked(self, indices: Tensor) -> Tensor:
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook.size):
            raise BitstreamError(
                f"the index sections hold indices outside the codebook of {self.codebook.size}"
            )
        return indices.long()

    def decompress(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> Tensor:
        """The codewords of the decoded indices, ``shape`` ``(N, D, h, w)``, float32."""
        n, d, h, w = shape
        if d != self.codebook.dim:
            raise BitstreamError(
                f"a latent of {d} channels, but the codebook's codewords have {self.codebook.dim}"
            )
        indices, lost = self.decode_indices(sections, (n, h, w))
        codes = self.codebook.codes().float()
        y = codes[indices.to(codes.device)].permute(0, 3, 1, 2)
        return restored(y, lost.to(y.device)) if lost.any() else y.contiguous()

    def coded_latent(self, y: Tensor) -> Tensor:
        return self.quantize(y)[0]


def _encode(values: Tensor, steps: Tensor, tableset: coder.TableSet, lanes: int) -> bytes:
    return coder.encode(values, steps, tableset, lanes=lanes)


def packet_of(height: int, width: int, count: int) -> Tensor:
    """The packet ``(7 r + 3 c) mod count`` of each position ``(r, c)`` of an index map, ``(height, width)``."""
    return (7 * torch.arange(height)[:, None] + 3 * torch.arange(width)[None, :]) % count


def restored(y: Tensor, lost: Tensor) -> Tensor:
    """``y`` (N, D, h, w) with the vectors at ``lost`` (N, h, w) replaced by the mean of their known
    neighbours (3x3; rings of unknown neighbours are filled from outside in, so every lost vector
    gets one). Measured on Kodak with 3 of 16 packets lost, the plain mean lost less MS-SSIM than
    the mean's nearest codeword or the context transformer's most probable index (the issue 29
    note has the numbers)."""
    y, lost = y.clone(), lost.clone()
    ring = torch.ones(1, 1, 3, 3, device=y.device)
    while bool(lost.any()):
        known = (~lost)[:, None].to(y.dtype)
        total = F.conv2d((y * known).flatten(0, 1)[:, None], ring, padding=1).view_as(y)
        count = F.conv2d(known, ring, padding=1)
        fill = lost & (count[:, 0] > 0)
        if not bool(fill.any()):
            raise BitstreamError("every index packet was lost: nothing to restore the image from")
        mean = total / count.clamp_min(1)
        y = torch.where(fill[:, None], mean, y)
        lost &= ~fill
    return y.contiguous()
