"""A test-only lossless video codec family, "test-video": every sample as a 16-bit code, deflated.

It checks what the library does around a video codec -- the API's frame rate and colour, the
container's video geometry, ``neurocodec encode`` / ``decode`` / ``eval`` of video -- exactly:
16-bit codes keep 8- and 10-bit samples to the level, so whatever a test writes back (Y4M, 4:2:0
planes) must equal what it read. Known to the registry through ``NEUROCODEC_CODEC_MODULES=toy_video_codec``
(this directory on ``sys.path``); built without weights (quality 1). Imported otherwise (the
in-process tests use the class directly), it declares nothing, so that the other tests' registry
does not grow a video codec.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import torch

from neurocodec.codecs.base import Codec
from neurocodec.container import Header, VideoGeometry
from neurocodec.errors import BitstreamError
from neurocodec.registry import register_codec

NAME = "test-video"
MODULES = "toy_video_codec"
_SHAPE = struct.Struct("<4I")


class ToyVideoCodec(Codec):
    name = NAME
    media = "video"
    channels = (3,)
    default_quality = 1

    def _encode(self, x: torch.Tensor, colour: str = "rgb") -> tuple[VideoGeometry, dict[str, bytes]]:
        _, c, t, h, w = x.shape
        codes = x[0].mul(65535).round().to(torch.int32).numpy().astype("<u2")
        geometry = VideoGeometry(frames=t, rate_num=1, rate_den=1, height=h, width=w, channels=c, bit_depth=8)
        return geometry, {"codes": _SHAPE.pack(c, t, h, w) + zlib.compress(codes.tobytes())}

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        data = sections.get("codes", b"")
        if len(data) < _SHAPE.size:
            raise BitstreamError("this test-video file lacks its codes")
        shape = _SHAPE.unpack_from(data)
        g = header.geometry
        if shape != (g.channels, g.frames, g.height, g.width):
            raise BitstreamError(f"the codes are of shape {shape}, the header says otherwise")
        try:
            raw = zlib.decompress(data[_SHAPE.size :])
        except zlib.error:
            raise BitstreamError("the test-video codes are corrupt") from None
        if len(raw) != 2 * np.prod(shape):
            raise BitstreamError("the test-video codes have the wrong length")
        codes = np.frombuffer(raw, "<u2").reshape(shape).astype(np.float32)
        return torch.from_numpy(codes).div_(65535)


if MODULES in os.environ.get("NEUROCODEC_CODEC_MODULES", "").split(","):
    register_codec(ToyVideoCodec, qualities=(1,))
