"""A line per finished step of a long tool, with an estimate of the time left."""

import time
from collections.abc import Callable


class Progress:
    """Prints `[2/8] adam: done in 1:05; about 6:30 left` as each of `total` items finishes. The
    estimate is the mean time of the finished items times the items left: items of one tool take
    about as long as each other (a run, a seed, a notebook), so that is as good as a guess gets."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.finished = 0
        self.clock = clock
        self.started = self.last = clock()

    def done(self, item: str) -> None:
        now = self.clock()
        self.finished += 1
        took, self.last = now - self.last, now
        left = self.total - self.finished
        elapsed = now - self.started
        outlook = (
            f"about {duration(elapsed / self.finished * left)} left"
            if left > 0
            else f"all in {duration(elapsed)}"
        )
        # flushed: stdout is a pipe under make, CI and the tests, and the line is news now
        print(f"[{self.finished}/{self.total}] {item}: done in {duration(took)}; {outlook}", flush=True)


def duration(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
