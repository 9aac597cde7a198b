"""What the capped, shared onnxruntime arena (``--onnx-memory-mb``) costs a model call.

Each mode runs in a fresh process (the arena is registered once per process): A, every
session with onnxruntime's own arena (``--onnx-memory-mb 0``); B, every session on the
shared arena capped at 1 GiB (the default is half the machine). The model is y = a + b,
a - b on [32, 1024] FP32 (tests/builders.add_sub_onnx), called in-process through
Ferry's ONNX runtime; rounds are interleaved and the medians compared.

Usage: python -m bench.onnx_arena [--rounds 5] [--calls 20000]"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(model: Path, capped: bool, calls: int) -> float:
    """Seconds for ``calls`` model calls after 500 warm-up calls (run in this process)."""
    import numpy as np

    from ferry.config import ModelConfig
    from ferry.runtimes import onnx

    if capped:
        onnx.limit_memory(2**30)
    runtime = onnx.load(model, ModelConfig())
    inputs = {name: np.ones((32, 1024), np.float32) for name in ("INPUT0", "INPUT1")}
    for _ in range(500):
        runtime.predict(inputs)
    started = time.perf_counter()
    for _ in range(calls):
        runtime.predict(inputs)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--child", choices=["A", "B"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child == "B", args.calls)))
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.builders import add_sub_onnx

    times: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = add_sub_onnx(Path(tmp) / "add_sub.onnx", width=1024)
        for _ in range(args.rounds):
            for mode in ("A", "B"):
                command = [sys.executable, "-m", "bench.onnx_arena", "--child", mode, "--model", str(model)]
                command += ["--calls", str(args.calls)]
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
                times[mode].append(json.loads(done.stdout))
    a, b = (statistics.median(times[m]) for m in ("A", "B"))
    print(f"{args.calls} calls, {args.rounds} interleaved rounds, medians:")
    print(f"  A: own arenas          {a * 1e6 / args.calls:7.1f} us/call")
    print(f"  B: shared capped arena {b * 1e6 / args.calls:7.1f} us/call")
    print(f"  B/A time: x{b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
