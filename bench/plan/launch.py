"""Run one command and report its own wall time, CPU and peak RSS, measured from a small process.

    python -I -S launch.py FD ARGV...   # writes "STATUS WALL_S UTIME_S STIME_S MAXRSS_KIB" to FD
    from launch import launched         # the same from a bench: (wall s, CPU s, peak RSS KiB, exit code)
    from launch import captured         # and the command's stdout and stderr as text

Linux starts a new process's peak-RSS count (ru_maxrss) at the resident size of the process that
forked it: a tool started straight from a bench (a Python process of ~60 MB, more once it holds a
generated fleet) reports at least that size whatever it used itself.  This launcher is ~8 MB (`-I
-S`: no site, no environment variables read, only os, sys and time imported), so the peak it passes
on is the tool's own whenever the tool is larger than that.  CPU and peak RSS are wait4's for the
command and every child it waited for; wall time runs from just before the fork to the wait's
return, so the launcher's own start-up is in none of them.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing itself is not imported: it would add ~3 MB to the launcher
if TYPE_CHECKING:
    from typing import Any


class LaunchFailed(Exception):
    """The launcher itself failed: there is no measurement."""


def launched(argv: list[str], *, timeout: float | None = None, **popen: Any) -> tuple[float, float, int, int]:
    """Run argv through this launcher (Popen keyword arguments apply to it and so to argv).

    Returns (wall s, CPU s, peak RSS KiB, exit code) of argv itself; 127 when it cannot be run.
    Past `timeout` seconds the launcher and argv (its own session) are killed: LaunchFailed.
    """
    import signal
    import subprocess  # here, not at the top: the launcher process stays small

    read, write = os.pipe()
    try:
        launcher = [sys.executable, "-I", "-S", __file__, str(write), *argv]
        proc = subprocess.Popen(launcher, pass_fds=(write,), start_new_session=timeout is not None, **popen)
        os.close(write)
        write = -1
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise LaunchFailed(f"{argv[0]} did not finish within {timeout:g} s: killed") from None
        report = os.read(read, 256).decode().split()
    finally:
        os.close(read)
        if write != -1:
            os.close(write)
    if proc.returncode != 0 or len(report) != 5:
        raise LaunchFailed(f"{__file__} could not run {argv[0]} (exit {proc.returncode}, report {report})")
    status, wall, utime, stime, maxrss = report
    return float(wall), float(utime) + float(stime), int(maxrss), os.waitstatus_to_exitcode(int(status))


def captured(argv: list[str], *, timeout: float | None = None, **popen: Any) -> tuple[float, float, int, int, str, str]:
    """launched() with the command's output: (wall s, CPU s, peak RSS KiB, exit code, stdout, stderr).

    The output goes to temporary files, not pipes: a pipe nobody reads while waiting would stop a
    command that prints more than the pipe holds.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        wall, cpu, rss_kib, code = launched(argv, timeout=timeout, stdout=out, stderr=err, **popen)
        out.seek(0)
        err.seek(0)
        return wall, cpu, rss_kib, code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def _main() -> None:
    fd, argv = int(sys.argv[1]), sys.argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)  # exec failed: the caller sees the status
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    os.write(fd, f"{status} {wall} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss}".encode())


if __name__ == "__main__":
    _main()
