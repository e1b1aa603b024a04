"""Weight files checked against the model they are loaded for."""

import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.models import build_model, load_weights
from ticketlab.store import save_tensors


def test_load_weights_returns_the_file_and_names_what_does_not_fit(tmp_path):
    model = build_model("lenet_300_100", (1, 8, 8), 4, seed=0)
    good = {name: value + 1 for name, value in model.state_dict().items()}
    save_tensors(tmp_path / "good.safetensors", good)
    loaded = load_weights(model, tmp_path / "good.safetensors")
    assert all(torch.equal(loaded[name], value) for name, value in good.items())

    save_tensors(tmp_path / "shape.safetensors", good | {"fc2.weight": torch.ones(2, 2)})
    with pytest.raises(TicketlabError, match=r"shape.safetensors do not fit the model: 'fc2.weight' has shape "
                                             r"\(2, 2\), the model's \(100, 300\)"):
        load_weights(model, tmp_path / "shape.safetensors")
    save_tensors(tmp_path / "missing.safetensors", {"fc1.weight": good["fc1.weight"]})
    with pytest.raises(TicketlabError, match="missing.safetensors do not fit the model: 'fc1.bias' is missing"):
        load_weights(model, tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(TicketlabError, match="junk.safetensors is not a readable safetensors file"):
        load_weights(model, tmp_path / "junk.safetensors")
