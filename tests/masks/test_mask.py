import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model


def lenet():
    return build_model("lenet_300_100", (1, 8, 8), 10, seed=0)


def test_density_and_layer_report_hand_computed():
    mask = Mask({"a": torch.tensor([True, False, True, False]), "b": torch.tensor([[True, True], [True, False]])})
    assert mask.kept == 5 and mask.total == 8
    assert mask.density == pytest.approx(5 / 8)
    assert [(l.name, l.kept, l.total) for l in mask.layers()] == [("a", 2, 4), ("b", 3, 4)]
    assert "62.50%" in mask.report()


def test_dense_mask_covers_prunable_weights_only():
    model = lenet()
    mask = Mask.ones(model)
    assert list(mask) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert mask.density == 1.0
    mask.check_against(model)


def test_save_and_load_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(t.shape, generator=g) < 0.3 for n, t in Mask.ones(lenet()).items()})
    mask.save(tmp_path / "m.safetensors")
    assert Mask.load(tmp_path / "m.safetensors") == mask


def test_load_of_a_corrupt_file_names_it(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(TicketlabError, match="m.safetensors"):
        Mask.load(path)
    with pytest.raises(TicketlabError, match="does not exist"):
        Mask.load(tmp_path / "absent.safetensors")


def test_check_against_rejects_unknown_names_and_wrong_shapes():
    model = lenet()
    with pytest.raises(TicketlabError, match="not a parameter"):
        Mask({"conv1.weight": torch.ones(3, dtype=torch.bool)}).check_against(model)
    with pytest.raises(TicketlabError, match="shape"):
        Mask({"fc1.weight": torch.ones(3, 3, dtype=torch.bool)}).check_against(model)


def test_non_bool_tensors_are_refused():
    with pytest.raises(TicketlabError, match="bool"):
        Mask({"a": torch.ones(3)})


def test_is_inside():
    outer = Mask({"a": torch.tensor([True, True, False])})
    inner = Mask({"a": torch.tensor([True, False, False])})
    assert inner.is_inside(outer) and not outer.is_inside(inner)


def _saved(tmp_path):
    mask = Mask({"a": torch.tensor([True, False, True, False]), "b": torch.tensor([[False, True], [True, True]])})
    path = tmp_path / "m.safetensors"
    mask.save(path)
    return mask, path


def _flip(path, offset_from_end: int, bits: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= bits
    path.write_bytes(bytes(raw))


def test_a_bit_flip_that_still_reads_as_a_mask_is_caught_by_the_checksum(tmp_path):
    mask, path = _saved(tmp_path)
    # the data section ends with b's 4 bytes [0, 1, 1, 1]; 0 -> 1 keeps a valid bool
    _flip(path, 4, 0x01)
    with pytest.raises(TicketlabError, match=r"m\.safetensors is damaged.*checksum"):
        Mask.load(path)


def test_a_byte_that_is_not_0_or_1_is_refused_even_without_a_checksum(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    save_file({"a": torch.tensor([True, False, True])}, str(path))  # as older versions and IMP runs save
    assert Mask.load(path) == Mask({"a": torch.tensor([True, False, True])})
    _flip(path, 3, 0x02)  # True -> byte 3
    with pytest.raises(TicketlabError, match=r"old\.safetensors: entry 'a' holds values other than 0 and 1"):
        Mask.load(path)


def test_a_mask_file_of_another_dtype_names_the_entry(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(3)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(TicketlabError, match="entry 'a' is torch.float32, not bool"):
        Mask.load(tmp_path / "f.safetensors")
