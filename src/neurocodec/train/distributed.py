"""Data-parallel training under ``torchrun``: the same command, one process per device.

``torchrun --nproc-per-node K -m neurocodec train ...`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) runs K copies of the
trainer. :func:`join` sees those variables, starts the process group (NCCL between GPUs, gloo
on the CPU) and gives each process its GPU (``cuda:LOCAL_RANK``). The trainer then wraps its
model in :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients
across processes, and:

- every process draws the same global batch of ``K x batch_size`` crops from the one seeded
  generator and trains on its own ``batch_size`` rows of it, so K processes see exactly the
  crops one process with ``K x batch_size`` would;
- the quantization noise is drawn from a per-process seed, and every process's RNG states go
  into the checkpoint, so a resumed run with the same K continues exactly;
- only process 0 writes the log, the checkpoint and the progress bar; the logged loss, bpp
  and PSNR are means over the processes; stopping at ``--time-limit`` is decided together.

Without those variables (or with ``WORLD_SIZE=1``) nothing here does anything: :data:`SOLO`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["SOLO", "World", "join", "leave"]


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes of a run."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Process 0: the one that writes."""
        return self.rank == 0

    def rows(self, batch_size: int) -> range:
        """This process's rows of the global batch of ``size x batch_size``."""
        return range(self.rank * batch_size, (self.rank + 1) * batch_size)

    def mean(self, stats: dict[str, float]) -> dict[str, float]:
        """``stats`` averaged over the processes (every process calls it with the same keys)."""
        if not self.distributed:
            return stats
        keys = sorted(stats)
        values = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(values)
        return {k: float(v) / self.size for k, v in zip(keys, values.tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds in any process (a decision all of them then take)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self._device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        out: list[object] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo takes CPU ones
        return (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )


SOLO = World()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer (set by torchrun)") from None


def join(device: str) -> tuple[World, str]:
    """This process's :class:`World` and training device, starting the process group when the
    environment describes a run of several processes; ``(SOLO, device)`` otherwise.

    Under a launcher, ``device`` "cuda" (or "cuda:N") becomes ``cuda:LOCAL_RANK``.
    """
    size = _env_int("WORLD_SIZE") or 1
    if size <= 1:
        return SOLO, device
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None:
        raise ValueError("WORLD_SIZE is set without RANK: start several processes with torchrun")
    local_rank = rank if local_rank is None else local_rank
    kind = torch.device(device).type
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {rank} wants GPU {local_rank}, but {torch.cuda.device_count()} GPUs are visible"
            )
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif kind != "cpu":
        raise ValueError(f"data-parallel training runs on cpu or cuda, not {device}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    if dist.get_world_size() != size or dist.get_rank() != rank:
        raise ValueError("the process group disagrees with RANK/WORLD_SIZE")
    return World(rank=rank, size=size), device


def leave(world: World) -> None:
    """Ends the process group :func:`join` started (after every process has got here)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
