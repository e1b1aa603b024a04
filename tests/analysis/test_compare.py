"""`compare_tickets` and `ticketlab compare` on a hand-made store."""

import csv

import pytest
import torch

from ticketlab.analysis.compare import compare_tickets
from ticketlab.analysis.tickets import parse_ref, resolve
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.store import LevelRow, ResultsStore, save_tensors

SPEC = {"model": {"name": "lenet_300_100"}, "data": {"name": "digits"}, "pruning": {"levels": 1}, "seeds": [0, 1]}
# fc1 reads a 2x2 image with 3 units, fc2 maps 3 -> 2: 12 + 6 = 18 prunable weights
MASKS = {
    (0, 0): {"fc1.weight": [[1] * 4] * 3, "fc2.weight": [[1] * 3] * 2},
    (0, 1): {"fc1.weight": [[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], "fc2.weight": [[1, 1, 0], [0, 0, 0]]},
    (1, 1): {"fc1.weight": [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], "fc2.weight": [[1, 0, 0], [0, 0, 1]]},
}


@pytest.fixture
def runs_dir(tmp_path):
    runs_dir = tmp_path / "runs"
    store = ResultsStore(runs_dir)
    store.add_run("abc123", SPEC, "test")
    g = torch.Generator().manual_seed(0)
    for seed in (0, 1):
        init = {"fc1.weight": torch.randn(3, 4, generator=g), "fc2.weight": torch.randn(2, 3, generator=g)}
        save_tensors(runs_dir / "abc123" / f"seed_{seed}" / "init.safetensors", init)
        for level in (0, 1):
            keep = {k: torch.tensor(v, dtype=torch.bool) for k, v in MASKS.get((seed, level), MASKS[0, 0]).items()}
            mask = Mask(keep)
            folder = store.level_dir("abc123", seed, "imp", level)
            folder.mkdir(parents=True, exist_ok=True)
            mask.save(folder / "mask.safetensors")
            # trained weights: init doubled (so |w_f| ranks as |w_i|), zero where pruned
            save_tensors(folder / "final.safetensors", {k: 2 * init[k] * keep[k] for k in init})
            store.record_level(LevelRow("abc123", seed, "imp", level, mask.density, mask.kept, mask.total,
                                        10, 0.9, 0.1, 0.9, 0.2, 1.0), [], {})
    return runs_dir


def test_refs_parse_and_resolve(runs_dir):
    assert parse_ref("ab/reinit:3@1") == ("ab", "reinit", "3", "1")
    assert parse_ref("ab") == ("ab", "imp", None, None)
    store = ResultsStore(runs_dir, readonly=True)
    assert [(t.seed, t.level) for t in resolve(store, "abc")] == [(0, 1)]  # last level, smallest seed
    assert [(t.seed, t.level) for t in resolve(store, "abc:*@*")] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with pytest.raises(TicketlabError, match="seed 7"):
        resolve(store, "abc@7")
    with pytest.raises(TicketlabError, match="level 5"):
        resolve(store, "abc:5")
    with pytest.raises(TicketlabError, match="not a ticket reference"):
        parse_ref("abc:x")


def test_compare_matrices_by_hand(runs_dir):
    c = compare_tickets(ResultsStore(runs_dir, readonly=True), ["abc:1@0", "abc:1@1", "abc:0@0"])
    # ticket 0 keeps fc1 (0,0),(2,0),(2,2), fc2 (0,0),(0,1): 5 weights
    # ticket 1 keeps fc1 (0,0),(0,1), fc2 (0,0),(1,2): 4 weights; both keep fc1 (0,0), fc2 (0,0)
    assert c.iou[0, 1] == pytest.approx(2 / 7)
    assert c.hamming[0, 1] == pytest.approx(5 / 18)
    assert c.iou[0, 2] == pytest.approx(5 / 18) and c.hamming[0, 2] == pytest.approx(13 / 18)
    assert c.iou[1, 0] == c.iou[0, 1] and c.hamming[1, 1] == 0.0
    # same seed, |w_f| = 2|w_i| on the kept weights: ranks agree exactly over the 5 both keep
    assert c.spearman[0, 2] == pytest.approx(1.0)
    assert [x.density for x in c.layers[0]] == pytest.approx([3 / 12, 2 / 6])
    # inputs of ticket 0: pixels 0 and 2 of the 2x2 image (any unit)
    assert c.inputs[0].tolist() == [[True, False], [True, False]]
    assert c.inputs[1].tolist() == [[True, True], [False, False]]
    assert c.input_counts[0].tolist() == [[2, 0], [1, 0]]
    # dense training doubles every weight: |Δw| = |w_i|; the sign never flips
    assert c.movements[0].kept_same_sign == 1.0 and c.movements[0].pruned_same_sign == 1.0


def test_cli_prints_writes_csv_and_figures(runs_dir, tmp_path, capsys):
    out = tmp_path / "fig" / "t"
    code = main(["compare", "abc:*@*", "--runs-dir", str(runs_dir), "--csv", str(tmp_path / "c.csv"),
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "IoU of kept weights" in text and "abc123:1@1" in text
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    pair = [r for r in rows if r["ticket_a"] == "abc123:1@0" and r["ticket_b"] == "abc123:1@1" and r["statistic"] == "iou"]
    assert float(pair[0]["value"]) == pytest.approx(2 / 7)
    assert (tmp_path / "fig" / "t_matrices.png").stat().st_size > 0
    assert (tmp_path / "fig" / "t_inputs.png").stat().st_size > 0
    assert main(["compare", "zzz", "--runs-dir", str(runs_dir)]) == 2
    assert "no run 'zzz'" in capsys.readouterr().err
