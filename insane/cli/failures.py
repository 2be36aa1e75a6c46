"""How the ``insane`` command fails: its exit codes, and the error of an ordinary failure."""

from __future__ import annotations

#: Exit status of every command.
OK, FAILED, USAGE, INTERRUPTED, BROKEN_PIPE = 0, 1, 2, 130, 141
EXIT_CODES = """\
exit status:
  0    success
  1    the operation failed: no responders, no reply in time, no process found,
       a check failed (the line on stderr says which)
  2    bad usage or configuration (the line names the file, key and expected value)
  130  interrupted (Ctrl-C)
  141  the output was closed (for instance by `| head`)"""

DESCRIPTION = """\
Broker-less publish/subscribe with declarative QoS: look at this host's transports, explain
where a channel goes, publish, request, reply and subscribe from the shell, and watch
running sessions."""


class CommandError(Exception):
    """An ordinary failure of a command: one line for stderr, and the exit status."""

    def __init__(self, line: str, status: int = FAILED) -> None:
        super().__init__(line)
        self.status = status
