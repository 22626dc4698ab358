"""Dataset loaders and the ``name:key=value`` specs that reach them."""

import numpy as np
import pytest

from aae_anomaly import Dataset, UnknownPluginError, load_dataset
from aae_anomaly.plugin_system.datasets import parse_spec


def test_spec_parsing():
    assert parse_spec("synthetic") == ("synthetic", {})
    assert parse_spec("synthetic:n=10, seed=3") == ("synthetic", {"n": "10", "seed": "3"})
    with pytest.raises(ValueError, match="not of the form key=value"):
        parse_spec("synthetic:n")
    with pytest.raises(ValueError, match="has no name"):
        parse_spec(":n=1")


def test_options_are_converted_to_the_loaders_types():
    data = load_dataset("synthetic:n=300,n_features=6,anomalies=0.2,seed=4")
    assert data.X.shape == (300, 6)
    assert data.y.sum() == 60
    with pytest.raises(ValueError, match="option n='many' is not a valid int"):
        load_dataset("synthetic:n=many")
    with pytest.raises(ValueError, match="unknown option 'rows'; this dataset takes: n, "):
        load_dataset("synthetic:rows=5")


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(UnknownPluginError, match="unknown dataset 'kaggle'; available: csv"):
        load_dataset("kaggle")


def test_synthetic_data_is_reproducible_and_labelled():
    first, second = load_dataset("synthetic:seed=1"), load_dataset("synthetic:seed=1")
    np.testing.assert_array_equal(first.X, second.X)
    assert set(np.unique(first.y)) == {0.0, 1.0}
    assert not np.array_equal(first.X, load_dataset("synthetic:seed=2").X)


def test_csv_with_label_column(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,is_anomaly\n1,2,0\n3,4.5,1\n")
    data = load_dataset(f"csv:path={path},label=is_anomaly")
    np.testing.assert_array_equal(data.X, [[1, 2], [3, 4.5]])
    np.testing.assert_array_equal(data.y, [0, 1])
    assert data.feature_names == ["a", "b"]


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(ValueError, match="a well-formed CSV file: .*Expected 2 fields in line 3"):
        load_dataset(f"csv:path={path}")
    path.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_dataset(f"csv:path={path}")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_dataset(f"csv:path={tmp_path / 'absent.csv'}")


@pytest.mark.parametrize("feature_key", ["X", "x"])
def test_npz_with_either_feature_key(tmp_path, feature_key):
    path = tmp_path / "set.npz"
    np.savez(path, **{feature_key: np.ones((4, 3)), "y": np.array([[0], [0], [1], [0]])})
    data = load_dataset(f"npz:path={path}")
    assert data.X.shape == (4, 3)
    np.testing.assert_array_equal(data.y, [0, 0, 1, 0])


def test_npz_without_features_is_rejected(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(path, data=np.ones(3))
    with pytest.raises(ValueError, match="no array named X or x"):
        load_dataset(f"npz:path={path}")


def test_npy_refuses_pickled_objects(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled"):
        load_dataset(f"npy:path={path}")


def test_npy_images_keep_their_shape(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.zeros((5, 1, 8, 8), dtype=np.uint8))
    assert load_dataset(f"npy:path={path}").X.shape == (5, 1, 8, 8)


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "iris", "wine"])
def test_scikit_learn_bundled_sets_load_offline(name):
    data = load_dataset(f"sklearn:name={name}")
    assert len(data.X) == len(data.y) > 100
    assert 0 < data.y.mean() < 1


def test_scikit_learn_normal_class_is_chosen():
    data = load_dataset("sklearn:name=digits,normal=3")
    assert (data.y == 0).sum() == 183
    with pytest.raises(ValueError, match="not 12"):
        load_dataset("sklearn:name=digits,normal=12")


def test_dataset_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="3 rows but 2 labels"):
        Dataset(np.zeros((3, 2)), np.zeros(2), name="bad")
