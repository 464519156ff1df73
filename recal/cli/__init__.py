"""The ``recal`` command: subcommands over the same objects the Python API uses.

Each command parses its options into the config objects the Python API and the recipes use
(:mod:`recal.flows`, ``SamplingConfig``, ``MeasureConfig``, ``FitConfig``, ``BenchConfig``,
``SynthConfig``, the tuning configs), calls one function of the Python API and prints its result.
The commands live in one small module per group:

- :mod:`recal.cli.measuring`: ``models``, ``sample``, ``measure``, ``compare``
- :mod:`recal.cli.repairing`: ``fit``, ``export``, ``apply``, ``tune``
- :mod:`recal.cli.workflows`: ``synth``, ``run``, ``bench``
- :mod:`recal.cli.serving`: ``serve``
- :mod:`recal.cli.importing`: ``import``

``--confidence NAME`` names a confidence scorer (``modal_share``, ...); ``--scorer FOLDER`` names
an exported, calibrated scorer (made by ``recal export`` or ``recal tune``).
"""

from __future__ import annotations

import sys

from recal.cli import importing, measuring, repairing, serving, workflows
from recal.cli.common import app

__all__ = ["app", "main", "COMMANDS"]

COMMANDS = (measuring.models, measuring.sample, measuring.measure, measuring.compare,
            repairing.fit, repairing.export, repairing.apply, repairing.tune,
            workflows.synth, workflows.run, workflows.bench, serving.serve)
"""Every subcommand, in the order ``recal --help`` lists them (the name is the function's)."""

for _command in COMMANDS:
    app.command()(_command)
app.command("import")(importing.import_)  # `import` is a Python keyword: named here


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a job scheduler's stop) into SystemExit, so that ``finally``
    blocks run as on Ctrl-C: a killed run still records what it finished (the bench's sampling
    time, a run store's last lines)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    import os
    import signal

    _exit_on_sigterm()
    try:
        app()
    except BrokenPipeError:  # `recal models | head`
        sys.exit(0)
    except SystemExit as exc:
        if exc.code != 128 + signal.SIGTERM:
            raise
        # Stopped by SIGTERM: every ``finally`` has run and what was finished is on disk; skip
        # the interpreter's teardown of torch and its threads (seconds), so a stop is prompt.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code)


if __name__ == "__main__":
    main()
