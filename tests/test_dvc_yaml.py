"""dvc.yaml is the truth: each stage's deps list every project file its code imports, and stages stay apart."""

import functools
import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


def module_of(stage: str) -> str:
    """The module a stage runs: `python -m stages.<name> ...`."""
    return STAGES[stage]["cmd"].split()[2]

# Imports `stages.<name>` in a fresh interpreter, and the project modules it imports inside functions (a stage may
# import torch only where it needs it), and prints the project files it loaded (package __init__s and data files
# read at import time included: the category list is read by carsketch.quickdraw).
_LOADED_FILES = """
import ast, importlib, json, pathlib, sys
module = importlib.import_module(sys.argv[1])
for node in ast.walk(ast.parse(pathlib.Path(module.__file__).read_text())):
    if isinstance(node, ast.ImportFrom) and node.module.startswith("carsketch"):
        importlib.import_module(node.module)
root = pathlib.Path.cwd()
files = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and not path.endswith("__init__.py"):
        resolved = pathlib.Path(path).resolve()
        if resolved.is_relative_to(root / "stages") or resolved.is_relative_to(root / "carsketch"):
            files.add(str(resolved.relative_to(root)))
print(json.dumps(sorted(files)))
"""


@functools.cache
def loaded_files(module: str) -> frozenset[str]:
    output = subprocess.run([sys.executable, "-c", _LOADED_FILES, module], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout
    return frozenset(json.loads(output))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_deps_list_exactly_the_code_the_stage_imports(stage):
    imported = set(loaded_files(module_of(stage)))
    if "carsketch/quickdraw.py" in imported:
        imported.add("carsketch/quickdraw_categories.txt")
    code_deps = {dep for dep in STAGES[stage]["deps"] if dep.startswith(("stages/", "carsketch/"))}
    assert code_deps == imported, f"missing from deps: {imported - code_deps}; listed but not imported: {code_deps - imported}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_imports_another(stage):
    others = {f"{module_of(name).replace('.', '/')}.py" for name in STAGES} - {f"{module_of(stage).replace('.', '/')}.py"}
    assert not loaded_files(module_of(stage)) & others


def test_each_plot_is_declared_once_and_metrics_are_figures():
    declared = [next(iter(plot)) for plot in DVC_YAML["plots"]]
    stage_plots = [next(iter(plot)) if isinstance(plot, dict) else plot
                   for stage in STAGES.values() for plot in stage.get("plots", [])]
    assert len(declared) == len(set(declared)) and not stage_plots
    metrics = {next(iter(metric)) for stage in STAGES.values() for metric in stage.get("metrics", [])}
    assert metrics == {"metrics/data.json", "metrics/train/metrics.json", "metrics/metrics.json"}


# What only predicts and serves: a stage that imported any of it would re-run (and re-train) when the server changes.
INFERENCE_DIR = "carsketch/inference/"
# The ONNX Runtime wrapper: featurize, train, adapt and evaluate run the model through it; that is all stages need.
ONNX_RUNTIME_WRAPPER = "carsketch/inference/onnx_model.py"
# What fetches and prepares the data: none of it may depend on the model or on how it runs.
DATA_STAGES = ("weights", "download", "preprocess")
MODEL_CODE = ("carsketch/model.py", "carsketch/checkpoint.py", "carsketch/trained_model.py", "carsketch/export.py",
              "carsketch/features.py", "carsketch/training.py", "carsketch/sketch.py", "carsketch/batches.py")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_the_server_predict_and_the_readers_are_no_stages_dependency(stage):
    inference = {dep for dep in STAGES[stage]["deps"] if dep.startswith(INFERENCE_DIR)}
    assert inference <= {ONNX_RUNTIME_WRAPPER}


@pytest.mark.parametrize("stage", DATA_STAGES)
def test_the_data_stages_depend_on_no_model_or_inference_code(stage):
    deps = set(STAGES[stage]["deps"])
    assert not deps & {*MODEL_CODE, ONNX_RUNTIME_WRAPPER}
    assert not any(dep.startswith(INFERENCE_DIR) for dep in deps)


def test_featurize_is_not_rerun_for_another_number_of_workers():
    """featurize writes the same bytes in any number of processes (tests/test_distributed.py); train does not."""
    assert "workers" not in STAGES["featurize"]["params"] and "workers" in STAGES["train"]["params"]
