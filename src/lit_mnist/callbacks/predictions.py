"""predictions.csv: what the model says about your own images."""

import csv
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lit_mnist.tools.runs import run_dir_of

COLUMNS = ("file", "prediction", "confidence", "top3")


class PredictionWriter(BasePredictionWriter):
    """After `predict` over image files (the datamodule's `predict_files`), a CSV with a row per
    file (file, prediction, confidence, top3) and the same as a table on the screen; files that
    could not be read are named on stderr. Over a test split, the count of predictions per class.
    Only the main process writes.

    Args:
        output: the CSV to write; None: predictions.csv in the run folder of the checkpoint
            predicted with, else in the working folder.
    """

    def __init__(self, output: str | Path | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module, predictions, batch_indices) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        data = trainer.datamodule
        name = pl_module.data.class_name  # the class names of the checkpoint's data
        files = getattr(data, "predict_files", None)
        if not files:
            counts = torch.bincount(
                torch.cat([b["prediction"] for b in predictions]), minlength=pl_module.data.num_classes
            )
            per_class = ", ".join(f"{name(c)} {n}" for c, n in enumerate(counts.tolist()))
            print(f"Predicted {int(counts.sum())} images; per class: {per_class}")
            return
        probabilities = torch.cat([b["probabilities"] for b in predictions]).float()
        top = probabilities.topk(min(3, probabilities.shape[1]), dim=1)
        rows = []
        for file, values, classes in zip(files, top.values, top.indices, strict=True):
            pairs = zip(classes.tolist(), values.tolist(), strict=True)
            top3 = "; ".join(f"{name(c)}:{v:.3f}" for c, v in pairs)  # names may hold spaces
            rows.append((str(file), name(int(classes[0])), f"{float(values[0]):.4f}", top3))
        output = self._output_path(trainer)
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        width = max(len(r[0]) for r in rows)
        print(f"\n{'file':<{width}}  prediction  confidence  converted")
        for file, prediction, confidence, _ in rows:
            converted = ", ".join(data.predict_notes[Path(file)]) or "-"
            print(f"{file:<{width}}  {prediction:>10}  {confidence:>10}  {converted}")
        print(f"\nPredictions of {len(rows)} images written to {output}")
        for reason in getattr(data, "predict_rejected", {}).values():
            print(f"error: {reason}", file=sys.stderr)

    def _output_path(self, trainer: L.Trainer) -> Path:
        if self.output is not None:
            return Path(self.output)
        run_dir = run_dir_of(Path(trainer.ckpt_path)) if trainer.ckpt_path else None
        return (run_dir or Path(".")) / "predictions.csv"
