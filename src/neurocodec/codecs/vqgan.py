"""``vqgan``: extreme image compression, one codebook index per 16x16 pixels (:mod:`neurocodec.models.vqgan`).

File section: ``indices`` -- the index map (``ceil(H/16) x ceil(W/16)``, row-major) as one rANS
stream under the model's learned index prior, one table for every position
(:class:`~neurocodec.entropy.latent_codecs.VectorQuantizedLatentCodec`). The decoder looks the
codewords up and runs the float decoder; the indices decode bit-exactly on any device, only the
pixels' last bits may differ between devices. Inputs are padded (replicate) to a multiple of 16;
the header records the true size.

With :attr:`VQGANCodec.packets` set (``neurocodec encode --packets N``) the indices go to ``N``
independently decodable sections ``pk0`` ... instead (their format:
:mod:`neurocodec.entropy.latent_codecs.vector`); a file missing some of them
(:func:`drop_packets` makes one) decodes with their indices restored and a
:class:`~neurocodec.errors.PacketLossWarning` saying how many were lost.

Quality is the codebook size: each quality's weight file is the same trained model with its
codebook reduced by k-means (``neurocodec train vqgan --init RUN --arch codebook_size=S
--train-only latent_codec``), so about ``log2(S) / 256`` bits per pixel.
"""

from __future__ import annotations

from collections.abc import Iterable

from neurocodec import container
from neurocodec.codecs.image_transform import ImageTransformCodec
from neurocodec.entropy.latent_codecs.vector import MAX_PACKETS, PACKET_PREFIX
from neurocodec.errors import ConfigError
from neurocodec.models.vqgan import VQGAN
from neurocodec.registry import register_codec

__all__ = ["VQGANCodec", "drop_packets"]


@register_codec(model=VQGAN, arch={"width": 32, "embed_dim": 32, "codebook_size": 4096})
class VQGANCodec(ImageTransformCodec):
    """The VQGAN as a codec: ``VQGANCodec(width=32, embed_dim=32, codebook_size=4096, ...)``."""

    name = "vqgan"
    media = "image"
    channels = (3,)

    def __init__(
        self, *, quality: int = 0, weights_hash: bytes = bytes(container.WEIGHTS_HASH_BYTES), **arch
    ):
        super().__init__(quality=quality, weights_hash=weights_hash)
        self.model = VQGAN(**{**arch, "disc_weight": 0.0})  # decoding needs no discriminator

    @property
    def packets(self) -> int:
        """How many loss-resilient packets ``encode`` spreads the indices over (0: none, the
        default: one stream, the most compact)."""
        return self.model.latent_codec.packets

    @packets.setter
    def packets(self, count: int) -> None:
        if count and not 2 <= count <= MAX_PACKETS:
            raise ConfigError(f"packets must be 2 ... {MAX_PACKETS} (or 0: none), not {count}")
        self.model.latent_codec.packets = int(count)


def drop_packets(data: bytes, lost: Iterable[int]) -> bytes:
    """The file ``data`` as a receiver would assemble it without the packets numbered ``lost``
    (what a lossy channel does to a ``--packets`` file; for tests and evaluation)."""
    header, sections = container.unpack(data)
    gone = {f"{PACKET_PREFIX}{p}" for p in lost}
    return container.pack(header, {name: payload for name, payload in sections.items() if name not in gone})
