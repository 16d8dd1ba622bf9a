"""Long work (a build, a sweep) with a progress bar, a Cancel button and errors shown in the app.

Why a thread: a Cancel click is a comm message the kernel can only handle while the cell that
started the work is not still running, so a button-started job runs in a background thread and
the kernel stays free. The programmatic API (`Workbench.build`) runs the same job in the caller's
thread, so a notebook cell returns when the work is done. Either way the job reports through
`JobPanel.report(done, total, label)`, the callback the builder (`BuilderConfig.progress`) and
`wb.sweep` call; after Cancel it raises `Cancelled`, which is how the work stops.

One lock for the whole app: the builds and sweeps share the same CPU, and two at once would
only make both timings wrong.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import ipywidgets as widgets

from workbench.viz.app.common import esc

__all__ = ["Cancelled", "JobPanel", "WidgetLogHandler"]
log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a job's progress callback once the user pressed Cancel."""


class JobPanel:
    """Progress bar, Cancel button and status line for one kind of job."""

    def __init__(self, name: str, lock: threading.Lock):
        self.name = name
        self._lock = lock
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description=name,
                                            layout=widgets.Layout(width="320px"))
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", button_style="warning",
                                            disabled=True, layout=widgets.Layout(width="90px"))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.status = widgets.HTML("")
        self.widget = widgets.HBox([self.progress, self.cancel_button, self.status])
        self.error: BaseException | None = None
        self.outcome = ""                  # "", "running", "done", "cancelled", "failed"

    # -- called by the work ------------------------------------------------------------------
    def report(self, done: int, total: int, label: str = "") -> None:
        """Progress callback; raises Cancelled after Cancel so the builder or sweep stops."""
        self.check()
        self.progress.max = max(int(total), 1)
        self.progress.value = max(0, min(int(done), self.progress.max))
        self.status.value = esc(f"{done}/{total} {label}".strip())

    def phase(self, text: str) -> None:
        """A step that has no count (calibrating, measuring latency): say what is happening."""
        self.check()
        self.status.value = esc(text)

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"{self.name} cancelled by the user")

    # -- called by the app -------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.outcome == "running"

    def cancel(self) -> None:
        if self.busy:
            self._cancel.set()
            self.status.value = esc("cancelling after the current step ...")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background job; True once nothing is running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def run(self, work: Callable[["JobPanel"], Any], on_success: Callable[[Any], None],
            on_error: Callable[[BaseException], None], background: bool) -> bool:
        """Start `work(panel)`; False (and a note) if another job of the app is running."""
        if not self._lock.acquire(blocking=False):
            self.status.value = '<span class="wb-error">another build or sweep is running; wait or cancel it</span>'
            return False
        self._cancel.clear()
        self.error, self.outcome = None, "running"
        self.progress.value, self.progress.bar_style = 0, "info"
        self.cancel_button.disabled = False
        if background:
            self._thread = threading.Thread(target=self._execute, args=(work, on_success, on_error),
                                            name=f"workbench-{self.name}", daemon=True)
            self._thread.start()
        else:
            self._execute(work, on_success, on_error)
        return True

    def _execute(self, work, on_success, on_error) -> None:
        started = time.perf_counter()
        try:
            result = work(self)
            self.check()
            on_success(result)
        except BaseException as exc:            # a job's failure must end up in the app, whatever it is
            if self._cancel.is_set() or isinstance(exc, Cancelled):   # the builder may wrap Cancelled
                self.outcome, self.progress.bar_style = "cancelled", "warning"
                self.status.value = esc(f"cancelled after {time.perf_counter() - started:.1f} s")
            else:
                self.outcome, self.error, self.progress.bar_style = "failed", exc, "danger"
                self.status.value = f'<span class="wb-error">{esc(type(exc).__name__)}: {esc(str(exc))}</span>'
                log.info("%s failed: %s: %s", self.name, type(exc).__name__, exc)
                try:
                    on_error(exc)
                except Exception:               # showing the error must not hide the error
                    log.exception("%s: could not show the error in the app", self.name)
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: shown, then honoured
                raise
        else:
            self.outcome, self.progress.bar_style = "done", "success"
            self.progress.value = self.progress.max
            self.status.value = esc(f"done in {time.perf_counter() - started:.1f} s")
        finally:
            self.cancel_button.disabled = True
            if self.outcome == "running":
                self.outcome = "failed"
            self._lock.release()


class WidgetLogHandler(logging.Handler):
    """Writes "workbench" log records into an HTML widget: the live build log."""

    def __init__(self, widget: widgets.HTML, max_lines: int = 300):
        super().__init__(logging.INFO)
        self.widget = widget
        self.lines: list[str] = []
        self.max_lines = max_lines
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        del self.lines[:-self.max_lines]
        self.widget.value = f'<pre class="wb-log">{esc(chr(10).join(self.lines))}</pre>'

    def clear(self) -> None:
        self.lines = []
        self.widget.value = ""

    def attach(self) -> Callable[[], None]:
        """Listen on the "workbench" logger (at INFO at least) until the returned function is called."""
        logger = logging.getLogger("workbench")
        level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)

        def detach() -> None:
            logger.removeHandler(self)
            logger.setLevel(level)
        return detach
