"""The predict command, classify() and OnnxModel.predict_proba against ground truth: the fixture model calls
make_drawings' cars car and the rest not_car, so every result is checked for its label, in the order given."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carsketch.cli import main as carsketch_main
from carsketch.errors import PipelineError
from carsketch.inference import OnnxModel, predict
from carsketch.strokes import strokes_to_bitmap
from conftest import (REPO_ROOT, accuracy, draw_png, labelled_bitmaps, make_bitmaps, make_drawings,
                      mixed_drawings)

# Drawings the fixture model never trained on: each test's ground truth.
SEED = 7000


def mixed_bitmaps(count: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """mixed_drawings' drawings as bitmaps, and which are cars."""
    drawings, truth = mixed_drawings(count, seed)
    return np.array([strokes_to_bitmap(drawing) for drawing in drawings]).reshape(count, 784), truth


@pytest.fixture
def inputs(tmp_path):
    """One input of each kind, with the truth of each drawing in it, in order: PNGs, .npy files in both shapes and an
    .ndjson file."""
    car, other = make_drawings("car", 1, SEED)[0], make_drawings("other", 1, SEED)[0]
    bitmaps, truth = mixed_bitmaps(6)
    np.save(tmp_path / "rows.npy", bitmaps[:3])
    np.save(tmp_path / "squares.npy", bitmaps[3:].reshape(3, 28, 28))
    drawings = make_drawings("other", 2, SEED + 1) + make_drawings("car", 1, SEED + 2)
    (tmp_path / "strokes.ndjson").write_text("".join(json.dumps({"drawing": d}) + "\n" for d in drawings))
    paths = [draw_png(tmp_path / "car.png", car), draw_png(tmp_path / "other.png", other),
             tmp_path / "rows.npy", tmp_path / "squares.npy", tmp_path / "strokes.ndjson"]
    return paths, np.concatenate([[1, 0], truth, [0, 0, 1]])


def run_predict(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carsketch", "predict", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, input=stdin)


def test_the_fixture_model_tells_car_from_not_car_with_a_spread_of_probabilities(model_path):
    bitmaps, truth = labelled_bitmaps(100, SEED)
    probability = OnnxModel(model_path).predict_proba(bitmaps)
    assert probability.shape == (200,) and probability.dtype == np.float32
    assert np.mean((probability >= 0.5) == truth) >= 0.97
    assert np.median(probability[truth == 1]) > 0.9 and np.median(probability[truth == 0]) < 0.1
    assert probability.std() > 0.3  # it answers differently for different drawings


def test_classify_labels_every_input_in_order(model_path, inputs):
    paths, truth = inputs
    results, errors = predict.classify(paths, model_path)
    assert errors == []
    assert [(Path(r["input"]).name, r["index"]) for r in results] == [
        ("car.png", None), ("other.png", None), ("rows.npy", 0), ("rows.npy", 1), ("rows.npy", 2),
        ("squares.npy", 0), ("squares.npy", 1), ("squares.npy", 2), ("strokes.ndjson", 1), ("strokes.ndjson", 2),
        ("strokes.ndjson", 3)]
    assert accuracy([r["label"] for r in results], truth) == 1
    for result in results:
        assert result["label"] == ("car" if result["car_probability"] >= 0.5 else "not_car")


@pytest.mark.parametrize("count", [1, 63, 64, 65, 200])
def test_predict_gives_each_drawing_its_label_in_order_in_batches_of_any_size(model_path, tmp_path, count):
    bitmaps, truth = mixed_bitmaps(count, SEED + count)
    np.save(tmp_path / "drawings.npy", bitmaps)
    result = run_predict("--json", "--model", model_path, tmp_path / "drawings.npy")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["index"] for row in rows] == list(range(count))
    assert accuracy([row["label"] for row in rows], truth) >= (1 if count == 1 else 0.95)
    expected = OnnxModel(model_path).predict_proba(bitmaps)  # the same model in this process, all in one call
    np.testing.assert_allclose([row["car_probability"] for row in rows], expected, atol=1e-6)


def test_the_threshold_overrides_the_models(model_path, inputs):
    paths, _ = inputs
    probabilities = [r["car_probability"] for r in predict.classify(paths, model_path)[0]]
    ranked = sorted(set(probabilities))
    low, high = max(zip(ranked, ranked[1:]), key=lambda pair: pair[1] - pair[0] if pair[0] > 0.5 else 0)
    threshold = (low + high) / 2  # between two cars' P(car): some cars become not_car
    results, _ = predict.classify(paths, model_path, threshold=threshold)
    assert [r["label"] for r in results] == ["car" if p >= threshold else "not_car" for p in probabilities]
    assert [r["label"] for r in results].count("car") < [r["label"] for r in predict.classify(paths, model_path)[0]
                                                         ].count("car")
    assert {r["label"] for r in predict.classify(paths, model_path, threshold=0.0)[0]} == {"car"}


def test_the_table_names_each_drawing_and_its_label(model_path, inputs, capsys):
    paths, truth = inputs
    assert carsketch_main(["predict", *map(str, paths[2:]), "--model", str(model_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["input", "P(car)", "label"]
    names, labels = zip(*(line.rsplit(maxsplit=2)[::2] for line in lines[1:]))
    assert names == (f"{paths[2]} row 0", f"{paths[2]} row 1", f"{paths[2]} row 2", f"{paths[3]} row 0",
                     f"{paths[3]} row 1", f"{paths[3]} row 2", f"{paths[4]} line 1", f"{paths[4]} line 2",
                     f"{paths[4]} line 3")
    assert accuracy(list(labels), truth[2:]) == 1


def test_bad_inputs_get_a_line_each_and_the_rest_is_still_classified(model_path, inputs, tmp_path):
    paths, truth = inputs
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 10, 10), np.uint8))
    car = json.dumps({"drawing": make_drawings("car", 1, SEED + 3)[0]})
    (tmp_path / "bad.ndjson").write_text(f'{car}\n{{"drawing": \n{{"drawing": [[[], []]]}}\n')
    bad = ["broken.png", "blank.png", "wrong.npy", "bad.ndjson", "missing.png"]
    result = run_predict("--json", "--model", model_path, *paths, *(tmp_path / name for name in bad))
    assert result.returncode == 1
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(output["input"]).name, output["index"]) for output in outputs][-2:] == [
        ("strokes.ndjson", 3), ("bad.ndjson", 1)]
    assert accuracy([output["label"] for output in outputs], [*truth, 1]) == 1
    assert all(set(output) == {"input", "index", "car_probability", "label"} for output in outputs)
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'broken.png'}: not an image file (not in any format Pillow reads)",
        f"error: {tmp_path / 'blank.png'}: empty drawing (blank image)",
        f"error: {tmp_path / 'wrong.npy'}: expected bitmaps of shape (N, 784) or (N, 28, 28), not (4, 10, 10)",
        f"error: {tmp_path / 'bad.ndjson'} line 2: malformed JSON (Expecting value at column 1)",
        f"error: {tmp_path / 'bad.ndjson'} line 3: empty drawing (no points)",
        f"error: {tmp_path / 'missing.png'}: no such file"]


def test_a_missing_model_says_to_run_dvc_repro(inputs, tmp_path, capsys):
    paths, _ = inputs
    with pytest.raises(SystemExit) as exit_info:
        carsketch_main(["predict", "--model", str(tmp_path / "none.onnx"), *map(str, paths)])
    assert exit_info.value.code == 1
    output = capsys.readouterr()
    assert output.out == "" and output.err.splitlines() == [
        f"error: {tmp_path / 'none.onnx'} is missing: run `dvc repro` first, which makes it"]
    with pytest.raises(PipelineError, match="dvc repro"):
        predict.classify(paths, tmp_path / "none.onnx")


def test_a_threshold_outside_0_to_1_is_a_usage_error(inputs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        carsketch_main(["predict", str(inputs[0][0]), "--threshold", "1.5"])
    assert exit_info.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_stdin_is_read_as_ndjson_and_results_come_before_the_input_ends(model_path):
    drawings = make_drawings("car", predict.INFERENCE_BATCH, SEED) + make_drawings("other", 1, SEED)
    lines = [json.dumps({"drawing": drawing}) + "\n" for drawing in drawings]
    process = subprocess.Popen([sys.executable, "-m", "carsketch", "predict", "--json", "--model", str(model_path), "-"],
                               cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        process.stdin.write("".join(lines[:-1]))  # one full batch; stdin stays open
        process.stdin.flush()
        first = json.loads(process.stdout.readline())
        assert (first["input"], first["index"], first["label"]) == ("-", 1, "car")
        process.stdin.write(lines[-1] + "not json\n")
        process.stdin.close()
        rest = [json.loads(line) for line in process.stdout.read().splitlines()]
        assert process.wait(timeout=60) == 1
    finally:
        process.kill()
    assert [row["index"] for row in rest] == list(range(2, len(drawings) + 1))
    assert rest[-1]["label"] == "not_car" and np.mean([row["label"] == "car" for row in rest[:-1]]) >= 0.95


def test_a_large_npy_is_classified_a_batch_at_a_time_and_a_blank_row_reported(model_path, tmp_path, monkeypatch):
    bitmaps, truth = mixed_bitmaps(predict.INFERENCE_BATCH * 2 + 5)
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
    assert accuracy([result["label"] for result in results], np.delete(truth, 7)) >= 0.95


def test_a_drawing_and_its_mirror_image_across_the_diagonal_get_opposite_labels(model_path):
    """A car drawing transposed is an upright one: the model must read each bitmap the right way round."""
    cars = make_bitmaps("car", 50, SEED + 4)
    transposed = cars.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, 784)
    model = OnnxModel(model_path)
    assert np.mean(model.predict_proba(cars) >= 0.5) >= 0.95
    assert np.mean(model.predict_proba(transposed) < 0.5) >= 0.95
