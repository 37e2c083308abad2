"""Reading a run's curves back, whichever logger wrote them: TensorBoard's event files,
CSVLogger's metrics.csv, an MLflow run (its local file store) or a W&B run's local record."""

import csv
import json
import struct
from pathlib import Path

Scalars = dict[str, list[tuple[int, float]]]


def read_scalars(run_dir: str | Path) -> Scalars:
    """Every scalar of a run folder as {tag: [(step, value), ...]} in step order; a step logged
    twice (a resumed run) counts with its last value."""
    run_dir = Path(run_dir)
    if any(run_dir.glob("events.out.tfevents.*")):
        return _tensorboard(run_dir)
    if (run_dir / "metrics.csv").is_file():
        return _csv(run_dir / "metrics.csv")
    if (run_dir / "meta.yaml").is_file() and (run_dir / "metrics").is_dir():
        return _mlflow(run_dir)
    if records := wandb_records(run_dir):
        return _wandb(records)
    raise FileNotFoundError(f"no TensorBoard event files, metrics.csv, MLflow or W&B run in {run_dir}")


def _tensorboard(run_dir: Path) -> Scalars:
    """As TensorBoard shows them: all event files of the folder (a resumed run, the HPARAMS entry)
    read in order, with the events a killed run wrote past its last checkpoint purged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return _in_order(
        {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    )


def _csv(path: Path) -> Scalars:
    scalars: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            for tag, value in row.items():
                if tag not in ("step", "epoch") and value != "":
                    scalars.setdefault(tag, []).append((int(row["step"]), float(value)))
    return _in_order(scalars)


def _mlflow(run_dir: Path) -> Scalars:
    from mlflow import MlflowClient

    from lit_mnist.loggers import allow_mlflow_file_store

    allow_mlflow_file_store()  # the run folder is in a file store
    client = MlflowClient(f"file:{run_dir.parent.parent.resolve()}")
    tags = client.get_run(run_dir.name).data.metrics
    history = {tag: client.get_metric_history(run_dir.name, tag) for tag in tags if tag != "epoch"}
    return _in_order({tag: [(m.step, m.value) for m in points] for tag, points in history.items()})


def wandb_records(run_dir: Path) -> list[Path]:
    """The local record files of the W&B run whose run folder (<save_dir>/<project>/<run id>) this
    is: <save_dir>/wandb/[offline-]run-<time>-<run id>/run-<run id>.wandb, one per (resumed) part,
    oldest first."""
    wandb_dir, run_id = run_dir.parent.parent / "wandb", run_dir.name
    parts = wandb_dir.glob(f"*run-*-{run_id}/run-{run_id}.wandb") if wandb_dir.is_dir() else []
    return sorted(parts, key=lambda path: path.parent.name.split("run-", 1)[1])


# W&B's record file: a 7-byte header, then records in 32 KiB blocks, each piece headed by a
# checksum (4 bytes), its length (2) and whether it is a whole record (1) or its first (2),
# middle (3) or last (4) piece; each record a protocol-buffer message of wandb's own schema.
WANDB_HEADER, WANDB_BLOCK, WANDB_PIECE = 7, 32 * 1024, struct.Struct("<IHB")


def _wandb(paths: list[Path]) -> Scalars:
    """The scalars of a W&B run's history, by `trainer/global_step` (Lightning's step)."""
    from wandb.proto import wandb_internal_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in paths:
        for data in _wandb_pieces(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") != "history":
                continue
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "trainer/global_step" not in items:
                continue
            step = int(float(items.pop("trainer/global_step")))
            for tag, text in items.items():
                value = json.loads(text)
                if not tag.startswith("_") and tag != "epoch" and isinstance(value, int | float):
                    scalars.setdefault(tag, []).append((step, float(value)))
    return _in_order(scalars)


def _wandb_pieces(raw: bytes) -> list[bytes]:
    records, pending, pos = [], b"", WANDB_HEADER
    while pos + WANDB_PIECE.size <= len(raw):
        if WANDB_BLOCK - pos % WANDB_BLOCK < WANDB_PIECE.size:  # a block's tail too short for a header
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        _, length, kind = WANDB_PIECE.unpack_from(raw, pos)
        data = raw[pos + WANDB_PIECE.size : pos + WANDB_PIECE.size + length]
        pos += WANDB_PIECE.size + length
        if kind in (1, 2):
            pending = data
        elif kind in (3, 4):
            pending += data
        if kind in (1, 4):
            records.append(pending)
    return records


def _in_order(scalars: Scalars) -> Scalars:
    return {tag: sorted(dict(points).items()) for tag, points in scalars.items()}
