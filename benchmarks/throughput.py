"""Print throughput: a cell printing 100,000 short lines, timed from send to iopub idle.

Every line must arrive: the benchmark counts them. Figures are lines per second (higher is better).
Goal (issue 6): the rpyc kernel reaches at least 0.5x stock ipykernel's rate.
"""

from __future__ import annotations

from common import RPYC, STOCK, Row, bench_environment, median, print_report, running_kernel

LINES = 100_000
CODE = f"for i in range({LINES}):\n    print('line', i)"
REPEATS = 5


def measure(repeats: int = REPEATS, lines: int = LINES) -> list[Row]:
    code = CODE.replace(str(LINES), str(lines))
    timings: dict[str, list[float]] = {RPYC: [], STOCK: []}
    with running_kernel(RPYC) as rpyc_kernel, running_kernel(STOCK) as stock_kernel:
        kernels = {RPYC: rpyc_kernel, STOCK: stock_kernel}
        for kernel in kernels.values():
            kernel.execute("print('warm up')")
        for _ in range(repeats):
            for name, kernel in kernels.items():
                seconds, text = kernel.execute(code)
                if text.count("\n") != lines or not text.endswith(f"line {lines - 1}\n"):
                    raise RuntimeError(f"{name}: {text.count(chr(10))} of {lines} lines arrived")
                timings[name].append(seconds)
    rpyc_rate, stock_rate = (lines / median(timings[name]) for name in (RPYC, STOCK))
    return [
        Row.at_least(
            f"print {lines:,} short lines, median rate; vs stock ipykernel",
            rpyc_rate,
            stock_rate,
            "lines/s",
            0.5,
        )
    ]


def main() -> None:
    with bench_environment():
        print_report("Print throughput", measure())


if __name__ == "__main__":
    main()
