"""Entropy models: probability models of quantized latents, and their integer coding tables.

Three layers, kept apart (as in tensorflow-compression and constriction):

- the **model** (an ``nn.Module`` here) gives differentiable likelihoods for training
  (``quantize(y, "noise" | "ste")`` and ``forward``), and learns its parameters;
- the **tables** are integer 16-bit CDFs (:mod:`neurocodec.entropy.tables`) built ONCE from the
  trained parameters by ``update_tables()`` (float64, on the CPU) and stored in registered
  buffers, so they travel with the ``state_dict`` / safetensors; a module that loads them never
  recomputes them (and nothing rebuilds them implicitly);
- the **coder** (:mod:`neurocodec.entropy.coder`) turns int32 values and per-symbol int32
  table indexes into the rANS stream of docs/bitstream.md: ``compress(...) -> bytes`` and
  ``decompress(bytes, ...)``.

Determinism contract: decoding is bit-exact on any device as long as (1) both sides hold the
same integer tables (the stream carries their hash and refuses others), and (2) both sides
derive the same table index for every symbol. Indexes must therefore be derived exactly:
from integers, or integer-valued arithmetic that cannot round. The float helpers
(``indexes_from_scales``, ``GaussianMixtureConditional.quantize_parameters``) are for analysis,
training and single-device use: they are exact across devices only for bit-identical float
inputs; a deterministic prior path hands integer indexes (and integer mixture parameters) to
``compress``/``decompress`` directly. The mixture builds per-symbol tables from its integer
component tables with integer arithmetic only.

Models: :class:`FactorizedPrior`, :class:`GaussianConditional`, :class:`LaplaceConditional`,
:class:`GaussianMixtureConditional`, :class:`Categorical`, :class:`AdaptiveCategorical`.
Context schedules (single step, channel slices, checkerboard, both): :class:`ContextSchedule`;
latent codecs built on these models: :mod:`neurocodec.entropy.latent_codecs`.
"""

from neurocodec.entropy.models.base import EntropyModel, TableEntropyModel, lower_bound
from neurocodec.entropy.models.categorical import AdaptiveCategorical, Categorical
from neurocodec.entropy.models.factorized import FactorizedPrior
from neurocodec.entropy.models.gaussian import (
    GaussianConditional,
    LaplaceConditional,
    ScaleConditional,
    laplace_tables,
)
from neurocodec.entropy.models.mixture import GaussianMixtureConditional
from neurocodec.entropy.models.schedules import ANCHOR_PARITY, ContextSchedule, ScheduleOutput, Step

__all__ = [
    "ANCHOR_PARITY",
    "AdaptiveCategorical",
    "Categorical",
    "ContextSchedule",
    "EntropyModel",
    "FactorizedPrior",
    "GaussianConditional",
    "GaussianMixtureConditional",
    "LaplaceConditional",
    "ScaleConditional",
    "ScheduleOutput",
    "Step",
    "TableEntropyModel",
    "laplace_tables",
    "lower_bound",
]
