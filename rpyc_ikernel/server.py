"""The board server: rpyc's classic SlaveService, plus a main-thread cell runner.

Run it on the board with ``python3 -m rpyc_ikernel.server`` or, after copying this one file to the
board, ``python3 server.py``. It imports only the standard library and rpyc, so a board needs nothing
but ``pip install rpyc``.

Why the main thread: cells sent by the kernel run here, on the process's main thread, so an interrupt
is a real signal. That stops ``time.sleep``, blocking I/O and pure-Python loops alike, which an exception
injected into a worker thread cannot do. Connections are served by rpyc's threads meanwhile, so
completion, live images and interrupts keep working while a cell runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import queue
import signal
import sys
import threading
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, which costs a board memory
if TYPE_CHECKING:
    from rpyc.utils.server import ThreadedServer

DEFAULT_PORT = 18812
DEFERRED_MODULES = ("ssl",)  # rpyc imports these at start-up; most boards never use them
EXECUTOR_MODULE = "_rpyc_ikernel_executor"  # the name the agent looks for
INTERRUPT_SIGNAL = getattr(signal, "SIGUSR1", None)


class MainThreadExecutor:
    """Runs submitted cells one at a time on the main thread; interrupts them with a signal."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._running = None
        self._interrupt_wanted = False
        self._lock = threading.Lock()
        self._stopped = False

    def register(self) -> None:
        """Make this executor visible to the agent and install the interrupt signal handler."""
        module = types.ModuleType(EXECUTOR_MODULE)
        module.submit = self.submit
        module.interrupt = self.interrupt
        sys.modules[EXECUTOR_MODULE] = module
        signal.signal(INTERRUPT_SIGNAL, self._on_interrupt_signal)

    def submit(self, job) -> None:
        """Queue a callable; it runs on the main thread after the cells queued before it."""
        self._jobs.put(job)

    def interrupt(self, job) -> bool:
        """Raise KeyboardInterrupt in `job` if it is running user code right now."""
        with self._lock:
            if self._running is not job:
                return False
            self._interrupt_wanted = True
        os.kill(os.getpid(), INTERRUPT_SIGNAL)
        return True

    def _on_interrupt_signal(self, signum, frame) -> None:
        # Runs on the main thread between bytecodes, or when a blocking call returns EINTR.
        job = self._running
        if self._interrupt_wanted and job is not None and getattr(job, "interruptible", False):
            self._interrupt_wanted = False
            raise KeyboardInterrupt()

    def run_forever(self) -> None:
        while not self._stopped:
            try:
                job = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                self._running = job
                self._interrupt_wanted = False
            try:
                job()  # a cell job reports its own errors, interrupts included
            except Exception:
                logging.getLogger("rpyc_ikernel.server").exception("cell runner failed")
            finally:
                with self._lock:
                    self._running = None
                    self._interrupt_wanted = False

    def stop(self) -> None:
        self._stopped = True


class DeferredModule(types.ModuleType):
    """Stands in for a module until code first uses one of its attributes, then becomes it.

    rpyc imports ``ssl`` when it starts, whether or not TLS is used, and that alone costs a board
    about 4 MB of resident memory (OpenSSL's libraries). With this stand-in in ``sys.modules``,
    ``import ssl`` still works everywhere (rpyc, user cells, urllib); the real module loads on first use.
    """

    def __getattr__(self, name: str):
        if name == "__path__":  # the import system asks whether this is a package: it is not
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)  # earlier holders of the stand-in see the real module
        return getattr(real, name)


def defer_imports(names=DEFERRED_MODULES) -> None:
    """Put a DeferredModule in sys.modules for each module not imported yet."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = DeferredModule(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m rpyc_ikernel.server",
        description="Serve this board to rpyc_ikernel (an rpyc classic server).",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on (default 0.0.0.0: every interface; 127.0.0.1 for this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port (default %d; 0 picks a free one)" % DEFAULT_PORT,
    )
    parser.add_argument(
        "--threads-only",
        action="store_true",
        help="run cells in worker threads instead of the main thread (interrupt is then best effort)",
    )
    parser.add_argument("--quiet", action="store_true", help="log only errors")
    return parser


def make_server(host: str, port: int) -> ThreadedServer:
    """A classic rpyc server bound to host:port (port 0 picks a free port)."""
    from rpyc.core.service import SlaveService
    from rpyc.utils.server import ThreadedServer

    return ThreadedServer(
        SlaveService,
        hostname=host,
        port=port,
        reuse_addr=True,
        protocol_config={"allow_all_attrs": True, "allow_pickle": True},
        logger=logging.getLogger("rpyc_ikernel.server"),
    )


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    defer_imports()
    try:
        server = make_server(args.host, args.port)
    except OSError as exc:
        print(
            "rpyc_ikernel server: cannot listen on %s:%s: %s (is another server running? try --port)"
            % (args.host, args.port, exc.strerror or exc),
            file=sys.stderr,
        )
        return 2
    use_main_thread = not args.threads_only and INTERRUPT_SIGNAL is not None
    executor = MainThreadExecutor() if use_main_thread else None
    if executor is not None:
        executor.register()
    serving = threading.Thread(target=server.start, name="rpyc server", daemon=True)
    serving.start()
    print(
        "rpyc_ikernel board server listening on %s:%d (pid %d)" % (args.host, server.port, os.getpid()),
        flush=True,
    )
    try:
        if executor is not None:
            executor.run_forever()
        else:
            serving.join()
    except KeyboardInterrupt:
        print("rpyc_ikernel server: stopped", file=sys.stderr)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
