"""The `onnx` export format: the compact network as ONNX, run and checked with onnxruntime.

Needs the optional extra: `pip install 'ticketlab[export]'` (onnx, onnxruntime). The file's
`metadata_props` carry what the safetensors formats carry in their metadata, with a SHA-256
over the metadata, the graph's operators and every initializer's bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ticketlab.errors import TicketlabError

CHECKSUM_KEY = "sha256"


def _modules():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise TicketlabError("the onnx format needs onnx and onnxruntime: pip install 'ticketlab[export]'") from None
    return onnx, onnxruntime


def checksum(model) -> str:
    from onnx import numpy_helper

    digest = hashlib.sha256()
    meta = {p.key: p.value for p in model.metadata_props if p.key != CHECKSUM_KEY}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for node in model.graph.node:
        digest.update(f"{node.op_type}({','.join(node.input)})->{','.join(node.output)};".encode())
    for init in sorted(model.graph.initializer, key=lambda i: i.name):
        array = numpy_helper.to_array(init)
        digest.update(f"{init.name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write(network: nn.Module, ticket, path: Path) -> None:
    onnx, _ = _modules()
    example = ticket.dataset.test.x[:2]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(network, (example,), buffer, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in (ticket.metadata() | {"format": "onnx"}).items():
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key=CHECKSUM_KEY, value=checksum(model))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class OnnxModule(nn.Module):
    """An onnxruntime session as a module: float32 tensor in, logits tensor out."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"input": x.detach().cpu().float().numpy()})[0])


def load(path: Path, threads: int = 1):
    from ticketlab.export.formats import Exported

    onnx, ort = _modules()
    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError and others
        raise TicketlabError(f"{path} is neither a ticketlab safetensors export nor a readable ONNX file ({error})") from None
    metadata = {p.key: p.value for p in model.metadata_props}
    if CHECKSUM_KEY not in metadata:
        raise TicketlabError(f"{path} is not a ticketlab export (no checksum in its metadata_props)")
    if checksum(model) != metadata[CHECKSUM_KEY]:
        raise TicketlabError(f"{path} is damaged: its contents do not match the checksum saved with them; export it again")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return Exported(OnnxModule(session), metadata)
