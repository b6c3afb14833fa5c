"""`1+1` latency: seconds from execute_request sent to iopub status idle, rpyc kernel vs stock ipykernel.

Both kernels run at once and are asked in turn, so a busy moment on the machine hits both alike.
Goal (issue 6): the rpyc kernel's median is at most 1.5x stock ipykernel's.
"""

from __future__ import annotations

from common import RPYC, STOCK, Row, bench_environment, median, print_report, running_kernel

CODE = "1+1"
WARMUP = 20
SAMPLES = 500


def measure(samples: int = SAMPLES) -> list[Row]:
    timings: dict[str, list[float]] = {RPYC: [], STOCK: []}
    with running_kernel(RPYC) as rpyc_kernel, running_kernel(STOCK) as stock_kernel:
        kernels = {RPYC: rpyc_kernel, STOCK: stock_kernel}
        for _ in range(WARMUP):
            for kernel in kernels.values():
                kernel.execute(CODE)
        for _ in range(samples):
            for name, kernel in kernels.items():
                timings[name].append(kernel.execute(CODE)[0])
    rpyc_ms, stock_ms = (median(timings[name]) * 1000 for name in (RPYC, STOCK))
    return [Row.at_most("`1+1` send -> idle, median; vs stock ipykernel", rpyc_ms, stock_ms, "ms", 1.5)]


def main() -> None:
    with bench_environment():
        print_report("Latency", measure())


if __name__ == "__main__":
    main()
