"""Tickets out of the store: masked, torch-prune, compact, sparse (CSR) and ONNX files, each
verified on save, and a runtime that picks the fastest kernel per layer."""

from ticketlab.export.compact import Gather, compact
from ticketlab.export.formats import (FORMATS, TOLERANCE, Exported, ExportReport, export, export_ticket,
                                      load_exported, to_torch_prune)
from ticketlab.export.sparse import SparseConv2d, SparseLinear, sparsify
from ticketlab.export.ticket import Ticket, load_ticket

__all__ = ["FORMATS", "TOLERANCE", "Exported", "ExportReport", "Gather", "SparseConv2d", "SparseLinear", "Ticket",
           "compact", "export", "export_ticket", "load_exported", "load_ticket", "sparsify", "to_torch_prune"]
