"""The SOAP optimizer (``train/soap.py``): Adam when nothing is preconditioned, orthonormal
eigenbases, and faster than Adam where the curvature is not axis-aligned."""

from __future__ import annotations

import torch

from neurocodec.train.soap import SOAP, _rotate


def _fit(opt_factory, steps: int, seed: int = 0) -> float:
    """Least squares ``|A W B - C|^2`` with ill-conditioned, rotated ``A`` and ``B``."""
    g = torch.Generator().manual_seed(seed)

    def conditioned(n: int) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
        return q @ torch.diag(torch.logspace(0, 1.5, n)) @ q.T

    a, b = conditioned(8), conditioned(6)
    c = torch.randn(8, 6, generator=g) * 10
    w = torch.zeros(8, 6, requires_grad=True)
    opt = opt_factory([w])
    for _ in range(steps):
        loss = ((a @ w @ b - c) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(((a @ w.detach() @ b - c) ** 2).mean())


def test_without_preconditioning_it_is_adam():
    torch.manual_seed(0)
    grads = [torch.randn(5, 3) for _ in range(20)]
    p_soap = torch.nn.Parameter(torch.ones(5, 3))
    p_adam = torch.nn.Parameter(torch.ones(5, 3))
    soap = SOAP([p_soap], lr=0.01, betas=(0.9, 0.99), eps=1e-12, max_precond_dim=0)
    adam = torch.optim.Adam([p_adam], lr=0.01, betas=(0.9, 0.99), eps=1e-12)
    p_soap.grad = grads[0]
    soap.step()  # the first step only initializes the preconditioner
    assert torch.equal(p_soap.data, torch.ones(5, 3))
    for grad in grads[1:]:
        p_soap.grad, p_adam.grad = grad.clone(), grad.clone()
        soap.step()
        adam.step()
    torch.testing.assert_close(p_soap.data, p_adam.data, rtol=1e-5, atol=1e-6)


def test_bases_stay_orthonormal_and_rotations_invert():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(4, 3, 3, 3))  # a conv weight: one basis per dimension
    opt = SOAP([p], precondition_frequency=2)
    for _ in range(7):
        p.grad = torch.randn_like(p)
        opt.step()
    bases = opt.state[p]["q"]
    assert [q.shape for q in bases] == [(4, 4), (3, 3), (3, 3), (3, 3)]
    for q in bases:
        torch.testing.assert_close(q.T @ q, torch.eye(len(q)), atol=1e-5, rtol=0)
    t = torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(_rotate(_rotate(t, bases), bases, back=True), t, atol=1e-5, rtol=0)


def test_faster_than_adam_on_rotated_curvature():
    for seed in range(3):
        adam = _fit(lambda ps: torch.optim.Adam(ps, lr=0.05), 300, seed)
        soap = _fit(lambda ps: SOAP(ps, lr=0.05, betas=(0.95, 0.95), precondition_frequency=5), 300, seed)
        assert soap < 0.5 * adam, (seed, soap, adam)
