"""Latent codecs: a latent (or a hierarchy of them) -> named byte sections, and back.

Composable blocks in the manner of CompressAI's ``latent_codecs``: a model is its transforms
plus one latent codec, and a new codec family that reuses a latent codec writes only its
transforms. The interface (:class:`LatentCodec`) is small:

- ``forward(y, side=None, mode=None) -> (y_hat, likelihoods)``: training (``likelihoods`` maps a
  section name to per-element likelihoods);
- ``compress(y, side=None) -> dict[str, bytes]``: named sections, always a dict;
- ``decompress(sections, shape) -> y_hat``;
- ``side_latents(y) -> dict[str, Tensor]``: the latents derived from ``y`` that are coded too
  (a hyperprior's ``z``), which encoder-side adaptation refines with ``y`` and passes back as
  ``side``; ``coded_latent(y)``: the decoder's ``y_hat`` for ``y``;
- ``section_names`` and ``check_sections(sections)``; ``aux_loss()`` and ``update_tables()``
  (the walk over the entropy models inside, :func:`aux_loss` / :func:`update_tables`, that the
  models' base class uses too).

Implementations: :class:`FactorizedLatentCodec` (section ``y``), :class:`HyperpriorLatentCodec`
(the mean-scale hyperprior: ``z``, ``y``), :class:`ContextLatentCodec` (a hyperprior plus a
context schedule: channel slices, checkerboard, or both; ``z``, ``y``),
:class:`VectorQuantizedLatentCodec` (the index of each latent vector's nearest codeword;
``indices``), :class:`TemporalLatentCodec` (a hyperprior plus a temporal context, for latents
that come in groups over time; ``z``, ``y``).

They live under ``entropy/`` (DESIGN.md §1) and import nothing from :mod:`neurocodec.models`:
the networks (``h_a``, the integer ``h_s``, a context model) are handed in by the model that
owns them, so dependencies keep pointing from ``models`` to ``entropy``.
"""

from neurocodec.entropy.latent_codecs.base import LatentCodec, aux_loss, update_tables
from neurocodec.entropy.latent_codecs.context import ContextLatentCodec
from neurocodec.entropy.latent_codecs.factorized import FactorizedLatentCodec
from neurocodec.entropy.latent_codecs.hyperprior import HyperpriorLatentCodec, LogUniformScales
from neurocodec.entropy.latent_codecs.temporal import TemporalLatentCodec
from neurocodec.entropy.latent_codecs.vector import VectorQuantizedLatentCodec

__all__ = [
    "ContextLatentCodec",
    "FactorizedLatentCodec",
    "HyperpriorLatentCodec",
    "LatentCodec",
    "LogUniformScales",
    "TemporalLatentCodec",
    "VectorQuantizedLatentCodec",
    "aux_loss",
    "update_tables",
]
