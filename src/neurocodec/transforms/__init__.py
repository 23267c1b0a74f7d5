"""Fixed signal transforms with no learned state (wavelet packets, :mod:`.wavelets`)."""

from neurocodec.transforms.wavelets import WAVELETS, iwpt1d, iwpt2d, packet_frequencies, wpt1d, wpt2d

__all__ = ["WAVELETS", "iwpt1d", "iwpt2d", "packet_frequencies", "wpt1d", "wpt2d"]
