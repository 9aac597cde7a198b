"""The in-process ceiling: rows per second of a bare ``session.run`` at its best batch size.

No server can beat this on the same machine with the same thread count, so it is the yard
stick for the compute-bound CNN. Run in a subprocess of its own (``python -m bench.ceiling``)
so no server shares the machine with it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def measure(model: Path, sample: np.ndarray, threads: int, seconds: float) -> dict[int, float]:
    """rows/s for each batch size: the sample row repeated, timed for ``seconds`` after a warm-up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rates: dict[int, float] = {}
    for batch_size in BATCH_SIZES:
        batch = np.repeat(sample[:1], batch_size, axis=0)
        for _ in range(3):
            session.run(None, {input_name: batch})
        rows, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            session.run(None, {input_name: batch})
            rows += batch_size
        rates[batch_size] = rows / elapsed
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--sample", type=Path, required=True, help=".npy file with one input row")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per batch size")
    args = parser.parse_args()
    rates = measure(args.model, np.load(args.sample), args.threads, args.seconds)
    print(json.dumps({str(k): v for k, v in rates.items()}))


if __name__ == "__main__":
    main()
