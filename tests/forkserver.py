"""Command-line runs without paying for Python's start-up each time: a server process imports
lit_mnist's command line once, then forks a fresh child per run. Each child starts from the same
clean state the server had after its imports (nothing of an earlier run leaks into the next), runs
`lit-mnist ARGS` in its own folder and exits with the command's status, so a SIGKILL or a signal
ends that child alone. Importing torch and Lightning costs about 5 s a process on a 2-core CPU;
a forked run costs only its own work.

    with ForkServer(env) as server:
        result = server.run(["fit", ...], cwd=folder)  # a subprocess.CompletedProcess

The server runs this file as a script; the tests talk to it over its stdin and stdout, a JSON
line each way per run.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


class ForkServer:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the fork server did not start: {ready!r}")

    def run(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        """`lit-mnist ARGS` in `cwd`, in a forked child; returncode as subprocess gives it
        (negative: the signal that ended the child)."""
        cwd = Path(cwd)
        out, err = cwd / ".forked.stdout", cwd / ".forked.stderr"
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "out": str(out), "err": str(err)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError("the fork server ended")
        status = json.loads(reply)["returncode"]
        stdout, stderr = out.read_text(), err.read_text()
        out.unlink()
        err.unlink()
        return subprocess.CompletedProcess(["lit-mnist", *args], status, stdout, stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _child(request: dict) -> None:
    """Runs in the forked child: the command, then exit with its status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a process of its own
    os.chdir(request["cwd"])
    for fd, path in ((1, request["out"]), (2, request["err"])):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(file, fd)
        os.close(file)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's whole life
    sys.argv = ["lit-mnist", *request["args"]]
    code = 0
    try:
        from lit_mnist.cli import main

        main()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve() -> None:
    import lit_mnist.cli  # noqa: F401 - the imports every child shares

    reply = sys.stdout
    print("ready", file=reply, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"returncode": code}), file=reply, flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in pytest ends the tests, not each child
    _serve()
