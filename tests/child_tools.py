"""Run the project's commands as child processes, as a user would, with bounded waits."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from .conftest import MS

#: The children run as a user would: without the suite's asyncio debug mode.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
#: The longest a child process may take (it starts a Python interpreter).
CHILD_WAIT = 60_000 * MS
#: The first line ``fal-realtime serve`` prints.
LISTENING = re.compile(r"^fal-realtime gateway listening on (https?)://127\.0\.0\.1:(\d+)$")


async def start(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """Start ``args`` in a child with its stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**CHILD_ENV, **(env or {})},
        cwd=cwd,
    )


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Wait (bounded) for ``proc``; return exit code, the rest of stdout, and stderr."""
    try:
        async with asyncio.timeout(CHILD_WAIT):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """Run ``args`` in a child; return exit code, stdout, stderr."""
    return await finish(await start(*args, env=env, cwd=cwd))


def one_error_line(stderr: str) -> str:
    """Return stderr's single ``fal-realtime: error: ...`` line (fail on anything else)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fal-realtime: error: "), stderr
    return lines[0]


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    """Stop ``proc`` with ``sig`` (bounded), then kill it."""
    if proc.returncode is None:
        proc.send_signal(sig)
    try:
        async with asyncio.timeout(CHILD_WAIT):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def interrupt(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Send Ctrl-C (if it still runs); return the exit code and the rest of stdout and stderr."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(CHILD_WAIT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def launch(
    *args: str, until: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start ``fal-realtime ARGS``; return it once it printed a line starting with ``until``,
    with the lines it printed (a child that ends first fails the test with its stderr)."""
    proc = await start(sys.executable, "-m", "fal_realtime", *args, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(CHILD_WAIT):
            while not lines or not lines[-1].startswith(until):
                line = await proc.stdout.readline()
                if not line:
                    raise AssertionError((await proc.stderr.read()).decode())
                lines.append(line.decode().rstrip("\n"))
    except BaseException:
        await stop(proc)
        raise
    return proc, lines


class Served:
    """A ``fal-realtime serve`` child process and what it printed at start-up."""

    def __init__(self, proc: asyncio.subprocess.Process, lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines
        match = LISTENING.match(lines[0])
        assert match, lines[0]
        self.scheme, self.port = match.group(1), int(match.group(2))

    async def stop(self) -> tuple[int, str, str]:
        """Send Ctrl-C; return the exit code and the rest of stdout and stderr."""
        return await interrupt(self.proc)


async def serve(*args: str, env: dict[str, str] | None = None) -> Served:
    """Start ``fal-realtime serve --port 0 ARGS``; return once it printed its start-up lines."""
    return Served(*await launch("serve", "--port", "0", *args, until="press Ctrl-C", env=env))
