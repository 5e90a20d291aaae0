"""The predict command and classify(): batching, output formats, and bad inputs that do not stop the rest."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import REPO_ROOT
from carsketch import predict
from carsketch.cli import main as carsketch_main
from carsketch.errors import PipelineError
from carsketch.inference import OnnxModel


@pytest.fixture
def inputs(tmp_path):
    """One good input of each kind: a PNG, .npy files in both shapes and an .ndjson file of two drawings."""
    image = Image.new("L", (120, 90), 255)
    ImageDraw.Draw(image).rectangle((20, 20, 100, 70), outline=0, width=3)
    image.save(tmp_path / "box.png")
    bitmaps = np.zeros((2, 784), np.uint8)
    bitmaps[:, 300:330] = 255
    np.save(tmp_path / "rows.npy", bitmaps)
    np.save(tmp_path / "squares.npy", bitmaps.reshape(2, 28, 28))
    lines = [{"drawing": [[[0, 255], [0, 0]]]}, {"drawing": [[[0, 0], [0, 255]]]}]
    (tmp_path / "strokes.ndjson").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return [tmp_path / name for name in ("box.png", "rows.npy", "squares.npy", "strokes.ndjson")]


def run_predict(*args):
    return subprocess.run([sys.executable, "-m", "carsketch", "predict", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_classify_labels_every_drawing_in_one_batch(model_path, inputs, monkeypatch):
    calls, original = [], OnnxModel.predict_proba

    def counting_predict_proba(self, bitmaps, **kwargs):
        calls.append(len(bitmaps))
        return original(self, bitmaps, **kwargs)

    monkeypatch.setattr(OnnxModel, "predict_proba", counting_predict_proba)
    results, errors = predict.classify(inputs, model_path)
    assert errors == [] and calls == [7]
    assert [(result["input"], result["index"]) for result in results] == [
        (str(inputs[0]), None), (str(inputs[1]), 0), (str(inputs[1]), 1), (str(inputs[2]), 0),
        (str(inputs[2]), 1), (str(inputs[3]), 1), (str(inputs[3]), 2)]
    for result in results:
        assert 0 <= result["car_probability"] <= 1
        assert result["label"] == ("car" if result["car_probability"] >= 0.5 else "not_car")


@pytest.mark.parametrize("threshold, label", [(0.0, "car"), (1.0, "not_car")])
def test_threshold_overrides_the_models(model_path, inputs, threshold, label):
    results, _ = predict.classify(inputs, model_path, threshold=threshold)
    assert {result["label"] for result in results} == {label}


def test_the_table_names_each_drawing(model_path, inputs, capsys):
    assert carsketch_main(["predict", *map(str, inputs[1:]), "--model", str(model_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["input", "P(car)", "label"]
    assert [line.rsplit(maxsplit=2)[0] for line in lines[1:]] == [
        f"{inputs[1]} row 0", f"{inputs[1]} row 1", f"{inputs[2]} row 0", f"{inputs[2]} row 1",
        f"{inputs[3]} line 1", f"{inputs[3]} line 2"]


def test_bad_inputs_get_a_line_each_and_the_rest_is_still_classified(model_path, inputs, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 10, 10), np.uint8))
    (tmp_path / "bad.ndjson").write_text('{"drawing": [[[0, 9], [0, 9]]]}\n{"drawing": \n{"drawing": [[[], []]]}\n')
    bad = ["broken.png", "blank.png", "wrong.npy", "bad.ndjson", "missing.png"]
    result = run_predict("--json", "--model", model_path, *inputs, *(tmp_path / name for name in bad))
    assert result.returncode == 1
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(output["input"]).name, output["index"]) for output in outputs] == [
        ("box.png", None), ("rows.npy", 0), ("rows.npy", 1), ("squares.npy", 0), ("squares.npy", 1),
        ("strokes.ndjson", 1), ("strokes.ndjson", 2), ("bad.ndjson", 1)]
    assert all(set(output) == {"input", "index", "car_probability", "label"} for output in outputs)
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'broken.png'}: not an image file (not in any format Pillow reads)",
        f"error: {tmp_path / 'blank.png'}: empty drawing (blank image)",
        f"error: {tmp_path / 'wrong.npy'}: expected bitmaps of shape (N, 784) or (N, 28, 28), not (4, 10, 10)",
        f"error: {tmp_path / 'bad.ndjson'} line 2: malformed JSON (Expecting value at column 1)",
        f"error: {tmp_path / 'bad.ndjson'} line 3: empty drawing (no points)",
        f"error: {tmp_path / 'missing.png'}: no such file"]


def test_a_missing_model_says_to_run_dvc_repro(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        carsketch_main(["predict", "--model", str(tmp_path / "none.pth"), *map(str, inputs)])
    assert exit_info.value.code == 1
    output = capsys.readouterr()
    assert output.out == "" and output.err.splitlines() == [
        f"error: model file {tmp_path / 'none.pth'} not found: run `dvc repro` first to train it"]
    with pytest.raises(PipelineError, match="dvc repro"):
        predict.classify(inputs, tmp_path / "none.pth")


def test_a_threshold_outside_0_to_1_is_a_usage_error(inputs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        carsketch_main(["predict", str(inputs[0]), "--threshold", "1.5"])
    assert exit_info.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_stdin_is_read_as_ndjson_and_results_come_before_the_input_ends(model_path):
    line = json.dumps({"drawing": [[[0, 255], [0, 0]]]}) + "\n"
    process = subprocess.Popen([sys.executable, "-m", "carsketch", "predict", "--json", "--model", str(model_path), "-"],
                               cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        process.stdin.write(line * predict.INFERENCE_BATCH)  # one full batch; stdin stays open
        process.stdin.flush()
        first = json.loads(process.stdout.readline())
        assert (first["input"], first["index"]) == ("-", 1)
        process.stdin.write(line + "not json\n")
        process.stdin.close()
        rest = process.stdout.read().splitlines()
        assert process.wait(timeout=60) == 1
    finally:
        process.kill()
    assert len(rest) == predict.INFERENCE_BATCH and json.loads(rest[-1])["index"] == predict.INFERENCE_BATCH + 1


def test_large_npy_is_classified_in_batches_of_the_engine(model_path, tmp_path, monkeypatch):
    bitmaps = np.zeros((predict.INFERENCE_BATCH * 2 + 5, 784), np.uint8)
    bitmaps[:, 300:330] = 255
    bitmaps[7] = 0
    np.save(tmp_path / "many.npy", bitmaps)
    sizes, original = [], OnnxModel.predict_proba

    def counting_predict_proba(self, rows, **kwargs):
        sizes.append(len(rows))
        return original(self, rows, **kwargs)

    monkeypatch.setattr(OnnxModel, "predict_proba", counting_predict_proba)
    stream = predict.stream_classify([tmp_path / "many.npy"], model_path)
    assert next(stream) == f"{tmp_path / 'many.npy'} row 7: empty drawing (blank bitmap)"
    results = list(stream)
    assert sizes == [predict.INFERENCE_BATCH, predict.INFERENCE_BATCH, 4]
    assert [result["index"] for result in results] == [row for row in range(len(bitmaps)) if row != 7]
    expected = OnnxModel(model_path).predict_proba(bitmaps[:10])
    assert np.allclose([r["car_probability"] for r in results[:9]], np.delete(expected, 7), atol=1e-4)
