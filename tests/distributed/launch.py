"""Launching featx on several processes in a test: under ``torchrun`` (its elastic agent,
as users start it) or as bare ranks (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set by hand,
so a test can kill, stop or misconfigure one rank and watch the others)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    out.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return out


def torchrun(*args, nproc: int = 2, cwd: Path | None = None, timeout: float = 180,
             extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m featx -q ARGS`` (a c10d rendezvous on
    the loopback)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "featx", "-q", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env(**(extra_env or {})), capture_output=True,
                          text=True, timeout=timeout)


def nodes(*args, count: int = 2, cwd: Path | None = None, timeout: float = 180
          ) -> list[subprocess.CompletedProcess]:
    """``count`` torchrun processes, one rank each, as on ``count`` machines: ``--nnodes``
    with a c10d rendezvous on 127.0.0.1."""
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={count}",
           "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
           "--rdzv-id=featx-test", "-m", "featx", "-q", *map(str, args)]
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return done


def ranks(argv_of, world: int = 2, cwd: Path | None = None, port: int | None = None,
          extra_env: dict[str, str] | None = None, only=None) -> list[subprocess.Popen]:
    """Bare ranks 0..world-1 (or those in ``only``), rank r running ``featx -q argv_of(r)``."""
    port = port or free_port()
    procs = []
    for r in (range(world) if only is None else only):
        e = env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port), **(extra_env or {}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "featx", "-q", *map(str, argv_of(r))], cwd=cwd, env=e,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*.h5"))}


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, by name."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def attributes(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
