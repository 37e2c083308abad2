"""Reading a run's TensorBoard event files back."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run folder as {tag: [(step, value), ...]} in step order, as TensorBoard
    shows them: all event files of the folder (a resumed run, the HPARAMS entry) read in order,
    with the events a killed run wrote past its last checkpoint purged by the resumed run."""
    if not any(Path(run_dir).glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event files in {run_dir}")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {}
    for tag in events.Tags()["scalars"]:
        values = {event.step: event.value for event in events.Scalars(tag)}  # a repeated step: the last
        scalars[tag] = sorted(values.items())
    return scalars
