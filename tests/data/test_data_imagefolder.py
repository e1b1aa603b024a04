"""Image-folder trees and archives: layout, class order, exact pixels, cache invalidation."""

import os

import numpy as np
import pytest

from ticketlab.data import load_dataset
from ticketlab.data.imagefolder import read_imagefolder
from ticketlab.errors import DataError


def expected_arrays(images, split, classes):
    keys = sorted(key for key in images if key[0] == split)
    x = np.stack([images[key] for key in keys])
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return x, np.array([classes.index(key[1]) for key in keys])


def test_folder_round_trip_sorted_classes(tmp_path, write_image_tree):
    images = write_image_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "cat" / "notes.txt").write_text("not an image")
    raw = read_imagefolder(tmp_path / "tree")

    classes = ["bird", "cat", "dog"]
    assert raw.num_classes == 3
    for split, x, y in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
        want_x, want_y = expected_arrays(images, split, classes)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)


@pytest.mark.parametrize("wrapper", [None, "my-images"])
def test_archive_matches_folder(tmp_path, write_image_tree, tar_tree, wrapper):
    write_image_tree(tmp_path / "tree")
    archive = tar_tree(tmp_path / "tree", tmp_path / "images.tar.gz", wrapper)
    from_folder, from_archive = read_imagefolder(tmp_path / "tree"), read_imagefolder(archive)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(from_archive, field), getattr(from_folder, field))


def test_load_normalises_each_channel_with_training_statistics(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "tree", per_class={"train": 4, "test": 1})
    ds = load_dataset("imagefolder", path=tmp_path / "tree", val_size=0)
    assert ds.input_shape == (3, 5, 6) and ds.num_classes == 3
    np.testing.assert_allclose(ds.train.x.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-5)


def test_grey_images_give_one_channel_and_jpegs_decode(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "grey", mode="L")
    assert read_imagefolder(tmp_path / "grey").train_x.shape == (9, 1, 5, 6)
    write_image_tree(tmp_path / "jpeg", ext="jpg")
    assert read_imagefolder(tmp_path / "jpeg").test_x.shape == (6, 3, 5, 6)


def test_cache_is_used_then_invalidated_when_the_archive_changes(tmp_path, write_image_tree, tar_tree):
    write_image_tree(tmp_path / "tree", seed=0)
    archive = tar_tree(tmp_path / "tree", tmp_path / "images.tar.gz")
    first = read_imagefolder(archive)
    assert (tmp_path / "images.tar.gz.cache.npz").is_file()

    write_image_tree(tmp_path / "tree", seed=1)
    tar_tree(tmp_path / "tree", archive)
    os.utime(archive, ns=(1, 1))  # a different mtime even on coarse clocks
    second = read_imagefolder(archive)
    assert not np.array_equal(first.train_x, second.train_x)


def test_read_only_source_is_cached_in_the_user_cache(tmp_path, write_image_tree, user_cache):
    write_image_tree(tmp_path / "shared" / "tree")
    os.chmod(tmp_path / "shared", 0o555)
    try:
        read_imagefolder(tmp_path / "shared" / "tree")
        assert os.listdir(tmp_path / "shared") == ["tree"]
        assert len(list((user_cache / "derived").glob("*-tree.cache.npz"))) == 1
    finally:
        os.chmod(tmp_path / "shared", 0o755)


def test_layout_errors(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "no-test", per_class={"train": 1})
    with pytest.raises(DataError, match=r"no images under test/<class>/"):
        read_imagefolder(tmp_path / "no-test")

    write_image_tree(tmp_path / "extra", per_class={"train": 1, "test": 1})
    write_image_tree(tmp_path / "extra", classes=("zebra",), per_class={"test": 1})
    with pytest.raises(DataError, match=r"test classes \['zebra'\] have no train/ folder"):
        read_imagefolder(tmp_path / "extra")

    with pytest.raises(DataError, match="does not exist"):
        read_imagefolder(tmp_path / "nowhere")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(DataError, match="neither a folder nor a tar archive"):
        read_imagefolder(tmp_path / "plain.txt")


def test_corrupt_image_names_the_file(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "cat" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"train/cat/0001.png is not a readable PNG image"):
        read_imagefolder(tmp_path / "tree")


def test_truncated_archive_is_a_data_error(tmp_path, write_image_tree, tar_tree):
    write_image_tree(tmp_path / "tree")
    archive = tar_tree(tmp_path / "tree", tmp_path / "images.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="images.tar.gz is a damaged archive"):
        read_imagefolder(archive)
