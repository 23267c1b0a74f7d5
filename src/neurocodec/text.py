"""Text encoders for text-guided codecs (the video VAE's optional guidance), offline.

A text-guided model names the encoder it was trained with (its architecture's ``text_model``),
because the decoder must embed the file's caption the same way. The encoders:

- ``"static"``: the static embeddings of ``tokenlearn-static-model`` (``pip install
  'neurocodec[text]'``; a 7 MB wheel that holds its vectors, so nothing is downloaded at run
  time): one unit vector of :data:`STATIC_TEXT_DIM` values a caption, as a ``(1, 64)`` tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neurocodec.errors import ConfigError

__all__ = ["STATIC_TEXT_DIM", "TEXT_MODELS", "text_encoder"]

STATIC_TEXT_DIM = 64
TEXT_MODELS = {"static": STATIC_TEXT_DIM}  # name -> embedding size


def text_encoder(name: str) -> Callable[[str], torch.Tensor]:
    """The encoder ``name`` (:data:`TEXT_MODELS`): ``str -> (L, dim)`` float32 tensor. Raises
    :class:`~neurocodec.errors.ConfigError` for an unknown name or when it is not installed."""
    if name not in TEXT_MODELS:
        raise ConfigError(f"unknown text model {name!r}: known ones are {', '.join(TEXT_MODELS)}")
    try:
        import static_model
    except ImportError:
        raise ConfigError(
            "the 'static' text model needs tokenlearn-static-model: pip install 'neurocodec[text]'"
        ) from None

    def encode(text: str) -> torch.Tensor:
        return torch.tensor(static_model.get_embeddings(text), dtype=torch.float32).reshape(1, -1)

    return encode
