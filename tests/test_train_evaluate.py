"""featurize, train and evaluate stages run as the pipeline runs them, on tiny generated data: they learn it."""

import csv
import json

import numpy as np
import pytest

from carsketch.errors import PipelineError
from carsketch.evaluation import (AGREEMENT_TOLERANCE, classification_metrics, collected_metrics, per_category, plot_data,
                                  unseen_metrics)
from carsketch.files import load_array
from carsketch.trained_model import load_trained_model
from conftest import TINY_PROJECT, write_category_files, write_params
from stages import adapt, evaluate, featurize, preprocess, snapshot, train


@pytest.fixture
def trained_project(tmp_path, monkeypatch, backbone_file):
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 40, "bus": 40, "apple": 40, "tree": 40})
    write_params(tmp_path, **TINY_PROJECT)
    for stage in (preprocess, featurize, train, snapshot, adapt, evaluate):
        stage.main()
    return tmp_path


def tsv_column(path, name):
    """A column of one of dvclive's .tsv logs, as floats."""
    with open(path) as log:
        return [float(row[name]) for row in csv.DictReader(log, delimiter="\t")]


@pytest.mark.parametrize("trainable_blocks, epochs", [(0, 3), (2, 3)])
def test_the_stages_learn_to_tell_car_from_not_car(tmp_path, monkeypatch, backbone_file, trainable_blocks, epochs):
    """The real stages on fixture drawings: a frozen backbone, or its last blocks trained too, reach 0.95 on the test
    split, and the training loss falls."""
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 60, "bus": 60, "apple": 60, "tree": 60})
    write_params(tmp_path, **{**TINY_PROJECT, "trainable_blocks": trainable_blocks, "epochs": epochs})
    for stage in (preprocess, featurize, train, snapshot, adapt, evaluate):
        stage.main()
    metrics = json.loads((tmp_path / "metrics/metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95 and metrics["roc_auc"] >= 0.98
    losses = tsv_column("metrics/train/plots/metrics/train_loss.tsv", "train_loss")
    assert len(losses) == epochs and losses[-1] < losses[0]
    assert load_trained_model("model_data/car_sketch_weights.pth").config["trainable_blocks"] == trainable_blocks


def test_stages_write_features_model_log_metrics_and_plots(trained_project):
    assert load_array("data/features/train.npy").shape == (96, 1280)
    assert load_array("data/features/val.npy").shape == (24, 1280)
    assert load_array("data/features/test.npy").shape == (40, 1280)
    model = load_trained_model("model_data/car_sketch_weights.pth")
    assert model.config["image_size"] == 32 and model.config["categories"]["car"] == ["car", "bus"]
    for figure in ("train_loss", "val_loss", "val_accuracy"):  # dvclive's log: a row an epoch
        assert len(tsv_column(f"metrics/train/plots/metrics/{figure}.tsv", figure)) == 2
    train_metrics = json.loads((trained_project / "metrics/train/metrics.json").read_text())
    assert set(train_metrics) == {"step", "train_loss", "val_loss", "val_accuracy"} and train_metrics["step"] == 1
    assert train_metrics["train_loss"] == tsv_column("metrics/train/plots/metrics/train_loss.tsv", "train_loss")[-1]
    metrics = json.loads((trained_project / "metrics/metrics.json").read_text())
    assert {"accuracy", "loss", "precision", "recall", "f1", "roc_auc"} <= set(metrics)
    checks = json.loads((trained_project / "metrics/evaluate_checks.json").read_text())
    assert checks["test_drawings"] == 40 and checks["full_model_max_difference"] <= AGREEMENT_TOLERANCE
    table = json.loads((trained_project / "metrics/per_category.json").read_text())
    assert set(table) == {"car", "bus", "apple", "tree"} and table["tree"]["label"] == "not_car"
    assert sum(entry["drawings"] for entry in table.values()) == 40
    confusion = json.loads((trained_project / "metrics/plots/confusion.json").read_text())
    assert len(confusion) == 40 and set(confusion[0]) == {"actual", "predicted"}
    roc = json.loads((trained_project / "metrics/plots/roc.json").read_text())
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
    # no unseen categories listed: no unseen figures, and data.json as before
    assert not any(key.startswith("unseen") for key in metrics)
    assert set(json.loads((trained_project / "metrics/data.json").read_text())) == {"train", "val", "test"}
    assert json.loads((trained_project / "metrics/unseen_per_category.json").read_text()) == {}


def test_unseen_categories_are_scored_apart_and_never_trained_on(tmp_path, monkeypatch, backbone_file):
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 40, "bus": 40, "apple": 40, "tree": 40, "van": 12,
                                                 "cloud": 9})
    write_params(tmp_path, **TINY_PROJECT, unseen={"car": ["van"], "not_car": ["cloud"]})
    for stage in (preprocess, featurize, train, snapshot, adapt, evaluate):
        stage.main()
    for split in ("train", "val", "test"):
        assert not {"van", "cloud"} & set(load_array(f"data/processed/{split}/category.npy").tolist())
    assert load_array("data/features/unseen.npy").shape == (21, 1280)
    assert json.loads((tmp_path / "metrics/data.json").read_text())["unseen"] == {"total": 21, "car": 12, "not_car": 9}
    metrics = json.loads((tmp_path / "metrics/metrics.json").read_text())
    assert metrics["unseen_car_drawings"] == 12 and metrics["unseen_not_car_drawings"] == 9
    table = json.loads((tmp_path / "metrics/unseen_per_category.json").read_text())
    assert {name: (entry["label"], entry["drawings"]) for name, entry in table.items()} == {
        "van": ("car", 12), "cloud": ("not_car", 9)}
    # the fixture's van drawings are car-like and its clouds are not: all told apart, though never trained on
    assert metrics["unseen_car_recall"] == table["van"]["predicted_car_share"] == 1
    assert metrics["unseen_false_car_rate"] == table["cloud"]["predicted_car_share"] == 0
    assert metrics["unseen_roc_auc"] == 1


def test_training_twice_gives_the_same_model(trained_project):
    models = ("model_data/trained/car_sketch_weights.pth", "model_data/trained/car_sketch.onnx")
    first = [(trained_project / name).read_bytes() for name in models]
    train.main()
    assert [(trained_project / name).read_bytes() for name in models] == first


def test_stale_features_are_caught_by_the_agreement_check(trained_project):
    np.save("data/features/test.npy", np.load("data/features/test.npy") + 1.0)
    with pytest.raises(PipelineError, match="the saved model and the cached features disagree"):
        evaluate.main()


def test_a_stage_run_before_its_inputs_exist_says_what_to_run(tmp_path, monkeypatch, backbone_file):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, **TINY_PROJECT)
    with pytest.raises(PipelineError, match=r"data/processed/train/x.npy is missing: run `dvc repro` first"):
        featurize.main()


def test_metrics_of_known_predictions():
    y = np.array([1, 1, 0, 0])
    probability = np.array([0.9, 0.4, 0.2, 0.6])
    results = classification_metrics(y, probability, 0.5)
    assert results["accuracy"] == 0.5 and results["precision"] == 0.5 and results["recall"] == 0.5
    assert results["roc_auc"] == 0.75
    assert results["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.4])))


def test_unseen_metrics_of_known_predictions():
    y = np.array([1, 1, 0, 0, 0])
    probability = np.array([0.9, 0.3, 0.4, 0.2, 0.2])
    assert unseen_metrics(y, probability, 0.5) == {
        "unseen_car_recall": 0.5, "unseen_car_drawings": 2, "unseen_false_car_rate": 0.0,
        "unseen_not_car_drawings": 3, "unseen_roc_auc": pytest.approx(5 / 6)}  # 0.3 is above two of three not-car
    only_car = unseen_metrics(np.array([1, 1]), np.array([0.9, 0.1]), 0.5)
    assert only_car["unseen_false_car_rate"] is None and only_car["unseen_roc_auc"] is None


def test_per_category_table():
    table = per_category(np.array(["car", "car", "apple"]), np.array([1, 1, 0]), np.array([0.9, 0.1, 0.7]), 0.5)
    assert table == {
        "apple": {"label": "not_car", "drawings": 1, "accuracy": 0.0, "predicted_car_share": 1.0,
                  "mean_car_probability": pytest.approx(0.7)},
        "car": {"label": "car", "drawings": 2, "accuracy": 0.5, "predicted_car_share": 0.5,
                "mean_car_probability": pytest.approx(0.5)},
    }


def test_curves_run_from_corner_to_corner():
    y = np.array([1, 1, 0, 0, 1, 0])
    curves = plot_data(y, np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1]), 0.5)
    assert curves["roc.json"][0] == {"fpr": 0.0, "tpr": 0.0} and curves["roc.json"][-1] == {"fpr": 1.0, "tpr": 1.0}
    recall = [row["recall"] for row in curves["precision_recall.json"]]
    assert recall == sorted(recall) and recall[0] == 0 and recall[-1] == 1
    assert curves["confusion.json"][2] == {"actual": "not_car", "predicted": "car"}


def test_metrics_of_one_label_and_of_no_predicted_car():
    results = classification_metrics(np.zeros(3), np.array([0.1, 0.2, 0.3]), 0.5)
    assert results["roc_auc"] is None and results["precision"] == results["recall"] == results["f1"] == 0.0
    assert results["accuracy"] == 1.0


def test_expected_calibration_error_of_known_bins():
    y = np.array([1, 0, 0, 0, 1, 1])
    probability = np.array([0.1, 0.1, 0.1, 0.1, 0.95, 0.95])  # two bins: 4 at 0.1 with 1 car, 2 at 0.95 with 2
    expected = (4 * abs(0.25 - 0.1) + 2 * abs(1 - 0.95)) / 6
    assert classification_metrics(y, probability, 0.5)["ece"] == pytest.approx(expected)


def test_collected_figures_of_known_predictions():
    """Three drawings labelled car (two called car) and two not car (one called car)."""
    figures = collected_metrics(np.array([1, 1, 1, 0, 0]), np.array([0.9, 0.2, 0.7, 0.1, 0.6]), 0.5)
    assert figures == {"collected_accuracy": 0.6, "collected_test_drawings": 5,
                       "collected_car_recall": pytest.approx(2 / 3), "collected_test_car_drawings": 3,
                       "collected_not_car_accuracy": 0.5, "collected_test_not_car_drawings": 2}
    only_cars = collected_metrics(np.array([1, 1]), np.array([0.9, 0.2]), 0.5)
    assert only_cars["collected_not_car_accuracy"] is None and only_cars["collected_car_recall"] == 0.5
