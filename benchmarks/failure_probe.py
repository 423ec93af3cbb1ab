"""A probe of the command line's failure modes: bad inputs, kills, overwritten files. Prints counts.

Runs the real ``bitcompose`` command (a subprocess each) on fabricated files in a temporary folder:

* **bad inputs**: each must exit non-zero with exactly one line on stderr, ``bitcompose[ <command>]: error: …``,
  no traceback;
* **kills**: a tiny training run is SIGKILLed at random moments (including during checkpoint writes) and resumed
  each time; it must finish and end with the same weights as an uninterrupted run (exact resume);
* **overwrites**: files that existed before a command (outputs named on purpose) must be byte-identical after it.

Usage (≈ 3 min on 2 cores)::

    python benchmarks/failure_probe.py [--kills 6] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLI = [sys.executable, "-m", "bitcompose.cli"]
TINY = [
    "model.base_channels=8", "model.num_res_blocks=1", "model.num_groups=4", "model.per_head_dim=8",
    "batch_size=8", "sample.steps=2", "sample.num_eval=12", "log_every=1", "sample_every=0",
]  # fmt: skip


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fixtures(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    f = {}
    f["good"] = d / "good.npz"
    np.savez(f["good"], images=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), labels=np.arange(40) % 4)
    f["garbage"] = d / "garbage.npz"
    f["garbage"].write_bytes(b"this is not a zip file")
    f["float"] = d / "float.npz"
    np.savez(f["float"], images=rng.random((10, 8, 8)))
    f["neg_labels"] = d / "neg_labels.npz"
    np.savez(
        f["neg_labels"], images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), labels=-np.ones(10, int)
    )
    f["short_labels"] = d / "short_labels.npz"
    np.savez(
        f["short_labels"], images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), labels=np.zeros(3, int)
    )
    f["huge_labels"] = d / "huge_labels.npz"
    np.savez(
        f["huge_labels"],
        images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8),
        labels=np.arange(10) * 10**6,
    )
    f["pickled"] = d / "pickled.npz"
    np.savez(f["pickled"], images=np.array([{"a": 1}] * 3, dtype=object))
    f["no_images"] = d / "no_images.npz"
    np.savez(f["no_images"], pixels=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8))
    f["existing_png"] = d / "existing.png"
    f["existing_png"].write_bytes(b"precious")
    f["existing_npz"] = d / "existing.npz"
    f["existing_npz"].write_bytes(b"precious too")
    f["wide"] = d / "wide.npz"
    np.savez(f["wide"], images=rng.integers(0, 256, (10, 8, 12), dtype=np.uint8))
    f["a_file"] = d / "a_file"
    f["a_file"].write_text("not a folder")
    f["demo"] = d / "demo"
    f["demo"].mkdir()
    (f["demo"] / "metrics.json").write_text("{}")
    return f


def _bad_inputs(d: Path, f: dict[str, Path], run: Path) -> list[tuple[str, list[str]]]:
    out = str(d / "bad_run")
    tiny = _sets(TINY)
    cases = [
        ("missing data file", ["train", "--data", str(d / "missing.npz"), "--out", out]),
        ("not a zip", ["train", "--data", str(f["garbage"]), "--out", out]),
        ("float images", ["train", "--data", str(f["float"]), "--out", out]),
        ("negative labels", ["train", "--data", str(f["neg_labels"]), "--out", out]),
        ("labels of the wrong length", ["train", "--data", str(f["short_labels"]), "--out", out]),
        ("oversized labels", ["train", "--data", str(f["huge_labels"]), "--out", out]),
        ("pickled object array", ["train", "--data", str(f["pickled"]), "--out", out]),
        ("no images array", ["train", "--data", str(f["no_images"]), "--out", out]),
        ("unknown preset", ["train", "--preset", "nope", "--out", out]),
        ("NaN learning rate", ["train", "--data", str(f["good"]), "--out", out, "--set", "optim.lr=nan"]),
        ("negative steps", ["train", "--data", str(f["good"]), "--out", out, "--steps", "-1"]),
        ("unknown config key", ["train", "--data", str(f["good"]), "--out", out, "--set", "nope=1"]),
        ("wrong config type", ["train", "--data", str(f["good"]), "--out", out, "--set", "batch_size=abc"]),
        ("several config problems", ["train", "--data", str(f["good"]), "--out", out, "--set", "batch_size=0",
                                     "--set", "optim.lr=-1"]),
        ("--out is a file", ["train", "--data", str(f["good"]), "--out", str(f["a_file"]), *tiny, "--steps", "1"]),
        ("resume of a folder without checkpoint", ["train", "--out", str(d / "empty"), "--resume"]),
        ("existing run without --resume", ["train", "--data", str(f["good"]), "--out", str(run), *tiny]),
        ("resume with another config", ["train", "--out", str(run), "--resume", "--set", "model.base_channels=16"]),
        ("sample: no run", ["sample", str(d / "nowhere"), "--out", str(d / "s.png")]),
        ("sample: existing png", ["sample", str(run), "--n", "2", "--out", str(f["existing_png"])]),
        ("sample: --out is a folder", ["sample", str(run), "--n", "2", "--out", str(d)]),
        ("sample: not a png", ["sample", str(run), "--n", "2", "--out", str(d / "s.jpg")]),
        ("sample: unwritable folder", ["sample", str(run), "--n", "2", "--out", "/proc/nope/s.png"]),
        ("sample: n = 0", ["sample", str(run), "--n", "0", "--out", str(d / "s0.png")]),
        ("sample: label out of range", ["sample", str(run), "--n", "2", "--label", "99", "--out", str(d / "s1.png")]),
        ("sample: unknown precision", ["sample", str(run), "--precision", "fp8", "--out", str(d / "s2.png")]),
        ("evaluate: existing output", ["evaluate", str(run), "--n", "4", "--out", str(f["existing_npz"])]),
        ("toy2d: unknown task", ["toy2d", "--task", "nope", "--param", "exact", "--sampler", "reverse"]),
        ("toy2d: negative n", ["toy2d", "--task", "product", "--param", "exact", "--sampler", "reverse", "--n",
                               "-5"]),
        ("compose classes: same class", ["compose", "classes", str(run), "--a", "1", "--b", "1", "--out",
                                         str(d / "c.png")]),
        ("compose classes: class out of range", ["compose", "classes", str(run), "--a", "1", "--b", "40", "--out",
                                                 str(d / "c.png")]),
        ("compose objects: k = 9", ["compose", "objects", "--k", "9", "--sampler", "hmc"]),
        ("compose objects: SMC on a score model", ["compose", "objects", "--k", "2", "--sampler", "hmc",
                                                   "--resample-ess", "0.5", "--cache", str(d / "cache")]),
        ("caption: unknown preset", ["caption", "train", "--preset", "nope", "--out", str(d / "cap")]),
        # the output rule, the option rule (wave 3): refused before any work
        ("evaluate: a run's own file, even with --overwrite", ["evaluate", str(run), "--n", "4", "--out",
                                                               str(run / "config.json"), "--overwrite"]),
        ("evaluate: not a .json", ["evaluate", str(run), "--n", "4", "--out", str(d / "e.txt")]),
        ("evaluate: missing --bpd-data", ["evaluate", str(run), "--n", "4", "--bpd-data", str(d / "no.npz")]),
        ("sample: td >= steps", ["sample", str(run), "--n", "2", "--steps", "5", "--td", "5", "--out",
                                 str(d / "s3.png")]),
        ("demo: an earlier demo in --out", ["demo", "--out", str(f["demo"])]),
        ("demo: --out is a file", ["demo", "--out", str(f["a_file"])]),
        ("toy2d: --resample-ess with reverse", ["toy2d", "--param", "exact", "--sampler", "reverse",
                                                "--resample-ess", "0.5"]),
        ("toy2d: --mixture-sharpen on a product", ["toy2d", "--task", "product", "--param", "exact",
                                                   "--mixture-sharpen", "3.5"]),
        ("toy2d: untrained networks", ["toy2d", "--param", "score", "--train-steps", "0"]),
        ("toy2d: --out is a file", ["toy2d", "--param", "exact", "--sampler", "reverse", "--out",
                                    str(f["a_file"])]),
        ("compose classes: existing png", ["compose", "classes", str(run), "--a", "1", "--b", "2", "--out",
                                           str(f["existing_png"])]),
        ("compose objects: a .jpg", ["compose", "objects", "--k", "2", "--sampler", "reverse", "--out",
                                     str(d / "o.jpg"), "--cache", str(d / "cache")]),
        ("compose objects: --train-steps 0", ["compose", "objects", "--k", "2", "--sampler", "reverse",
                                              "--train-steps", "0"]),
        ("compose guidance: --previous without --table", ["compose", "guidance", "--scale", "1", "--sampler",
                                                          "hmc", "--previous", str(f["existing_npz"])]),
        ("compose objects: --previous not a page", ["compose", "objects", "--table", "--out", str(d / "tab"),
                                                    "--previous", str(f["existing_npz"])]),
        ("caption sample: not a .png", ["caption", "sample", str(run), "--out", str(d / "sheet.txt")]),
        ("non-square images without --crop / --pad", ["train", "--data", str(f["wide"]), "--out", out, *tiny]),
        ("--crop and --pad together", ["train", "--data", str(f["wide"]), "--out", out, "--crop", "--pad"]),
        ("study: --out is a file", ["study", "--out", str(f["a_file"])]),
        ("study: unwritable --out", ["study", "--out", "/proc/nope/study"]),
        ("compose prompts: n = 0", ["compose", "prompts", "--n", "0"]),
        ("caption evaluate: no run", ["caption", "evaluate", str(d / "nowhere")]),
        ("caption sweep: unknown preset", ["caption", "sweep", "--preset", "nope", "--out", str(d / "sweep")]),
        ("classifier train: unknown data set", ["classifier", "train", "--dataset", "nope"]),
        ("classifier train: steps = 0", ["classifier", "train", "--dataset", "digits", "--steps", "0"]),
        ("toy2d: more samples than memory", ["toy2d", "--param", "exact", "--sampler", "reverse", "--n", "200000"]),
    ]  # fmt: skip
    return cases


def _interrupts(d: Path, run: Path) -> list[dict[str, Any]]:
    """SIGINT a few seconds into long commands: each must exit 130 saying what it was and what was kept."""
    cases = [
        ("sample", ["sample", str(run), "--n", "4000", "--steps", "200", "--out", str(d / "int.png")]),
        ("evaluate", ["evaluate", str(run), "--n", "4000", "--steps", "200"]),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = []
    for name, argv in cases:
        proc = subprocess.Popen(
            [*CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        time.sleep(8.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        last = (err.strip().splitlines() or [""])[-1]
        ok = (
            proc.returncode == 130
            and last.startswith(f"bitcompose {name}: interrupted")
            and "Traceback" not in err
        )
        results.append({"case": f"SIGINT {name}", "ok": ok, "exit": proc.returncode, "said": last})
    return results


def _corrupt_cases(d: Path, run: Path) -> list[tuple[str, list[str]]]:
    """Damaged copies of the trained run: each must give one line, not a traceback."""
    import shutil

    cases: list[tuple[str, list[str]]] = []
    for name, damage in [
        ("truncated model.safetensors", lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 10)),
        ("missing model.safetensors", lambda c: (c / "model.safetensors").unlink()),
        ("config.json not JSON", lambda c: (c / "config.json").write_text("{not json")),
        ("malicious training_state.pt", lambda c: (c / "training_state.pt").write_bytes(_malicious())),
    ]:
        copy = d / f"damaged_{len(cases)}"
        shutil.copytree(run, copy)
        damage(copy / "checkpoint")
        if "training_state" in name:
            cases.append((name, ["train", "--out", str(copy), "--resume", "--steps", "12"]))
        else:
            cases.append((name, ["sample", str(copy), "--n", "2", "--out", str(d / f"dmg{len(cases)}.png")]))
    return cases


def _malicious() -> bytes:
    import io
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    pickle.dump(Evil(), buf)
    return buf.getvalue()


def _one_line_error(res: subprocess.CompletedProcess[str]) -> bool:
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    # "bitcompose: error: …" from the commands, "bitcompose <command>: error: …" from argument parsing
    return (
        res.returncode != 0
        and len(lines) == 1
        and re.match(r"bitcompose[a-z0-9 ]*: error: ", lines[0]) is not None
    )


def _kills(d: Path, f: dict[str, Path], kills: int, seed: int) -> dict[str, Any]:
    """Kill a tiny training run ``kills`` times at random moments; resume until done; compare with a clean run."""
    args = [
        "--data",
        str(f["good"]),
        *_sets([*TINY, "checkpoint_every=2"]),
        "--steps",
        "600",
        "--no-progress",
    ]
    clean, killed = d / "clean", d / "killed"
    assert _run(["train", *args, "--out", str(clean)]).returncode == 0
    rng = random.Random(seed)
    survived = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(kills):
        resume = ["--resume"] if (killed / "checkpoint").exists() else []
        proc = subprocess.Popen(
            [*CLI, "train", *args, "--out", str(killed), *resume],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        time.sleep(rng.uniform(2.0, 6.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            survived += 1
        else:
            break
    res = _run(["train", *args, "--out", str(killed), "--resume"])
    finished = res.returncode == 0
    same = finished and _digest(clean / "checkpoint" / "model.safetensors") == _digest(
        killed / "checkpoint" / "model.safetensors"
    )
    leftovers = [p.name for p in killed.iterdir() if ".tmp" in p.name or p.name.startswith(".checkpoint")]
    return {
        "kills": survived,
        "finished": finished,
        "identical_to_clean_run": same,
        "leftover_temporaries": leftovers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f = _fixtures(d)
        run = d / "run"
        res = _run(["train", "--data", str(f["good"]), "--out", str(run), *_sets(TINY), "--steps", "4",
                    "--no-progress"])  # fmt: skip
        if res.returncode != 0:
            raise SystemExit(f"the probe's own training run failed:\n{res.stderr}")
        # every file there before, the run's too (its .lock is the lock itself: a refused `train` takes it)
        before = {p: _digest(p) for p in [*d.iterdir(), *run.rglob("*")] if p.is_file() and p.name != ".lock"}
        results: list[dict[str, Any]] = []
        for name, argv in _bad_inputs(d, f, run) + _corrupt_cases(d, run):
            try:
                r = _run(argv, timeout=90)
            except subprocess.TimeoutExpired:  # it started working instead of refusing the input
                r = subprocess.CompletedProcess(argv, -1, "", "still running after 90 s: not refused")
            ok = _one_line_error(r)
            results.append(
                {"case": name, "one_line_error": ok, "exit": r.returncode, "stderr": r.stderr.strip()}
            )
            if not args.json:
                print(
                    f"{'ok ' if ok else 'BAD'} {name}: {r.stderr.strip().splitlines()[-1:] or r.returncode}"
                )
        interrupts = _interrupts(d, run)
        overwritten = [str(p) for p, h in before.items() if not p.exists() or _digest(p) != h]
        kills = _kills(d, f, args.kills, args.seed)
    report = {
        "bad_inputs_tried": len(results),
        "handled_one_line": sum(r["one_line_error"] for r in results),
        "not_handled": [r for r in results if not r["one_line_error"]],
        "interrupts_tried": len(interrupts),
        "interrupts_said": sum(r["ok"] for r in interrupts),
        "interrupts_not_said": [r for r in interrupts if not r["ok"]],
        "files_overwritten": overwritten,
        **kills,
    }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
