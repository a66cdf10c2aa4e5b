"""How much the reproduction's numbers move with the CPU's kernel paths and the thread count.

    python benchmarks/spread.py [--configs capped,1-thread] [--reference WORK] [--keep DIR]

Reruns ``featx reproduce`` (the offline run on the shipped flower photos, or whatever
``featx reproduce`` finds) in fresh work folders under other kernel paths and thread counts,
the way another processor would run it:

- ``capped``: ``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41`` (torch's and oneDNN's
  portable kernels: what a CPU without AVX2/AVX-512 picks);
- ``1-thread``: ``OMP_NUM_THREADS=1`` (reductions split differently);
- ``default``: as this machine runs it.

``--reference WORK`` takes the rows of a finished run's work folder (e.g.
``work/reproduce/flowers-demo-*``) as the default configuration instead of running it again.
Prints each row's number under every configuration, its spread (max - min) in points and in
test images, and ``figure:`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "default": {},
    "capped": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "1-thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def rows_of(work: Path) -> dict[str, tuple[float, int]]:
    """{row: (number in %, test images)} from a reproduce work folder's finished rows."""
    out = {}
    for path in sorted(work.rglob("rows/*.json")):
        m = json.loads(path.read_text())["metrics"]
        value = m.get("top1") if m.get("metric") == "accuracy" else m.get("mAP")
        if value is not None:
            out[path.stem] = (100 * value, int(m["n_images"]))
    return out


def run(name: str, root: Path) -> tuple[dict[str, tuple[float, int]], float]:
    work, reports = root / name, root / f"{name}-reports"
    env = {**os.environ, **CONFIGS[name]}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "featx", "-q", "reproduce", "--work", str(work),
                    "--reports", str(reports)], env=env, check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    return rows_of(work), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="capped,1-thread")
    ap.add_argument("--reference", type=Path, help="a finished default run's work folder")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="featx-spread-"))
    root.mkdir(parents=True, exist_ok=True)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    results: dict[str, dict[str, tuple[float, int]]] = {}
    if args.reference:
        results["default"] = rows_of(args.reference)
        names = [n for n in names if n != "default"]
    for name in names:
        results[name], seconds = run(name, root)
        print(f"{name}: {seconds / 60:.1f} min ({', '.join(f'{k}={v}' for k, v in CONFIGS[name].items()) or 'as this machine'})")
    columns = list(results)
    rows = sorted(set().union(*(r.keys() for r in results.values())))
    print(f"\n{'row':<34}" + "".join(f"{c:>10}" for c in columns) + f"{'spread':>9}{'images':>8}")
    worst_points, worst_images = 0.0, 0.0
    for row in rows:
        values = [results[c].get(row) for c in columns]
        have = [v for v in values if v is not None]
        spread = max(v[0] for v in have) - min(v[0] for v in have)
        images = spread * have[0][1] / 100
        worst_points, worst_images = max(worst_points, spread), max(worst_images, images)
        print(f"{row:<34}" + "".join(f"{v[0]:>10.1f}" if v else f"{'-':>10}" for v in values)
              + f"{spread:>9.1f}{images:>8.1f}")
    print()
    print(f"figure: reproduce_spread_max = {worst_points:.1f} points = {worst_images:.1f} test "
          "images (goal 1 image)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
