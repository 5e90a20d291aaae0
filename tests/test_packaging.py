"""The torch-free part: `pip install .` declares none of the pipeline's packages, and predict and serve run without
them; the experiment loop imports only what it uses."""

import json
import re
import subprocess
import sys
import tomllib

import httpx
import pytest

from conftest import REPO_ROOT, accuracy, mixed_drawings
from servers import serve_process

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
# Importable names of what only the pipeline and the tests use.
PIPELINE_MODULES = ("torch", "torchvision", "onnx", "sklearn", "dvc", "dvclive", "yaml", "tqdm", "requests",
                    "pytest", "httpx", "selenium")
# `python -c WITHOUT_PIPELINE args...` is `carsketch args...` where importing any of PIPELINE_MODULES fails.
WITHOUT_PIPELINE = ("import sys\n"
                    f"sys.modules.update(dict.fromkeys({PIPELINE_MODULES!r}))\n"
                    "from carsketch.cli import main\n"
                    "sys.exit(main(sys.argv[1:]))")


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_the_base_install_is_what_predict_needs_and_the_extras_the_rest():
    assert names(PYPROJECT["dependencies"]) == {"numpy", "onnxruntime", "pillow", "scipy"}
    extras = {name: names(requirements) for name, requirements in PYPROJECT["optional-dependencies"].items()}
    assert {"fastapi", "uvicorn"} <= extras["serve"] and not {"torch", "scikit-learn"} & extras["serve"]
    assert {"torch", "torchvision", "dvc", "dvclive", "scikit-learn", "onnx"} <= extras["pipeline"]


def test_predict_runs_without_any_pipeline_package(model_path, tmp_path):
    drawings, truth = mixed_drawings(10, seed=9100)
    (tmp_path / "drawings.ndjson").write_text("".join(json.dumps({"drawing": d}) + "\n" for d in drawings))
    result = subprocess.run([sys.executable, "-c", WITHOUT_PIPELINE, "predict", "--json", "--model", str(model_path),
                             str(tmp_path / "drawings.ndjson")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert accuracy([json.loads(line)["label"] for line in result.stdout.splitlines()], truth) == 1


@pytest.mark.slow
def test_serve_runs_without_any_pipeline_package(model_path):
    drawings, truth = mixed_drawings(4, seed=9200)
    without_pipeline = (sys.executable, "-c", WITHOUT_PIPELINE)
    with serve_process(model_path, "--no-collect", command=without_pipeline) as (_, url):
        assert httpx.get(f"{url}/api/health").json()["status"] == "ok"
        results = httpx.post(f"{url}/api/predict", json={"drawings": drawings}).json()["results"]
    assert accuracy([result["label"] for result in results], truth) == 1


def test_the_experiment_loop_imports_only_what_it_uses():
    """train with a frozen backbone never builds it, so needs no torchvision; evaluate runs the ONNX model, no torch."""
    train = ("import sys, numpy, stages.train\n"
             "from carsketch.model import build_trained_part\n"
             "from carsketch.training import fit\n"
             "features = numpy.random.default_rng(0).normal(size=(20, 1280)).astype(numpy.float32)\n"
             "fit(build_trained_part('unused', 0), features, features[:, 0] > 0, 1, 8, 1e-3, 0, 'cosine')\n"
             "print('torchvision' in sys.modules)")
    evaluate = "import sys, stages.evaluate; print('torch' in sys.modules)"
    for code in (train, evaluate):
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
        assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr
