"""neurocodec: learned neural codecs for images, audio and video.

Real bitstreams (docs/bitstream.md), bit-exact across devices. The entropy coder lives in
:mod:`neurocodec.entropy.coder`; codecs, the file container and the command line build on it.
"""

from neurocodec.errors import BitstreamError, NeurocodecError, TableMismatchError

__version__ = "0.1.0"

__all__ = ["BitstreamError", "NeurocodecError", "TableMismatchError", "__version__"]
