"""How the tests run the project's command-line scripts as a user would: a fresh Python process in
the repository root, ``--cfg-options`` written from a dict."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]


def cfg_options(options: dict) -> list:
    """``['--cfg-options', 'key=value', ...]``; lists and tuples in mmengine's ``[a,b]`` / ``(a,b)`` form."""
    def text(value):
        if isinstance(value, (list, tuple)):
            inner = ','.join(text(v) for v in value)
            return f'[{inner}]' if isinstance(value, list) else f'({inner})'
        return str(value)

    return ['--cfg-options', *(f'{key}={text(value)}' for key, value in options.items())]


def run_script(*args, threads: Optional[int] = None, check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` in the repository root; ``threads`` sets OMP_NUM_THREADS. With ``check``, a
    failing script fails the test with the end of its output."""
    env = dict(os.environ, **({'OMP_NUM_THREADS': str(threads)} if threads else {}))
    done = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
