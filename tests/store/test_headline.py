"""The main job's closing sentence is computed from the level table, never written by hand."""

from ticketlab.store.report import Summary, headline


def summary(branch, level, density, acc, seeds=2):
    return Summary(branch, level, density, seeds, (acc, 0.01, acc - 0.01, acc + 0.01), (100.0, 0, 100, 100),
                   (acc, 0, acc, acc))


def test_the_sentence_is_at_the_sparsest_level_every_branch_reached():
    table = [summary("imp", 0, 1.0, 0.981), summary("imp", 1, 0.5, 0.975), summary("imp", 2, 0.018, 0.972),
             summary("imp", 3, 0.01, 0.95),  # the baselines have not reached level 3 yet
             summary("reinit", 1, 0.5, 0.97), summary("reinit", 2, 0.018, 0.913),
             summary("random_mask", 1, 0.5, 0.96), summary("random_mask", 2, 0.018, 0.842)]
    assert headline(table) == ("At 1.8% of weights remaining (level 2), tickets keep 97.2% test accuracy, "
                               "reinit 91.3%, random mask 84.2% (dense network 98.1%; mean of 2 seeds, at early stop).")


def test_no_sentence_without_a_baseline_or_a_pruned_level():
    assert headline([summary("imp", 0, 1.0, 0.98), summary("imp", 1, 0.8, 0.98)]) is None
    assert headline([summary("imp", 0, 1.0, 0.98), summary("reinit", 0, 1.0, 0.98)]) is None
