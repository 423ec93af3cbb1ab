"""Run the README's commands as a new user would, in a fresh clone and with an empty cache: how long each takes at
its default size on this CPU, whether it succeeds, and whether ``git status`` is clean afterwards.

    python scripts/readme_commands.py --json-out docs/results/readme_commands.json

Commands are taken from the README's ``bash`` blocks, in order, and run with ``bash -c`` in the clone (the
``bitcompose`` of this interpreter's environment first on ``PATH``, the clone's ``src`` on ``PYTHONPATH``). Those that
need data not on this machine, several GPUs, or train models for longer than a few minutes (:data:`SKIPPED`) are
listed as skipped with the reason; ``make demo`` is timed as the ``bitcompose demo`` it runs. The
machine, the load before and after, and the thread count are printed with the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: README commands not run here, by prefix, and why.
SKIPPED = {
    "make test": "the test suite (run by CI)",
    "bitcompose train --preset cifar10": "needs the CIFAR-10 files (not on this machine)",
    "torchrun": "needs several GPUs",
    "bitcompose train --out runs/c10 --resume": "resumes the CIFAR-10 run",
    "bitcompose compose objects": "trains the objects models first (about 20 min each on 2 cores)",
    "bitcompose compose prompts": "trains the prompt models first (about 20 min each on 2 cores)",
    "bitcompose compose guidance": "trains the MNIST model and guide first (about 20 min each on 2 cores)",
    "bitcompose toy2d --table": "a whole table (about 35 min from an empty cache)",
    "bitcompose study": "a study grid (18-60 min)",
    "bitcompose caption": "the captioning models (about 10 min each) and their sweep",
    "pip install": "an install command",
    "sudo": "an install command",
    "apt-get": "an install command",
}


def readme_commands(readme: Path) -> list[str]:
    """Every command line of the README's ``bash`` blocks (continuations joined, comments kept off)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(re.split(r"\s+#\s", line)[0].strip())
    return lines


def skip_reason(command: str) -> str | None:
    for prefix, why in SKIPPED.items():
        if command.startswith(prefix):
            return why
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json-out", default=None, help="also write the rows and the machine facts here")
    parser.add_argument("--keep", action="store_true", help="keep the clone and the cache (printed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bitcompose-readme-"))
    clone, cache = work / "clone", work / "cache"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(
        os.environ, BITCOMPOSE_CACHE=str(cache), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    env["PYTHONPATH"] = str(clone / "src")  # the clone's code, whatever this environment has installed
    facts: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": env.get("OMP_NUM_THREADS", "default"),
        "load_before": os.getloadavg()[0],
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip(),
    }
    rows: list[dict[str, Any]] = []
    for command in readme_commands(clone / "README.md"):
        why = skip_reason(command)
        if command.startswith("make demo"):
            command = (
                "bitcompose demo --out runs/demo --overwrite"  # the Makefile's demo, its .venv already made
            )
        if why is not None:
            rows.append({"command": command, "skipped": why})
            print(f"skip  {command}  ({why})", flush=True)
            continue
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        last = (done.stderr.strip().splitlines() or [""])[-1][:200]
        rows.append(
            {"command": command, "rc": done.returncode, "seconds": round(seconds, 1), "last_line": last}
        )
        print(
            f"{done.returncode:>4}  {seconds:7.1f} s  {command}"
            + (f"\n      {last}" if done.returncode else "")
        )
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True
    ).stdout
    facts |= {"load_after": os.getloadavg()[0], "git_status": status.splitlines()}
    print(f"git status in the clone: {'clean' if not status else status}")
    print(json.dumps(facts))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"facts": facts, "rows": rows}, indent=2) + "\n")
    if args.keep:
        print(f"kept {work}")
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    failed = [r for r in rows if r.get("rc")]
    return 1 if failed or status else 0


if __name__ == "__main__":
    sys.exit(main())
