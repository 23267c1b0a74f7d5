"""The base of every compression model: transforms plus one latent codec.

:class:`CompressionModel` gives a model ``aux_loss()`` and ``update_tables()`` by walking its
entropy models (:func:`neurocodec.entropy.latent_codecs.aux_loss` /
:func:`~neurocodec.entropy.latent_codecs.update_tables`), and loads state dicts written before
a submodule moved: a model lists its moved prefixes in :attr:`CompressionModel.renamed_prefixes`
(old -> new), and :meth:`CompressionModel.renamed_keys` maps them at load time (the shipped
safetensors files are never rewritten).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import ClassVar

from torch import Tensor, nn

from neurocodec.entropy import latent_codecs

__all__ = ["CompressionModel"]


class CompressionModel(nn.Module):
    """An ``nn.Module`` with a :attr:`latent_codec` (a :class:`~neurocodec.entropy.latent_codecs.LatentCodec`)."""

    latent_codec: latent_codecs.LatentCodec
    # state-dict key prefixes of an earlier layout -> the current ones (first match wins)
    renamed_prefixes: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def renamed_keys(cls, state: MutableMapping[str, Tensor], prefix: str = "") -> None:
        """Rename, in place, the keys of ``state`` (under ``prefix``) that an earlier layout of
        this model used (:attr:`renamed_prefixes`) to the current ones."""
        for key in [k for k in state if k.startswith(prefix)]:
            name = key[len(prefix) :]
            for old, new in cls.renamed_prefixes:
                if name.startswith(old):
                    state[prefix + new + name[len(old) :]] = state.pop(key)
                    break

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        self.renamed_keys(state_dict, prefix)  # before the children read their keys
        super()._load_from_state_dict(state_dict, prefix, *args)

    def aux_loss(self) -> Tensor:
        """The entropy models' auxiliary loss (it trains the factorized priors' quantiles only)."""
        return latent_codecs.aux_loss(self)

    def update_tables(self) -> None:
        """Build the integer CDF tables once, after training (they travel with the state_dict)."""
        latent_codecs.update_tables(self)
