"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner (Vyas et al., 2024, "SOAP:
Improving and Stabilizing Shampoo using Adam"), written from the paper.

For a tensor parameter with gradient ``G``, every dimension ``i`` of size ``2..max_precond_dim``
keeps ``L_i``, an exponential average (rate ``beta2``) of ``G`` times itself contracted over every
other dimension, and ``Q_i``, an orthonormal basis of ``L_i``'s eigenvectors. Adam's two moments
live in the rotated space (``G`` multiplied by ``Q_i^T`` along each dimension); the normalized
step is rotated back. ``Q_i`` is refreshed every ``precondition_frequency`` steps by one power
iteration and a QR decomposition (eigenvalues estimated from the current basis, which also
reorders the second moment); the very first step only initializes ``L`` and ``Q`` (by ``eigh``).
A dimension outside the size bound, and every 1-D parameter, is left unrotated, so a group with
``max_precond_dim=0`` is plain Adam. Weight decay is decoupled (AdamW).

The overfitted ``c3`` codec fits its tiny networks with it (as Cool-chic 5 does), its latents
with the Adam special case.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _rotate(t: Tensor, bases: list[Tensor | None], back: bool = False) -> Tensor:
    """``t`` with each dimension ``i`` multiplied by ``bases[i]^T`` (``back``: by ``bases[i]``)."""
    for i, q in enumerate(bases):
        if q is not None:
            t = torch.movedim(torch.tensordot(t, q, dims=([i], [1 if back else 0])), -1, i)
    return t


class SOAP(torch.optim.Optimizer):
    """SOAP (see the module docstring). Options per parameter group: ``lr``, ``betas``, ``eps``,
    ``weight_decay`` (decoupled), ``precondition_frequency``, ``max_precond_dim``."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.95, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        precondition_frequency: int = 10,
        max_precond_dim: int = 256,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "precondition_frequency": precondition_frequency,
            "max_precond_dim": max_precond_dim,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _accumulate(state: dict, grad: Tensor, beta: float) -> None:
        dims = range(grad.dim())
        for i, gg in enumerate(state["gg"]):
            if gg is not None:
                others = [d for d in dims if d != i]
                gg.lerp_(torch.tensordot(grad, grad, dims=(others, others)), 1 - beta)

    @staticmethod
    def _refresh(state: dict) -> None:
        """One power iteration + QR per basis, reordering the second moment by the estimated
        eigenvalues (largest first). The first moment is rotated into the new basis."""
        exp_avg = _rotate(state["exp_avg"], state["q"], back=True)
        for i, (gg, q) in enumerate(zip(state["gg"], state["q"], strict=True)):
            if gg is None:
                continue
            order = torch.argsort(torch.diag(q.T @ gg @ q), descending=True)
            state["exp_avg_sq"] = state["exp_avg_sq"].index_select(i, order)
            state["q"][i] = torch.linalg.qr(gg @ q[:, order]).Q.contiguous()
        state["exp_avg"] = _rotate(exp_avg, state["q"])

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    bound = group["max_precond_dim"]
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(grad)
                    state["exp_avg_sq"] = torch.zeros_like(grad)
                    state["gg"] = [
                        grad.new_zeros(n, n) if grad.dim() > 1 and 1 < n <= bound else None
                        for n in grad.shape
                    ]
                    self._accumulate(state, grad, beta2)
                    # eigh's eigenvalues ascend: flip to largest first, as _refresh orders them
                    state["q"] = [
                        None if gg is None else torch.linalg.eigh(gg)[1].flip(1) for gg in state["gg"]
                    ]
                    continue  # the first gradient only initializes the preconditioner
                state["step"] += 1
                t = state["step"]
                rotated = _rotate(grad, state["q"])
                state["exp_avg"].lerp_(rotated, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(rotated, rotated, value=1 - beta2)
                step_size = group["lr"] * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
                normalized = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + group["eps"])
                p.add_(_rotate(normalized, state["q"], back=True), alpha=-step_size)
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                self._accumulate(state, grad, beta2)
                if t % group["precondition_frequency"] == 0:
                    self._refresh(state)
