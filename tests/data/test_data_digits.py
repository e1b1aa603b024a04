"""The embedded digits set: no download, fixed test split."""

import pooch
import pytest
import torch

from ticketlab.data import load_dataset


def test_digits_loads_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("download attempted"))
    ds = load_dataset("digits", tmp_path / "empty", seed=1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1294, 143, 360)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert not (tmp_path / "empty").exists()

    other = load_dataset("digits", seed=2)
    assert torch.equal(other.test.x, ds.test.x) and torch.equal(other.test.y, ds.test.y)
    assert not torch.equal(other.val.y, ds.val.y)
    pooled = torch.cat([ds.train.x, ds.val.x]).sum(dim=0)
    assert torch.allclose(pooled, torch.cat([other.train.x, other.val.x]).sum(dim=0), atol=1e-3)
