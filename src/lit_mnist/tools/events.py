"""Reading a run's curves back, whichever logger wrote them: TensorBoard's event files,
CSVLogger's metrics.csv or an MLflow run (its local file store)."""

import csv
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
    raise FileNotFoundError(f"no TensorBoard event files, metrics.csv or MLflow run in {run_dir}")


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


def _in_order(scalars: Scalars) -> Scalars:
    return {tag: sorted(dict(points).items()) for tag, points in scalars.items()}
