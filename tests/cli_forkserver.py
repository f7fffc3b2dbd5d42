"""Run many `larpo` commands as separate processes without paying the import of torch each time.

Started once as ``python tests/cli_forkserver.py``, this process imports larpo's heavy dependencies,
then reads one JSON request per line on stdin::

    {"args": [...], "env": {...}, "cwd": "...", "stdout": "path", "stderr": "path", "fsize": null}

and for each forks a child that runs ``larpo.cli`` as ``__main__`` (what ``python -m larpo.cli ARGS``
does) with that environment, working directory and stdout/stderr files, optionally under
``RLIMIT_FSIZE`` (with SIGXFSZ ignored, so writes past the limit fail with EFBIG). It answers one JSON
line ``{"code": <exit status as subprocess reports it>}`` per request.

A cold ``python -m larpo.cli`` spends several CPU seconds importing torch and transformers; the
children share the parent's imports, so a case costs only its own work. The parent never runs a
torch op, so no thread pool exists at fork time.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import signal
import sys
import traceback


def _preload() -> None:
    import larpo.cli_parser  # noqa: F401
    import larpo.evaluation.held_out  # noqa: F401
    import larpo.evaluation.report  # noqa: F401
    import larpo.model_io  # noqa: F401
    import larpo.rewards  # noqa: F401
    import larpo.run.runner  # noqa: F401
    import larpo.trainer.inputs  # noqa: F401

    sys.modules.pop("larpo.cli", None)  # run_module executes it afresh, as `python -m` does


def _child(request: dict) -> None:
    code = 1
    try:
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # `python -m` puts the working directory first on sys.path
        os.environ.clear()
        os.environ.update(request["env"])
        extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:0] = [p for p in extra if p not in sys.path]
        if request.get("fsize") is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
        sys.argv = ["larpo", *request["args"]]
        try:
            runpy.run_module("larpo.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
        except BaseException:  # what the interpreter would print for an uncaught exception
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main() -> None:
    _preload()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
