"""The curve diagnosis: the classic readings, and what a finished learning-rate schedule changes."""

import pytest

from lit_mnist.tools.diagnosis import diagnose, diagnose_run

CLASSIC = [
    ([1.0, 0.6, 0.4, 0.3], [1.1, 0.7, 0.5, 0.4], "Still learning"),
    ([1.0, 0.5, 0.3, 0.2, 0.1], [0.9, 0.5, 0.4, 0.5, 0.6], "Overfitting from epoch 4 on"),
    ([1.0, 0.5, 0.3, 0.2, 0.1, 0.05], [0.9, 0.5, 0.40, 0.40, 0.40, 0.40], "Overfitting from epoch 3 on"),
    ([0.5, 0.30, 0.30, 0.30, 0.30], [0.5, 0.35, 0.35, 0.35, 0.35], "Plateau"),
    ([0.5, 0.30, 0.30, 0.30, 0.30], [0.9, 0.8, 0.6, 0.5, 0.4], "Suspect the data"),
    ([0.5, 0.4, float("nan")], [0.5, 0.4, 0.3], "Diverging: a loss is NaN"),
    ([0.5, 0.4, 0.9, 2.0], [0.5, 0.4, 1.0, 2.5], "Diverging: both losses have risen"),
    ([0.5], [0.6], "Too few epochs"),
    # Adam at lr 1e6: finite, one epoch, and far beyond any loss a classifier starts from
    ([3.1e19], [3.4e28], "Diverging: the loss exploded to 3.4e+28"),
    ([2.3, 1.1, 0.9, 350.0], [1.5, 1.0, 0.8, 410.0], "Diverging: the loss exploded to 410"),
    ([2.9], [2.3], "Too few epochs"),  # a first epoch at chance level is not an explosion
]
# a one-cycle schedule sampled per epoch: up to its peak, then annealed to almost nothing
ONE_CYCLE = [1e-4, 3e-3, 2.4e-3, 1.2e-3, 3e-4, 1.2e-6]
FLAT_TRAIN, FLAT_VAL = [0.9, 0.6, 0.55, 0.548, 0.547, 0.547], [0.8, 0.5, 0.49, 0.489, 0.489, 0.489]


@pytest.mark.parametrize("train, val, expected", CLASSIC)
def test_the_classic_curves_without_learning_rates(train, val, expected):
    assert diagnose(train, val).startswith(expected)
    assert diagnose(train, val, learning_rates=None) == diagnose(train, val)


def test_flat_curves_after_a_finished_schedule_have_converged():
    diagnosis = diagnose(FLAT_TRAIN, FLAT_VAL, learning_rates=ONE_CYCLE)
    assert diagnosis == (
        "Converged: the learning-rate schedule has finished (lr 1.2e-06, 0.04% of its peak) and both "
        "losses are flat over the last 3 epochs. To go further: more epochs or a larger model, not a "
        "lower learning rate."
    )


def test_a_training_loss_still_settling_after_a_finished_schedule_has_converged():
    train = [0.9, 0.7, 0.62, 0.60, 0.58, 0.57]  # -5% over the last 3 epochs
    assert diagnose(train, FLAT_VAL).startswith("Overfitting")
    diagnosis = diagnose(train, FLAT_VAL, learning_rates=ONE_CYCLE)
    assert diagnosis.startswith("Converged") and "training loss still falls slightly" in diagnosis


def test_plateau_advice_stands_while_the_learning_rate_is_still_high():
    for lrs in ([1e-3] * 6, [1e-3, 1e-3, 2e-4]):  # constant; decayed, but not to 5% of its peak
        assert diagnose(FLAT_TRAIN, FLAT_VAL, learning_rates=lrs).startswith("Plateau: both losses are flat")


@pytest.mark.parametrize(
    "train, val, expected",
    [
        ([1.0, 0.5, 0.3, 0.2, 0.1], [0.9, 0.5, 0.4, 0.5, 0.6], "Overfitting from epoch 4 on"),
        # the training loss falls too fast to be settling
        ([1.0, 0.5, 0.3, 0.2, 0.1, 0.05], [0.9, 0.5, 0.40, 0.40, 0.40, 0.40], "Overfitting from epoch 3 on"),
    ],
)
def test_overfitting_is_reported_after_a_finished_schedule(train, val, expected):
    assert diagnose(train, val, learning_rates=ONE_CYCLE).startswith(expected)


def test_a_run_is_read_with_its_first_learning_rate_group():
    def points(values):
        return list(enumerate(values))

    scalars = {
        "train/loss": points(FLAT_TRAIN),
        "val/loss": points(FLAT_VAL),
        "lr-AdamW/classifier": points(ONE_CYCLE),
        "lr-AdamW/classifier-momentum": points([0.95] * 6),
        "lr-AdamW/features": points([10 * lr for lr in ONE_CYCLE]),
        "lr-AdamW/features-weight_decay": points([5e-4] * 6),
    }
    assert diagnose_run(scalars).startswith("Converged: the learning-rate schedule has finished (lr 1.2e-06,")
    without = {tag: values for tag, values in scalars.items() if not tag.startswith("lr-")}
    assert diagnose_run(without).startswith("Plateau")


def test_evaluated_weights_far_worse_than_training_are_named():
    """best.yaml's EMA without warm-up on 1,350 images: the raw weights train, the average that is
    validated stays at chance. Overfitting keeps a validation accuracy well above half of training's."""
    train, val = [2.0, 1.4, 1.0, 0.8, 0.7], [2.30, 2.30, 2.29, 2.29, 2.28]
    lagging = diagnose(train, val, train_acc=[0.3, 0.6, 0.8, 0.85, 0.9], val_acc=[0.1, 0.1, 0.11, 0.11, 0.12])
    assert lagging.startswith(
        "Evaluated weights lag behind training: 12.0% validation accuracy against 90.0%"
    )
    assert "moving average" in lagging
    overfit_train, overfit_val = [1.0, 0.5, 0.3, 0.2, 0.1], [0.9, 0.5, 0.4, 0.5, 0.6]
    overfitting = diagnose(
        overfit_train, overfit_val, train_acc=[0.7, 0.9, 0.97, 0.99, 1.0], val_acc=[0.7, 0.8, 0.8, 0.78, 0.76]
    )
    assert overfitting.startswith("Overfitting")
    early = diagnose([2.2, 2.1], [2.3, 2.25], train_acc=[0.15, 0.2], val_acc=[0.1, 0.12])  # both near chance
    assert not early.startswith("Evaluated weights")


def test_diagnose_run_reads_the_accuracies():
    scalars = {
        "train/loss": [(9, 1.0), (19, 0.5)], "val/loss": [(9, 2.3), (19, 2.3)],
        "train/acc": [(9, 0.7), (19, 0.9)], "val/acc": [(9, 0.1), (19, 0.1)],
    }  # fmt: skip
    assert diagnose_run(scalars).startswith("Evaluated weights lag behind training")
