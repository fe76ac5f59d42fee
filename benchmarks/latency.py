"""Latency of POST /predict on a running server, against the bare model call as baseline.

    python benchmarks/latency.py --url http://127.0.0.1:8000 FILE [FILE ...] [--repeat 20]

Prints, per file, the server-side time the API reports (decode + preprocess + inference)
and the client round trip, as median and 95th percentile; and first, in the same run, the
model alone on an already-prepared input, so the cost of decoding shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np


def post_file(url: str, path: Path) -> tuple[dict, float]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"upload\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url + "/predict", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    return payload, (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> str:
    p95 = float(np.percentile(values, 95))
    return f"median {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms"


def baseline(model_dir: Path, repeat: int) -> None:
    from app.services.saved_model import ServedModel, find_model

    model = ServedModel(find_model(model_dir, "pneumonia"))
    model.warm_up()
    height, width = model.card.input_size
    batch = np.zeros((1, height, width, model.card.channels), dtype=np.float32)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        model.predict(batch)
        times.append((time.perf_counter() - started) * 1000)
    print(f"{'baseline: model only, prepared 64x64 input':<48} {summary(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    args = parser.parse_args()

    baseline(args.model_dir, args.repeat)
    for path in args.files:
        server, client = [], []
        for _ in range(args.repeat):
            payload, round_trip = post_file(args.url, path)
            server.append(payload["elapsed_ms"])
            client.append(round_trip)
        image = payload["image"]
        name = f"{path.name} ({image['width']}x{image['height']} {image['mode']})"
        print(f"{name:<48} server {summary(server)}   round trip {summary(client)}")


if __name__ == "__main__":
    main()
