"""Reading a run's TensorBoard event files back."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run folder as {tag: [(step, value), ...]} in step order.

    A run can have several event files (a resumed run, the HPARAMS entry written at the end);
    all of them are read, and a step logged twice keeps its last value.
    """
    files = sorted(Path(run_dir).glob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files in {run_dir}")
    merged: dict[str, dict[int, float]] = {}
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            for event in events.Scalars(tag):
                merged.setdefault(tag, {})[event.step] = event.value
    return {tag: sorted(values.items()) for tag, values in merged.items()}
