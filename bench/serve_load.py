"""Load benchmark of `python -m carsketch serve`: single-drawing requests from concurrent clients on loopback.

    python -m bench.serve_load [--model PATH] [--requests 2000] [--clients 16] [--label]

It starts the real command on a free loopback port, has each client send its requests one after another on
its own keep-alive connection until all are sent, and prints the error count, requests/s, p50 and p99
latency, and the ratio to `predict`'s throughput on the same drawings (rasterising each, then one
predict_proba over all of them, as the predict command does), measured in this process while the server
idles, taking turns with the load. Without a model file it uses random weights at params.yaml's
image_size: the figures are about speed, not accuracy, and it says which model it used. Clients and
server share this machine's cores.

With --label the requests label drawings instead (POST /api/drawings, car and not_car in turn, into a file in a
temporary folder, with the token the server printed), taking turns with as many predictions on the same server; it
reports both rates, and checks that the file holds a whole line for every 201.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from bench.project import REPO_ROOT
from carsketch.strokes import strokes_to_bitmap
from carsketch.export import save_onnx
from carsketch.inference.onnx_model import OnnxModel
from carsketch.checkpoint import model_config
from carsketch.model import build_classifier
from carsketch.paths import ONNX_MODEL_FILE
from tests.models import export_classifier
from tests.servers import printed_token, serve_process


def scribbles(count: int, seed: int = 0) -> list:
    """Drawings the size of a typical Quick, Draw! one (5 strokes of 4 to 20 points, 0-255), seeded."""
    rng = np.random.default_rng(seed)
    drawings = []
    for _ in range(count):
        strokes = []
        for _ in range(5):
            walk = np.cumsum(rng.normal(0, 25, (2, rng.integers(4, 21))), axis=1) + rng.uniform(0, 255, (2, 1))
            strokes.append(np.round(np.clip(walk, 0, 255)).astype(int).tolist())
        drawings.append(strokes)
    return drawings


async def load(url: str, drawings: list, clients: int, token: str | None = None) -> tuple[list[float], int, float]:
    """Send each drawing once, from `clients` concurrent clients, to be classified or, with the labelling `token`,
    labelled car and not_car in turn: (latencies in s, errors, wall time in s)."""
    labels = token is not None
    latencies, errors, pending = [], 0, iter(enumerate(drawings))

    async def client(session):
        nonlocal errors
        for number, drawing in pending:  # shared: each drawing goes to whichever client is free
            start = time.perf_counter()
            try:
                if labels:
                    response = await session.post("/api/drawings", json={"drawing": drawing,
                                                                         "label": ("car", "not_car")[number % 2]})
                else:
                    response = await session.post("/api/predict", json={"drawing": drawing})
                errors += response.status_code != (201 if labels else 200)
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients),
                                 headers={"Authorization": f"Bearer {token}"} if labels else None) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


def predict_seconds(model: OnnxModel, drawings: list) -> tuple[float, float]:
    """(wall, CPU) seconds `predict` takes over these drawings: rasterise each, one predict_proba over all."""
    start, cpu_start = time.perf_counter(), time.process_time()
    model.predict_proba(np.stack([strokes_to_bitmap(drawing) for drawing in drawings]))
    return time.perf_counter() - start, time.process_time() - cpu_start


def cpu_seconds(pid: int) -> float:
    """The CPU time, user and system, that a process has used so far in all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def random_model(folder: Path) -> Path:
    """A model with random weights at params.yaml's image_size: as fast as a trained one, and as slow."""
    image_size = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["image_size"]
    path = folder / "random_model.onnx"
    config = model_config(image_size=image_size, trainable_blocks=0, weights="random",
                          categories={"car": ["car"], "not_car": ["apple"]})
    save_onnx(export_classifier(build_classifier(None), config), path)
    return path


def benchmark(model_path: Path, requests: int, clients: int, rounds: int = 4) -> dict:
    """The load figures for `requests` single-drawing requests from `clients` clients, and predict's.

    Serving and predict take turns over `rounds` shares of the drawings, so that a change in what else
    runs on the machine slows both alike. CPU time per drawing (the server's, predict's) is a cross-check
    that does not depend on what else runs.
    """
    drawings = scribbles(requests + clients)
    warm_up, drawings = drawings[:clients], drawings[clients:]
    model = OnnxModel(model_path)
    latencies, errors, served, predicted = [], 0, np.zeros(2), np.zeros(2)  # (wall, CPU) seconds
    with serve_process(model_path, "--no-collect") as (process, url):
        asyncio.run(load(url, warm_up, clients))
        predict_seconds(model, warm_up)
        for share in range(rounds):
            part = drawings[share::rounds]
            cpu_start = cpu_seconds(process.pid)
            part_latencies, part_errors, seconds = asyncio.run(load(url, part, clients))
            served += seconds, cpu_seconds(process.pid) - cpu_start
            latencies, errors = latencies + part_latencies, errors + part_errors
            predicted += predict_seconds(model, part)
    return {"requests": requests, "clients": clients, "errors": errors, "requests_per_s": requests / served[0],
            "p50_ms": 1000 * np.percentile(latencies, 50), "p99_ms": 1000 * np.percentile(latencies, 99),
            "predict_per_s": requests / predicted[0], "ratio": predicted[0] / served[0],
            "serve_cpu_ms": 1000 * served[1] / requests, "predict_cpu_ms": 1000 * predicted[1] / requests}


def label_benchmark(model_path: Path, requests: int, clients: int, rounds: int = 4) -> dict:
    """Labels/s and latency for `requests` single-drawing labels from `clients` clients, taking turns with as many
    predictions on the same server; and the lines in the file against the labels acknowledged."""
    drawings = scribbles(requests + clients)
    warm_up, drawings = drawings[:clients], drawings[clients:]
    with tempfile.TemporaryDirectory() as folder:
        collected = Path(folder) / "drawings.ndjson"
        labelled, predicted = {"latencies": [], "errors": 0, "seconds": 0.0}, {"errors": 0, "seconds": 0.0}
        with serve_process(model_path, "--collect", str(collected)) as (process, url):
            token = printed_token(process)
            asyncio.run(load(url, warm_up, clients))
            for share in range(rounds):
                part = drawings[share::rounds]
                latencies, errors, seconds = asyncio.run(load(url, part, clients, token))
                labelled["latencies"] += latencies
                labelled["errors"] += errors
                labelled["seconds"] += seconds
                _, errors, seconds = asyncio.run(load(url, part, clients))
                predicted["errors"] += errors
                predicted["seconds"] += seconds
        lines = collected.read_text().splitlines()
    whole = sum(1 for line in lines if json.loads(line)["label"] in ("car", "not_car"))
    return {"requests": requests, "clients": clients, "errors": labelled["errors"] + predicted["errors"],
            "labels_per_s": requests / labelled["seconds"], "predictions_per_s": requests / predicted["seconds"],
            "p50_ms": 1000 * np.percentile(labelled["latencies"], 50),
            "p99_ms": 1000 * np.percentile(labelled["latencies"], 99), "lines": len(lines), "whole_lines": whole,
            "acknowledged": requests - labelled["errors"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / ONNX_MODEL_FILE, metavar="PATH",
                        help=f"the model to serve (default: {ONNX_MODEL_FILE}; random weights where it is missing)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--label", action="store_true", help="label drawings (POST /api/drawings) instead")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        model_path = args.model
        if model_path.is_file():
            print(f"model: {model_path}")
        else:
            model_path = random_model(Path(folder))
            print(f"model: random weights (no model at {args.model})")
        if args.label:
            figures = label_benchmark(model_path, args.requests, args.clients)
        else:
            figures = benchmark(model_path, args.requests, args.clients)
    if args.label:
        print(f"{figures['requests']} labels from {figures['clients']} clients on loopback: {figures['errors']} errors, "
              f"{figures['labels_per_s']:.1f} labels/s (predictions on the same drawings: "
              f"{figures['predictions_per_s']:.1f}/s), p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms; "
              f"the file: {figures['lines']} lines, {figures['whole_lines']} whole, for {figures['acknowledged']} "
              f"labels acknowledged")
        return 1 if figures["errors"] or figures["whole_lines"] != figures["acknowledged"] else 0
    print(f"{figures['requests']} single-drawing requests from {figures['clients']} clients on loopback: "
          f"{figures['errors']} errors, {figures['requests_per_s']:.1f} requests/s, "
          f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms")
    print(f"predict on the same drawings: {figures['predict_per_s']:.1f} drawings/s; "
          f"serve / predict = {figures['ratio']:.2f}")
    print(f"CPU time per drawing: serve {figures['serve_cpu_ms']:.0f} ms, predict {figures['predict_cpu_ms']:.0f} ms")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
