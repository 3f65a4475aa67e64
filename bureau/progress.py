"""The operator's view of an encoding run: a progress bar with rate and time left (on
stderr, drawn by rich), and a line per card on stdout."""
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.speed
        return Text(f"{speed * 60:.1f} cards/min" if speed else "- cards/min")


class CardProgress:
    def __init__(self, total: int, done: int, label: str):
        self.total, self.done, self.label = total, done, label
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 RateColumn(), TextColumn("left"), TimeRemainingColumn(),
                                 console=Console(stderr=True), redirect_stdout=False)
        self.task = None

    def __enter__(self):
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def say(self, text: str):
        print(text, flush=True)

    def advance(self):
        self.progress.advance(self.task)
