"""The `ticketlab` command end to end on the embedded digits data (seconds)."""

import csv

import pytest
import torch

from ticketlab.cli import build_parser, main
from ticketlab.masks import Mask
from ticketlab.models import build_model


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: ticketlab " + name in capsys.readouterr().out


def test_train_on_digits_reports_early_stop_and_final_accuracy(capsys):
    code, out, _ = run(capsys, "train", "--iterations", "200", "--eval-every", "50")
    assert code == 0
    assert "early stop (min val loss) at iteration" in out
    final = float(out.split("final (iteration 200): test accuracy ")[1].split("%")[0])
    assert final > 85


def test_train_under_a_mask_file(capsys, tmp_path):
    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    Mask({n: torch.rand(t.shape, generator=g) < 0.1 for n, t in Mask.ones(model).items()}).save(tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "train", "--iterations", "50", "--mask", str(tmp_path / "m.safetensors"))
    assert code == 0 and "of prunable weights kept" in out
    Mask({"fc1.weight": torch.ones(5, 5, dtype=torch.bool)}).save(tmp_path / "bad.safetensors")
    code, _, err = run(capsys, "train", "--iterations", "50", "--mask", str(tmp_path / "bad.safetensors"))
    assert code == 2 and "shape" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "mnsit"], "valid names: cifar10"),
        (["train", "--model", "vgg"], "valid names: conv2"),
        (["train", "--lr", "-1", "--iterations", "5"], "training.lr"),
        (["train", "--epochs", "0"], "--epochs"),
        (["imp", "--criterion", "nope"], "valid names"),
        (["imp", "--rewind-iteration", "99999"], "rewind.iteration"),
        (["show", "abc"], "no run"),
        (["data", "check", "cifar100"], "valid names"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, *(["--runs-dir", str(tmp_path)] if argv[0] in ("imp", "show") else []))
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_imp_runs_shows_exports_and_plots(capsys, tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    code, out, _ = run(capsys, "imp", "--iterations", "60", "--eval-every", "20", "--levels", "2",
                       "--seeds", "0,1", "--baselines", "reinit", *runs)
    assert code == 0
    assert "| imp | 2 |" in out and "| reinit | 1 |" in out and "plot: " in out
    run_id = out.split("run ")[1].split(":")[0]
    assert (tmp_path / run_id / "spec.toml").exists()
    assert (tmp_path / run_id / "lth.png").exists()

    code, out, _ = run(capsys, "runs", *runs)
    assert run_id in out and "5/6" not in out and "6/6" in out

    code, out, _ = run(capsys, "show", run_id[:5], "--csv", str(tmp_path / "levels.csv"), *runs)
    assert code == 0 and "64.34%" in out
    rows = list(csv.DictReader(open(tmp_path / "levels.csv")))
    assert len(rows) == 3 * 2 + 2 * 2 and {r["branch"] for r in rows} == {"imp", "reinit"}

    code, out, _ = run(capsys, "plot", run_id, "--out", str(tmp_path / "fig"), "--formats", "svg", *runs)
    assert code == 0 and (tmp_path / "fig.svg").exists()

    # the same command again finds everything done and recomputes nothing
    code, out, _ = run(capsys, "imp", "--iterations", "60", "--eval-every", "20", "--levels", "2",
                       "--seeds", "0,1", "--baselines", "reinit", *runs)
    assert code == 0 and "seed 0 imp" not in out


def test_parallel_replicates_equal_sequential_one_thread_ones(capsys, tmp_path):
    # Bitwise equality needs the same thread count: parallel workers use one thread each.
    argv = ["imp", "--iterations", "40", "--eval-every", "20", "--levels", "1", "--seeds", "0,1", "--baselines", "random_mask"]
    threads = torch.get_num_threads()
    try:
        run(capsys, *argv, "--threads", "1", "--runs-dir", str(tmp_path / "one"))
    finally:
        torch.set_num_threads(threads)
    code, out, _ = run(capsys, *argv, "--jobs", "2", "--runs-dir", str(tmp_path / "two"))
    assert code == 0
    from ticketlab.store import ResultsStore

    def rows(path):
        store = ResultsStore(path)
        (run_id, _, _), = store.runs()
        return [(r.seed, r.branch, r.level, r.early_stop_test_acc, r.final_test_loss) for r in store.levels(run_id)]

    assert rows(tmp_path / "one") == rows(tmp_path / "two")


def tiny_image_tree(root, per_class=6):
    """train/ and test/ folders of 8x8 RGB PNGs in two classes."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (8, 8, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return root


def test_train_and_imp_say_and_use_one_recipe_for_a_network(capsys, tmp_path):
    """`train --model resnet8_4` uses the CIFAR recipe `imp` uses (SGD 0.1, batch 128, augmentation),
    not LeNet's Adam, and both commands' first lines say so, with the device and precision."""
    tree = tiny_image_tree(tmp_path / "tree")
    data = ["--model", "resnet8_4", "--dataset", "imagefolder", "--dataset-path", str(tree), "--val-size", "2",
            "--iterations", "2", "--eval-every", "2"]
    code, out, err = run(capsys, "train", *data)
    assert code == 0, err
    train_first = out.splitlines()[0]
    code, out, err = run(capsys, "imp", *data, "--levels", "1", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert out.splitlines()[0] == train_first
    assert train_first.startswith("recipe: CIFAR ResNet/VGG recipe")
    assert "SGD lr 0.1 momentum 0.9 weight decay 0.0001, batch 128, 2 iterations" in train_first
    assert "crop+flip augmentation" in train_first
    assert train_first.endswith("; device: cpu (auto: no GPU here); precision: fp32") or "cuda" in train_first


def test_train_keeps_the_paper_recipe_of_lenet(capsys):
    code, out, _ = run(capsys, "train", "--iterations", "20", "--eval-every", "10", "--device", "cpu")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("recipe: lenet_300_100 recipe (Frankle & Carbin 2019, Figure 2)")
    assert "Adam lr 0.0012, batch 60, 20 iterations" in first and first.endswith("device: cpu; precision: fp32")
