"""Replay the fault suite of ``tests/test_faults.py`` and print what each bad input was told,
then the tally ``bad_inputs_handled: N/N`` (last line). Tiny models only; about a minute.

    OMP_NUM_THREADS=1 python benchmarks/fault_suite.py            # every case
    OMP_NUM_THREADS=1 python benchmarks/fault_suite.py --reduced  # no SIGTERM cases (CI)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="leave out the SIGTERM cases")
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from test_faults import CASES, SIGNAL_CASES, make_faults

    cases = CASES if args.reduced else [*CASES, *SIGNAL_CASES]
    handled = 0
    with tempfile.TemporaryDirectory(prefix="recal-faults-") as tmp:
        faults = make_faults(Path(tmp))
        for case in cases:
            start = time.perf_counter()
            try:
                told = case.run(faults)
                ok = case.expect.lower() in told.lower() and "Traceback" not in told
            except BaseException as exc:  # noqa: BLE001 - a case that fails is counted, not fatal
                if isinstance(exc, KeyboardInterrupt):
                    raise
                told = "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1]
                ok = False
            handled += ok
            seconds = time.perf_counter() - start
            print(f"{'handled' if ok else 'NOT HANDLED':11} {seconds:5.2f}s  {case.name}: "
                  f"{told[:160]}", flush=True)
    print(f"bad_inputs_handled: {handled}/{len(cases)}")
    return 0 if handled == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
