"""Where the template reaches into Lightning's internals to work around its bugs: one function each,
saying what it asks for, why, and which versions it was checked against (lightning 2.6.6).
tests/test_compat.py fails loudly when an upgrade moves what these functions touch."""

import warnings

import lightning as L
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

# Lightning 2.6.6 under torch 2.14 warns at every fit about its own use of a torch function; here,
# not in the command line, so that processes Lightning spawns (ddp_spawn) are quiet too
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def stepping_batches(trainer: L.Trainer) -> int | float:
    """`trainer.estimated_stepping_batches` (the optimizer steps of the whole fit) without its side
    effect on a resumed fit.

    Read in `configure_optimizers` (OneCycleLR's total_steps), it sets up the training loader before
    the checkpoint is restored; the fit loop then keeps that loader and never hands it the position
    saved in the checkpoint, so a mid-epoch resume replays the epoch from its start (Lightning issue
    20550, open in 2.6.6). The loader set up for counting is dropped here: the fit loop sets it up
    again after the restore, and loads the saved position into it."""
    loop = trainer.fit_loop
    counted_here = loop._combined_loader is None
    total = trainer.estimated_stepping_batches
    if counted_here and loop._combined_loader is not None:
        if loop._data_fetcher is not None:  # its iterator may have started worker processes
            loop._data_fetcher.teardown()
            loop._data_fetcher = None
        loop._combined_loader = None
    return total


def end_restart(trainer: L.Trainer) -> None:
    """Tell the fit loop, at the end of an epoch that trained in this process, that it is no
    longer restarting from a checkpoint.

    Lightning skips ReduceLROnPlateau's step at the end of the first epoch of a resumed fit, so
    that a fit restored at an epoch's end does not step on validation metrics it no longer has
    (Lightning PR 14702). A fit resumed mid-epoch has trained and validated the rest of that epoch
    here: the uninterrupted run steps there, and so must this one. The loop clears the flag itself
    once this epoch is over; this clears it just before its plateau step (lightning 2.6.6)."""
    trainer.fit_loop._restarting = False


def resume_after_epoch_end(checkpoint: dict, step_bounded: bool) -> None:
    """Make a checkpoint written after an epoch's last batch and its end (where a fit bounded by
    max_steps stops when the steps fill whole epochs) resume at the start of the next epoch; any
    other checkpoint is left as it is. Call it before the loops are restored.

    Lightning resumes a step-bounded fit as a restart whatever the loop state, and finds the
    epoch loop at the last batch: it runs that epoch's end once more, with nothing trained,
    counts it as an epoch, and the run goes on one epoch ahead of one never stopped (the next
    epoch's shuffle and number). Here the epoch loop's counters of the current epoch are zeroed,
    as Lightning zeroes them when an epoch starts; the totals stay. The restarting epoch loop
    also adds one to its count of optimizer steps (it expects checkpoints written at a batch's
    end, before that step is counted), which would shift every step logged after the resume by
    one: for a step-bounded resume the count is loaded one lower. A fit bounded by epochs does
    not restart from this state, and adds nothing (lightning 2.6.6)."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop")
    if not fit_loop:
        return
    epochs, batches = fit_loop["epoch_progress"]["current"], fit_loop["epoch_loop.batch_progress"]
    if not batches.get("is_last_batch") or len(set(epochs.values())) != 1:  # not after an epoch's end
        return
    for key in ("epoch_loop.batch_progress", "epoch_loop.scheduler_progress"):
        _zero_current(fit_loop[key])
    _zero_current(fit_loop["epoch_loop.automatic_optimization.optim_progress"])
    batches["is_last_batch"] = False
    if step_bounded:
        fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def _zero_current(progress: dict) -> None:
    for key, value in progress.items():
        if key == "current" and isinstance(value, dict):
            progress[key] = dict.fromkeys(value, 0)
        elif isinstance(value, dict):
            _zero_current(value)


def starts_processes_per_stage(trainer: L.Trainer) -> bool:
    """Whether each stage (the fit, the test after it) runs in processes started afresh from
    pickled copies of this one's objects: ddp_spawn and its kin (Lightning's multiprocessing
    launcher, lightning 2.6.6), as against ddp, which runs the whole script once per process."""
    return isinstance(trainer.strategy.launcher, _MultiProcessingLauncher)


def keep_hyperparameters_as_given(cli) -> None:
    """Take now the config dump that LightningCLI turns into the model's hyper-parameters.

    LightningCLI dumps its config once (`_dump_config`, cached in `config_dump`) when it
    instantiates the model, and the model's hparams come from that dump. The template builds a
    stock net (`--model.net=torchvision.models.resnet18`) itself and puts it in the config just
    before; dumped first, the hparams keep the net as the user gave it."""
    cli._dump_config()
