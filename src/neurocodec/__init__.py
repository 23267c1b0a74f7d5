"""neurocodec: learned neural codecs for images, audio and video.

Real bitstreams (docs/bitstream.md), bit-exact across devices::

    import neurocodec as nc
    codec = nc.load("hyperprior", quality=3, device="cpu")   # shipped weights, offline
    data = codec.encode(image)                               # bytes of a complete file
    image_hat = nc.decode(data)                              # the file names its codec
    nc.encode_dataset("photos/", "out/", workers=2)          # a folder on Ray Data (the ray extra)
    nc.list_codecs()                                         # installed; nc.families(): declared

Importing neurocodec does not import torch; loading a codec does.
"""

from neurocodec.container import NO_LIMITS, Limits
from neurocodec.errors import (
    BitstreamError,
    ChecksumError,
    ContainerError,
    DeviceError,
    GeometryError,
    LimitError,
    MediaReadError,
    NeurocodecError,
    OutputError,
    OutputExistsError,
    PacketLossWarning,
    TableMismatchError,
    UnknownCodecError,
    UnsupportedMediaError,
    UnsupportedVersionError,
    WeightsError,
    WrongCodecError,
)
from neurocodec.registry import (
    CodecFamily,
    CodecInfo,
    WeightConfig,
    codec_info,
    decode,
    default_codec,
    encode,
    families,
    list_codecs,
    load,
)

__version__ = "0.1.0"

# Compressed learning (neurocodec.latents) needs torch: imported on first use.
_LATENTS = ("LatentDataset", "LatentItem", "encode_latents", "save_latents")


def __getattr__(name: str):
    if name in _LATENTS:
        from neurocodec import latents

        return getattr(latents, name)
    if name == "encode_dataset":  # Ray Data (the `ray` extra), imported when it runs
        from neurocodec.dataset import encode_dataset

        return encode_dataset
    raise AttributeError(f"module 'neurocodec' has no attribute {name!r}")


__all__ = [
    "NO_LIMITS",
    "BitstreamError",
    "ChecksumError",
    "CodecFamily",
    "CodecInfo",
    "ContainerError",
    "DeviceError",
    "GeometryError",
    "LatentDataset",
    "LatentItem",
    "LimitError",
    "Limits",
    "MediaReadError",
    "NeurocodecError",
    "OutputError",
    "OutputExistsError",
    "PacketLossWarning",
    "TableMismatchError",
    "UnknownCodecError",
    "UnsupportedMediaError",
    "UnsupportedVersionError",
    "WeightConfig",
    "WeightsError",
    "WrongCodecError",
    "__version__",
    "codec_info",
    "decode",
    "default_codec",
    "encode",
    "encode_dataset",
    "encode_latents",
    "families",
    "list_codecs",
    "load",
    "save_latents",
]
