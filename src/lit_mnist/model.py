"""MNISTClassifier: the net, the loss, the metrics and configure_optimizers."""

import inspect
import random
import warnings
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MaxMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_mnist.compat import stepping_batches
from lit_mnist.data import DataSpec
from lit_mnist.errors import ParameterError
from lit_mnist.nets import ConvNet, StockNet, build_net
from lit_mnist.optim import (
    GroupSettings,
    LRScaling,
    ScheduleSettings,
    param_groups,
    scale_group_lrs,
    scheduler_run_arguments,
)

# The training loss of single steps, logged every trainer.log_every_n_steps steps.
STEP_LOSS = "train/loss_step"
# A net class (or any callable) that builds the net for the images a DataSpec describes.
NetFactory = Callable[[DataSpec], nn.Module]
# What --model.net takes: any nn.Module class or factory (torchvision.models.resnet18,
# timm.create_model; filled from the data, see nets.StockNet), or a factory taking the DataSpec.
Net = nn.Module | NetFactory


def fused_on_gpu(factory: Callable, device: torch.device) -> dict:
    """{"fused": True} for Adam or AdamW left at `fused: null` (the default) on a CUDA device, else
    {}: one fused call per parameter group then updates its parameters, where the for-each path
    makes about six (add, lerp, addcmul, sqrt, ...); for a small net's step the host's time for
    those launches is what the GPU waits on.
    `--model.optimizer.init_args.fused=false` keeps the for-each path."""
    keywords = getattr(factory, "keywords", None) or {}
    classes = [a for a in getattr(factory, "args", ()) if isinstance(a, type)]
    chosen = [c for c in classes if issubclass(c, torch.optim.Optimizer)]
    if device.type != "cuda" or "fused" not in keywords or keywords["fused"] is not None:
        return {}
    if not chosen or not issubclass(chosen[0], (torch.optim.Adam, torch.optim.AdamW)):
        return {}
    if keywords.get("foreach") or keywords.get("differentiable"):  # torch refuses them with fused
        return {}
    return {"fused": True}


class WeightedMean(Metric):
    """The mean of values weighted by their counts (a batch's mean loss and its size), summed
    across processes. torchmetrics' MeanMetric drops the weights once its NaN check is disabled
    (seen in torchmetrics 1.9.0), so an epoch's loss would be the plain mean of the batch means."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int | Tensor) -> None:
        self.total += value * weight
        self.weight += weight

    def compute(self) -> Tensor:
        return self.total / self.weight


class MNISTClassifier(L.LightningModule):
    def __init__(
        self,
        data: DataSpec | None = None,
        net: Net = ConvNet,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        schedule: ScheduleSettings = ScheduleSettings(),
        features: GroupSettings = GroupSettings(),
        classifier: GroupSettings = GroupSettings(),
        lr_scaling: LRScaling = LRScaling(),
        label_smoothing: float = 0.0,
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        """
        Args:
            data: the images and classes (the datamodule's `spec`; the command line passes it).
            net: the nn.Module mapping (B, channels, height, width) to (B, num_classes): a class or
                factory that takes `data` (ConvNet, the seed CNN, and the others in nets.py), or
                any nn.Module class or factory (torchvision.models.resnet18, timm.create_model),
                its num_classes and input channels filled from `data` (nets.StockNet).
            optimizer: any torch.optim class with its arguments; lr and weight_decay are the base.
            scheduler: any torch.optim.lr_scheduler class with its arguments, or None.
                A `total_steps` left unset is filled from the trainer; a scalar `max_lr`
                is multiplied by each group's learning-rate multiplier.
            schedule: when the scheduler steps.
            features: learning rate and weight decay of the feature extractor.
            classifier: learning rate and weight decay of the classifier (the net's last layer).
            lr_scaling: scaling of the learning rates (and a scheduler's max_lr) with the effective
                batch (batch size x accumulation x devices).
            label_smoothing: cross-entropy label smoothing, 0 for none.
            channels_last: run convolutions in the channels-last memory layout. None: as
                `--auto_precision` measures fastest on the device at hand (channels-last when it
                does not measure).
            compile: compile the net with torch.compile; its first steps compile. On the 2-core CPU
                of docs/bench.md the seed CNN ran slower compiled (case f): measure first.
        """
        super().__init__()
        settings = dict(features=features, classifier=classifier, schedule=schedule, lr_scaling=lr_scaling)
        problems = [(f"{k}.{field}", why) for k, v in settings.items() for field, why in v.problems()]
        if problems:
            raise ParameterError(self, *problems[0])
        # Through the CLI this stores the config (class paths and arguments), so a checkpoint
        # rebuilds the same net, optimizer and scheduler. The logger gets them with the final
        # metrics at the end of the run instead of at its start.
        # Lightning suggests ignoring `net`: it is kept on purpose, as its class path and arguments.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attribute 'net' is an instance of `nn.Module`")
            self.save_hyperparameters(logger=False)
        if data is None:
            raise ParameterError(
                self, "data", "is needed: the DataSpec of the images (a datamodule's `spec`)"
            )
        self.data = data
        try:
            self.net, spec = build_net(net, data)
        except ParameterError as err:
            if err.owner is not StockNet:
                raise
            raise ParameterError(self, "net", err.problem) from None
        if spec is not None:  # a stock net: a checkpoint rebuilds it as built here, its weights its own
            self.hparams["net"] = spec
        self.channels_last = False
        self.set_channels_last(channels_last is not False)
        if compile:
            self.net.compile()  # in place: the state_dict keys stay those of the plain net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self._lr: float | None = None  # a base learning rate set in code (`lr`)
        # kept as given: through the CLI, hparams hold these settings as plain dicts
        self.groups, self.schedule, self.lr_scaling = (features, classifier), schedule, lr_scaling
        self.train_metrics, self.val_metrics, self.test_metrics = (
            self._epoch_metrics(stage) for stage in ("train", "val", "test")
        )
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # a resumed run keeps its best so far
        # the training steps' loss sum and correct count, on the device, since the last hand-over
        # to train_metrics (`_hand_over`)
        self._train_sums: tuple[Tensor, Tensor] | None = None
        self._train_count = 0

    def _epoch_metrics(self, stage: str) -> MetricCollection:
        """Mean loss and accuracy of a stage, logged once per epoch (per-step logging costs more
        than the update). No argument checks and no NaN filter: both would synchronise a GPU every
        step, and a NaN loss should show in the curve. Validation and test update theirs every
        batch; training keeps two running sums on the device instead (a metric's update costs
        about 5% of a small training step) and hands them over as means (`_hand_over`)."""
        metrics = {
            "loss": WeightedMean(),
            "acc": (
                WeightedMean()  # the mean correctness, weighted by samples
                if stage == "train"
                else MulticlassAccuracy(self.data.num_classes, average="micro", validate_args=False)
            ),
        }
        collection = MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)
        collection.persistent(stage == "train")  # a mid-epoch checkpoint carries the running numbers
        return collection

    def set_channels_last(self, on: bool) -> None:
        """Convolutions in the channels-last memory layout, or not (the net and its inputs)."""
        self.channels_last = on
        self.net.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def shared_step(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection) -> tuple[Tensor, Tensor]:
        """The batch's mean loss and its logits; the stage's metrics are updated."""
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        if metrics is self.train_metrics:
            correct = (logits.argmax(dim=1) == labels).sum()
            if self._train_sums is None:
                self._train_sums = (torch.zeros((), device=loss.device), torch.zeros_like(correct))
            self._train_sums[0].add_(loss.detach(), alpha=len(labels))
            self._train_sums[1].add_(correct)
            self._train_count += len(labels)
        else:  # each metric takes the keywords its update() names: loss the value, accuracy the logits
            metrics.update(value=loss.detach(), weight=len(labels), preds=logits, target=labels)
        return loss, logits

    def _hand_over(self) -> None:
        """The training sums since the last call, into train_metrics as two weighted means: at
        the epoch's end, and before the state is saved (mid-epoch checkpoints carry them)."""
        if self._train_sums is None or not self._train_count:
            return
        loss_sum, correct = self._train_sums
        count = self._train_count
        self.train_metrics["loss"].update(loss_sum / count, weight=count)
        self.train_metrics["acc"].update(correct.float() / count, weight=count)
        self._train_sums, self._train_count = None, 0

    def state_dict(self, *args, **kwargs):
        self._hand_over()
        return super().state_dict(*args, **kwargs)

    def log_epoch(self, metrics: MetricCollection, prog_bar: bool = True) -> dict[str, Tensor]:
        """Log a stage's mean loss and accuracy over the epoch, and start the next epoch's."""
        values = metrics.compute()  # reduced across processes under DDP
        metrics.reset()
        # the values are already reduced over processes; sync_dist keeps Lightning from warning
        self.log_dict(values, prog_bar=prog_bar, sync_dist=True)
        return values

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self.shared_step(batch, self.train_metrics)
        # self.log costs a large share of a small step: call it only on the steps the logger writes.
        # Not prog_bar=True: Lightning would then copy the value to the CPU after every later batch,
        # waiting for the GPU each time; the template's ProgressBar shows it at its redraws.
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log(STEP_LOSS, loss)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        _, logits = self.shared_step(batch, self.val_metrics)
        return {"logits": logits.detach()}  # for callbacks (ValidationFigures)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.shared_step(batch, self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        probabilities = self(batch[0]).softmax(dim=1)
        confidence, prediction = probabilities.max(dim=1)
        return {"prediction": prediction, "confidence": confidence, "probabilities": probabilities}

    def on_train_epoch_end(self) -> None:
        self._hand_over()
        self.log_epoch(self.train_metrics, prog_bar=False)

    def on_validation_epoch_end(self) -> None:
        accuracy = self.log_epoch(self.val_metrics)["val/acc"]
        if self.trainer.sanity_checking:  # a few untrained batches are no "best"
            return
        self.val_acc_best.update(accuracy)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.log_epoch(self.test_metrics)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # dropout and augmentation draw from these: a resumed run continues with the same draws
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_states = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        # restored here, after Lightning's own setup has drawn any random numbers
        states, self._rng_states = getattr(self, "_rng_states", None), None
        if states:
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])

    @property
    def lr(self) -> float | None:
        """The optimizer's base learning rate (--model.optimizer.lr), which each parameter group
        multiplies by its lr_mult. Setting it (as Lightning's LearningRateFinder does) replaces the
        configured one for the optimizers built afterwards."""
        if self._lr is not None:
            return self._lr
        keywords = getattr(self.optimizer_factory, "keywords", None) or {}
        if "lr" in keywords:
            return keywords["lr"]
        classes = [a for a in getattr(self.optimizer_factory, "args", ()) if isinstance(a, type)]
        target = classes[0] if classes else self.optimizer_factory
        try:
            default = inspect.signature(target).parameters["lr"].default
        except (KeyError, TypeError, ValueError):
            return None
        return None if default is inspect.Parameter.empty else default

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = value

    def configure_optimizers(self):
        try:
            groups = param_groups(self.net, *self.groups)
            override = {} if self._lr is None else {"lr": self._lr}
            optimizer = self.optimizer_factory(
                groups, **override, **fused_on_gpu(self.optimizer_factory, self.device)
            )
        except ValueError as err:  # torch.optim's own checks: "Invalid momentum value: -1"
            raise ParameterError(self, "optimizer", f"cannot be built: {err}") from None
        batch_factor = self.lr_batch_factor()
        scale_group_lrs(optimizer, batch_factor)
        if self.scheduler_factory is None:
            return optimizer

        def intervals() -> float | None:  # the scheduler's intervals in the run
            step = self.schedule.interval == "step"
            return stepping_batches(self.trainer) if step else self.trainer.max_epochs

        try:
            derived = scheduler_run_arguments(
                self.scheduler_factory, optimizer, batch_factor, intervals, self.schedule.frequency
            )
        except ValueError as err:
            raise ParameterError(self, "scheduler", str(err)) from None
        try:
            scheduler = self.scheduler_factory(optimizer, **derived)
        except ValueError as err:
            raise ParameterError(self, "scheduler", f"cannot be built: {err}") from None
        config = {
            "scheduler": scheduler,
            "interval": self.schedule.interval,
            "frequency": self.schedule.frequency,
        }
        if isinstance(scheduler, ReduceLROnPlateau):
            config["monitor"] = self.schedule.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def lr_batch_factor(self) -> float:
        """How much the effective batch scales the configured learning rates (`lr_scaling`)."""
        if self.lr_scaling.mode == "none":
            return 1.0
        datamodule = getattr(self.trainer, "datamodule", None)
        batch_size = getattr(getattr(datamodule, "hparams", None), "batch_size", None)
        if batch_size is None:
            raise ParameterError(self, "lr_scaling.mode", "needs a datamodule with a batch_size")
        return self.lr_scaling.factor(
            batch_size * self.trainer.accumulate_grad_batches * self.trainer.world_size
        )
