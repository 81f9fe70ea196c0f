"""What `tiering run` and `tiering backfill` show, and the run's log file.

On a terminal: one progress bar over the months with the DAG task that is running, and the
one-line summary of each month above it. Off a terminal (CI, cron, a pipe): plain lines, one
when a month starts and one when it ends. Everything else (dbt's node log, Great Expectations,
Airflow, the pipeline's own INFO lines) goes to a log file per command,
`<warehouse dir>/logs/tiering-<UTC timestamp>.log`, whose path is printed. `--verbose` streams
everything to the terminal as well, without a bar.

Captured: records of the root logger's handlers (Airflow installs its own when it is imported, so
they are taken over again at every step), and writes to sys.stdout / sys.stderr (dbt's runner
writes its node log to the sys.stdout of the moment).

Warnings the user must see (a restatement, an abandoned run, a provisional month, a suspected
delimiter or encoding) go through `warn_user`: WARNING records of the logger `tiering.user`
always reach the terminal, and the log file.

Library modules log with `logging.getLogger(__name__)` and never print; this module (used by
the CLI) decides where records go. Importing it is light (rich is imported for a bar only).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

USER_LOGGER = "tiering.user"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_step_listeners: list[Callable[[str], None]] = []


def warn_user(message: str) -> None:
    """A warning the person running the command must see: on the terminal (stderr, or above the
    progress bar) even when the rest of the output goes to the log file. Under a real Airflow
    scheduler it is a WARNING line of the task log like any other."""
    logging.getLogger(USER_LOGGER).warning(message)


def report_step(step: str) -> None:
    """The DAG task `step` starts (called by tiering.airflow_tasks.run_step, in the process that
    runs the task: dag.test() runs them in-process). Never raises."""
    for listener in list(_step_listeners):
        with contextlib.suppress(Exception):  # a display problem must not fail a task
            listener(step)


def log_path_for(warehouse: Path) -> Path:
    """A new log file path in `logs/` beside the warehouse file."""
    folder = Path(warehouse).resolve().parent / "logs"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"tiering-{stamp}.log"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"tiering-{stamp}-{n}.log"
    return path


class _Redirect(io.TextIOBase):
    """A text stream that writes to its targets (a lock keeps lines of threads whole). After the
    run its targets are the original stream again, for whoever kept a reference to it."""

    def __init__(self, targets: list[TextIO], lock: threading.Lock):
        super().__init__()
        self.targets = targets
        self._lock = lock

    def write(self, text: str) -> int:
        with self._lock:
            for target in self.targets:
                target.write(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            for target in self.targets:
                target.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True


class _UserHandler(logging.Handler):
    """WARNING records of tiering.user to the terminal: through `emit` (the bar prints above itself)."""

    def __init__(self, emit: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self._emit = emit

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(f"warning: {record.getMessage()}")
        except Exception:
            self.handleError(record)


class RunConsole:
    """The output of a `tiering run` / `tiering backfill` over `total` months (a context manager).

        with RunConsole(warehouse, total=3) as out:
            out.line("rules ...")
            out.month_started(1, "2024-01", run_id); ...; out.month_finished(1, summary_line)
    """

    def __init__(self, warehouse: Path, total: int, verbose: bool = False,
                 stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.total = total
        self.verbose = verbose
        self.log_path = log_path_for(warehouse)
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self.tty = bool(getattr(self._stdout, "isatty", lambda: False)()) and not verbose
        self._lock = threading.Lock()
        self._progress = None
        self._task = None
        self._month = ""
        self._done = 0

    # -- set-up and tear-down
    def __enter__(self) -> RunConsole:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.log_path, "a", encoding="utf-8", buffering=1)
        self._log_stream = _Redirect([self._file], self._lock)
        out_targets = [self._file, self._stdout] if self.verbose else [self._file]
        err_targets = [self._file, self._stderr] if self.verbose else [self._file]
        self._saved_streams = (sys.stdout, sys.stderr)
        self._out = _Redirect(out_targets, self._lock)
        self._err = _Redirect(err_targets, self._lock)
        sys.stdout, sys.stderr = self._out, self._err

        self._file_handler = logging.StreamHandler(self._log_stream)
        self._file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._handlers: list[logging.Handler] = [self._file_handler]
        if self.verbose:
            terminal = logging.StreamHandler(_Redirect([self._stderr], self._lock))
            terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            self._handlers.append(terminal)
        root = logging.getLogger()
        self._saved_root = (root.handlers[:], root.level)
        tiering_logger = logging.getLogger("tiering")
        self._saved_tiering_level = tiering_logger.level
        tiering_logger.setLevel(logging.INFO)
        self._user_handler = None if self.verbose else _UserHandler(self._terminal_line_err)
        # dbt's node log without colour codes in the file (read per invocation)
        self._saved_dbt_colors = os.environ.get("DBT_USE_COLORS")
        if not self.verbose:
            os.environ["DBT_USE_COLORS"] = "false"
        self.take_logging()

        _step_listeners.append(self.step)
        if self.tty:
            self._start_bar()
        self._write_log(f"tiering log {self.log_path}; command: {' '.join(sys.argv)}\n")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.step in _step_listeners:
            _step_listeners.remove(self.step)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if exc is not None:
            self._write_log(f"failed: {exc!r}\n")
        root = logging.getLogger()
        root.handlers[:] = self._saved_root[0]
        root.setLevel(self._saved_root[1])
        logging.getLogger("tiering").setLevel(self._saved_tiering_level)
        if self._saved_dbt_colors is None:
            os.environ.pop("DBT_USE_COLORS", None)
        else:
            os.environ["DBT_USE_COLORS"] = self._saved_dbt_colors
        if self._user_handler is not None:
            logging.getLogger(USER_LOGGER).removeHandler(self._user_handler)
        sys.stdout, sys.stderr = self._saved_streams
        # streams kept by others (a logging handler set up during the run) write where they did before
        self._out.targets = [self._saved_streams[0]]
        self._err.targets = [self._saved_streams[1]]
        self._log_stream.targets = [self._saved_streams[1]]
        self._file.close()
        if exc is not None:  # where the details are; main() prints the one-line reason last
            print(f"log: {self.log_path}", file=self._stderr, flush=True)

    def take_logging(self) -> None:
        """Root handlers to the log file (and the terminal with --verbose), again if someone
        (Airflow's logging set-up) replaced them since."""
        root = logging.getLogger()
        if root.handlers != self._handlers:
            root.handlers[:] = self._handlers
        user = logging.getLogger(USER_LOGGER)
        if self._user_handler is not None and self._user_handler not in user.handlers:
            user.addHandler(self._user_handler)
        if user.disabled:
            user.disabled = False

    # -- the terminal
    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._console = Console(file=self._stdout, force_terminal=True, highlight=False)
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[step]}"),
                                  console=self._console, transient=True, redirect_stdout=False,
                                  redirect_stderr=False)
        self._task = self._progress.add_task("months", total=self.total, step="")
        self._progress.start()

    def _terminal_line(self, text: str) -> None:
        if self._progress is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self._stdout, flush=True)

    def _terminal_line_err(self, text: str) -> None:
        if self._progress is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True, style="yellow")
        else:
            print(text, file=self._stderr, flush=True)

    def _write_log(self, text: str) -> None:
        with self._lock:
            self._file.write(text)

    def line(self, text: str) -> None:
        """A line for the terminal (above the bar) and the log file."""
        self._write_log(text + "\n")
        self._terminal_line(text)

    def month_started(self, index: int, month: str, run_id: str) -> None:
        self.take_logging()
        self._month = month
        text = f"[{index}/{self.total}] {month} run {run_id} started"
        self._write_log(text + "\n")
        if self._progress is not None:
            self._progress.update(self._task, description=f"{month}", step="starting the DAG run")
        else:
            self._terminal_line(text)

    def step(self, name: str) -> None:
        """The DAG task `name` of the current month starts."""
        self.take_logging()
        self._write_log(f"--- {self._month} {name}\n")
        if self._progress is not None:
            self._progress.update(self._task, step=name)

    def month_finished(self, index: int, text: str) -> None:
        """The month's one line (its summary, or why it was skipped)."""
        self.line(f"[{index}/{self.total}] {text}")
        self._done += 1
        if self._progress is not None:
            self._progress.update(self._task, completed=self._done, step="")
