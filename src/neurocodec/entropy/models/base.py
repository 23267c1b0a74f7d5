"""What every entropy model shares: quantization, the likelihood floor, integer tables in buffers.

:class:`EntropyModel` holds integer table data in registered buffers (so it travels with the
``state_dict`` and safetensors) whose sizes are only known once the tables are built; loading a
state_dict resizes them. :class:`TableEntropyModel` is the common case of one fixed
:class:`~neurocodec.entropy.coder.TableSet`, built once by ``update_tables()`` and afterwards only
read from the buffers (uploaded to the coder on first use, never recomputed implicitly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neurocodec.entropy import coder, tables

__all__ = ["EntropyModel", "TableEntropyModel", "lower_bound", "scale_table_bits", "scale_table_from_bits"]

QUANTIZE_MODES = ("noise", "ste", "symbols")
# A quantization mode: one of QUANTIZE_MODES, or a relaxed rounding of the offsets from the grid
Mode = str | Callable[[Tensor], Tensor]
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows below the bound when it points upwards."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bound: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """``max(x, bound)``; below the bound the gradient passes only if it would raise ``x``
    (so a likelihood stuck at the floor can still be pulled up, as in tensorflow-compression)."""
    return _LowerBound.apply(x, bound)


def scale_table_bits(scale_table=None) -> Tensor:
    """A validated scale table (default :func:`tables.gaussian_scale_table`) as int64 bit patterns.

    Table scales decide table indexes, so they must not change by a single bit: stored as the
    bits of their float64 values in an integer buffer, they survive ``model.half()``,
    ``model.to(torch.float32)`` and the like, which convert floating-point buffers.
    """
    st = tables.gaussian_scale_table() if scale_table is None else np.asarray(scale_table, dtype=np.float64)
    st = np.ascontiguousarray(st.reshape(-1))
    tables.scale_boundaries(st)  # validates: positive, finite, strictly increasing
    return torch.from_numpy(st.view(np.int64).copy())


def scale_table_from_bits(bits: Tensor) -> np.ndarray:
    """The float64 table scales stored by :func:`scale_table_bits`."""
    return bits.detach().cpu().numpy().view(np.float64).copy()


class EntropyModel(nn.Module):
    """Base of the entropy models: training-time quantization and the table buffers.

    Subclasses list their integer table buffers in ``_table_buffers``; they start empty and
    ``load_state_dict`` resizes them to the incoming tensors, so a fresh module loads built
    tables without rebuilding them.

    Args:
        likelihood_bound: floor of the training likelihoods (keeps ``-log2`` finite).
    """

    _table_buffers: tuple[str, ...] = ()

    def __init__(self, likelihood_bound: float = 1e-9):
        super().__init__()
        self.likelihood_bound = float(likelihood_bound)
        for name in self._table_buffers:
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))

    # -- quantization ---------------------------------------------------------------------

    def quantize(self, y: Tensor, mode: Mode = "noise", means: Tensor | None = None) -> Tensor:
        """Quantize ``y`` on the grid ``means + Z`` (``Z`` when ``means`` is None).

        - ``"noise"``: ``y + u``, ``u ~ U(-1/2, 1/2)`` (the training proxy; ``means`` change nothing);
        - ``"ste"``: ``round(y - means) + means`` in the forward pass, identity gradient;
        - ``"symbols"``: the int32 symbols ``round(y - means)`` (``torch.round``: half to even);
          ``ValueError`` if one is not finite or does not fit in int32;
        - a callable ``rounding``: a relaxed rounding of the same offsets, ``rounding(y - means) +
          means`` (e.g. stochastic Gumbel annealing, :mod:`neurocodec.codecs.adapt`).
        """
        if callable(mode):
            return mode(y) if means is None else mode(y - means) + means
        if mode == "noise":
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)
        if mode == "ste":
            q = torch.round(y) if means is None else torch.round(y - means) + means
            return q.detach() + (y - y.detach())  # exactly q, gradient of the identity
        if mode == "symbols":
            q = torch.round(y if means is None else y - means)
            if q.numel():
                lo, hi = torch.aminmax(q)  # one pass; a NaN makes both NaN, and fails the test
                if not (lo.item() >= _INT32_MIN and hi.item() <= _INT32_MAX):
                    raise ValueError("symbols must be finite and fit in int32")
            return q.to(torch.int32)
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {QUANTIZE_MODES}")

    @staticmethod
    def dequantize(symbols: Tensor, means: Tensor | None = None) -> Tensor:
        """``symbols + means`` (float32 without means, else in the means' dtype and device)."""
        if means is None:
            return symbols.to(torch.float32)
        return symbols.to(device=means.device, dtype=means.dtype) + means

    def _default_mode(self, mode: Mode | None) -> Mode:
        return mode if mode is not None else ("noise" if self.training else "ste")

    def _bound(self, likelihood: Tensor) -> Tensor:
        return lower_bound(likelihood, self.likelihood_bound) if self.likelihood_bound > 0 else likelihood

    # -- table buffers ----------------------------------------------------------------------

    def _set_table_buffers(self, **arrays: np.ndarray) -> None:
        for name, a in arrays.items():
            if name not in self._table_buffers:
                raise KeyError(f"{name} is not a table buffer of {type(self).__name__}")
            device = getattr(self, name).device
            setattr(self, name, torch.from_numpy(np.ascontiguousarray(a)).to(device))
        self._tables_changed()

    def _tables_changed(self) -> None:
        """Hook: drop whatever was derived from the table buffers."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for name in self._table_buffers:
            key = prefix + name
            if key in state_dict:
                current = getattr(self, name)
                incoming = state_dict[key]
                setattr(self, name, torch.empty(incoming.shape, dtype=incoming.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)
        self._tables_changed()


class TableEntropyModel(EntropyModel):
    """An entropy model with one fixed table set, stored flat in three int32 buffers.

    ``table_cdfs`` is the concatenation of every table's CDF, ``table_sizes[t]`` the length of
    table ``t``'s CDF (entries + 1) and ``table_offsets[t]`` its offset (docs/bitstream.md §1).
    """

    _table_buffers = ("table_cdfs", "table_sizes", "table_offsets")

    def __init__(self, likelihood_bound: float = 1e-9):
        super().__init__(likelihood_bound)
        self._tableset: coder.TableSet | None = None
        self._gpu_tableset = None  # gpu.GpuTableSet, built on the first GPU coding call

    def _store_tables(self, cdfs: Sequence[np.ndarray], offsets: np.ndarray) -> None:
        """Store integer tables in the buffers (validated by building the coder's TableSet)."""
        tableset = coder.TableSet(cdfs, offsets)
        self._set_table_buffers(
            table_cdfs=np.concatenate([np.asarray(c, dtype=np.int32) for c in cdfs]),
            table_sizes=np.array([len(c) for c in cdfs], dtype=np.int32),
            table_offsets=np.asarray(offsets, dtype=np.int32),
        )
        self._tableset = tableset

    def _tables_changed(self) -> None:
        self._tableset = None
        self._gpu_tableset = None

    @property
    def has_tables(self) -> bool:
        return self.table_sizes.numel() > 0

    @property
    def tables(self) -> coder.TableSet:
        """The coder's table set, uploaded from the buffers on first use."""
        if self._tableset is None:
            if not self.has_tables:
                raise RuntimeError(f"{type(self).__name__} has no tables: call update_tables() first")
            flat = self.table_cdfs.cpu().numpy()
            bounds = np.cumsum(self.table_sizes.cpu().numpy().astype(np.int64))[:-1]
            self._tableset = coder.TableSet(np.split(flat, bounds), self.table_offsets.cpu())
        return self._tableset

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {**state, "_tableset": None, "_gpu_tableset": None}

    def gpu_tables(self, device: torch.device):
        """The tables for the GPU coder (:mod:`neurocodec.entropy.gpu`) on ``device``, uploaded once."""
        from neurocodec.entropy import gpu  # imports Triton: only when a GPU codes

        cached = self._gpu_tableset
        if cached is None or cached.device != device:
            cached = self._gpu_tableset = gpu.GpuTableSet(self.tables, device)
        return cached

    def _encode(self, values: Tensor, indexes: Tensor | np.ndarray) -> bytes:
        """The stream of ``values``: on the GPU when they are CUDA tensors, else the C++ core (same bytes)."""
        if values.is_cuda:
            from neurocodec.entropy import gpu

            indexes = torch.as_tensor(indexes, device=values.device)
            tables = self.gpu_tables(values.device)
            return coder.fit_lanes(
                lambda k: gpu.encode(values.detach(), indexes, tables, lanes=k), values.numel()
            )
        values, indexes = values.detach().cpu().contiguous(), _cpu(indexes)
        return coder.fit_lanes(lambda k: coder.encode(values, indexes, self.tables, lanes=k), values.numel())

    def _decode(self, data: bytes, indexes: Tensor | np.ndarray) -> Tensor:
        """int32 values on the device of ``indexes``: decoded there when it is a GPU."""
        if isinstance(indexes, Tensor) and indexes.is_cuda:
            from neurocodec.entropy import gpu

            return gpu.decode(data, indexes.detach(), self.gpu_tables(indexes.device))
        return torch.from_numpy(coder.decode(data, _cpu(indexes), self.tables))


def _cpu(x: Tensor | np.ndarray) -> Tensor | np.ndarray:
    return x.detach().cpu().contiguous() if isinstance(x, Tensor) else x
