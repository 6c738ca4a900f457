"""`python -m dlcli.cli.child HANDOFF ARGV...`: a process dlcli starts itself, running `dlcli ARGV`.

A sweep's trials and spares (`dlcli.tuning.sweep`) and a multi-process run's supervised worker
(`dlcli.training.distributed.supervise`) start here, with their part (`dlcli.training.handoff.Handoff`, as JSON)
as the first argument; nothing else sets it, so no environment variable can.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlcli.training import handoff


def main(argv: list[str] | None = None) -> None:
    """Check the hand-off, make it this process's, and run `dlcli` with the rest."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        handoff.current = handoff.Handoff.from_json(argv[0])
    except (IndexError, ValueError, TypeError):
        print(
            "error: python -m dlcli.cli.child runs the processes dlcli starts itself; run dlcli instead",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    # `python -m dlcli` as the program name in usage lines, as before this module existed.
    sys.argv = [str(Path(__file__).parent.parent / "__main__.py"), *argv[1:]]
    from dlcli.cli import end, run_program
    from dlcli.cli.program import Program
    from dlcli.training.distributed import note
    from dlcli.training.signals import follow_parent

    program = Program().start()
    follow_parent()
    if handoff.current.preload is not None:  # a sweep's spare: start Keras, then wait for its trial
        from dlcli.tuning.sweep import await_trial

        await_trial()
    code = run_program(program)
    if code == 0:
        note("done")  # the result is out: the parent need not read the exit code of a slow teardown
    end(code)


if __name__ == "__main__":
    main()
