"""Tests see a registry of their own: the package's shipped weights are hidden unless a test
asks for them (``shipped`` fixture), so what a release ships never changes what a test means."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU the Triton kernels (test_gpu_coder.py) run in Triton's interpreter. Triton reads
# TRITON_INTERPRET when it is first imported, and any test module may import it indirectly
# (torchaudio, the codecs), so it is set here, before every test module.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _hide_shipped_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROCODEC_PACKAGE_WEIGHTS", "0")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests, restored afterwards (the machine is shared; modules
    that time or compare thread counts take it with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's shipped weights, visible (as users see them)."""
    monkeypatch.delenv("NEUROCODEC_PACKAGE_WEIGHTS")
