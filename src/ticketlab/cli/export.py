"""`ticketlab export`: a stored ticket as a masked, torch-prune, compact, sparse or ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.common import add_data_dir, add_runs_dir, seed_int

FORMAT_NAMES = ("masked", "torch_prune", "compact", "sparse", "onnx")  # ticketlab.export.FORMATS (checked in tests)


def _cmd_export(args: argparse.Namespace) -> int:
    from ticketlab.export import export

    report = export(args.runs_dir, args.run_id, args.level, args.format, args.out, seed=args.seed,
                    branch=args.branch, data_dir=args.data_dir)
    meta = report.metadata
    print(f"wrote {report.path} ({report.format}, {report.bytes:,} bytes): run {meta['run_id']} seed {meta['seed']} "
          f"{meta['branch']} level {meta['level']}, density {float(meta['density']):.2%}; verified on "
          f"{report.examples} held-out examples, max |logit difference| {report.max_abs_diff:.2g}, same top-1")
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "export", help="export a stored ticket (masked, torch_prune, compact, sparse, onnx)",
        description="Write one level of a run as a file for use outside ticketlab, verified on save: its logits "
        "on held-out examples match the masked model's within 1e-5 with the same top-1, else nothing is written.")
    parser.add_argument("run_id", metavar="RUN", help="run id (a unique prefix is enough)")
    parser.add_argument("--level", type=int, required=True, help="the level to export")
    parser.add_argument("--seed", type=seed_int, help="the replicate (default: the run's only seed)")
    parser.add_argument("--branch", default="imp", help="imp (default) or a baseline, e.g. reinit")
    parser.add_argument("--format", required=True, choices=FORMAT_NAMES,
                        help="masked: state_dict + masks; torch_prune: weight_orig + weight_mask; compact: dead "
                        "units removed; sparse: compact with CSR weights; onnx: compact as ONNX (needs "
                        "ticketlab[export])")
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    add_runs_dir(parser)
    add_data_dir(parser)
    parser.set_defaults(run=_cmd_export)
