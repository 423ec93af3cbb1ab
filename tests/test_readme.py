"""The README's commands: every ``bitcompose`` command line parses with today's CLI (no stale flag), and the
bring-your-own-data block runs as written (slow)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bitcompose.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def _commands() -> list[list[str]]:
    commands = []
    for block in _bash_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "bitcompose" in words:
                commands.append(words[words.index("bitcompose") + 1 :])
            elif "bitcompose.cli" in words:
                commands.append(words[words.index("bitcompose.cli") + 1 :])
    return commands


def test_every_readme_command_parses() -> None:
    commands = _commands()
    assert len(commands) >= 15
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse reports a bad command by exiting
            pytest.fail(f"README command does not parse: bitcompose {' '.join(argv)} ({exc})")


def test_readme_commands_write_only_into_the_ignored_runs_folder() -> None:
    """Running the README's commands in a clone leaves ``git status`` clean: every ``--out`` (and the example's
    own data file) lies under ``runs/``, which git ignores; the committed pages name their own ``--out``."""
    ignored = (README.parent / ".gitignore").read_text().split()
    assert "runs/" in ignored
    outs = [argv[argv.index("--out") + 1] for argv in _commands() if "--out" in argv]
    assert len(outs) >= 10
    assert [o for o in outs if not o.startswith("runs/")] == []
    saves = re.findall(r"np\.savez\('([^']+)'", README.read_text())
    assert saves and all(f.startswith("runs/") for f in saves)


@pytest.mark.slow
def test_bring_your_own_data_block_runs_as_written(tmp_path: Path) -> None:
    block = next(b for b in _bash_blocks() if "--data my.npz" in b)
    bindir = Path(sys.executable).parent
    for line in block.splitlines():
        if not line.strip():
            continue
        cmd = line.split("#")[0].strip() if line.startswith("bitcompose") else line
        subprocess.run(cmd, shell=True, check=True, cwd=tmp_path, env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert (tmp_path / "runs" / "mine.png").is_file() and (tmp_path / "runs" / "mine.npz").is_file()
