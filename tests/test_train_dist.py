from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from _train_tiny import tiny_config, tiny_dataset
from bitcompose.images.trainer import ImageTrainer
from bitcompose.training.dist import DistInfo, GlobalBatchOrder, cleanup_distributed, gather_to_main, mix_seed

STEPS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    try:
        trainer = ImageTrainer(
            tiny_config(steps=STEPS, device="cpu", precision="fp32"),
            Path(out) / "run",
            dataset=tiny_dataset(),
            progress=False,
        )
        assert trainer.info.world_size == world and trainer.order.local_batch == 8 // world
        trainer.train()
        torch.save(trainer.net.state_dict(), Path(out) / f"rank{rank}.pt")
        gathered = gather_to_main(torch.full((rank + 1, 2), float(rank)), trainer.info)
        if rank == 0:
            assert gathered is not None
            torch.save(gathered, Path(out) / "gathered.pt")
        else:
            assert gathered is None
    finally:
        cleanup_distributed()


def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    single = ImageTrainer(
        tiny_config(steps=STEPS, device="cpu", precision="fp32"),
        tmp_path / "single",
        dataset=tiny_dataset(),
        progress=False,
    )
    single.train()
    initial = ImageTrainer(
        tiny_config(steps=STEPS, device="cpu", precision="fp32"),
        tmp_path / "init",
        dataset=tiny_dataset(),
        progress=False,
    )
    moved = 0.0
    for name, p in single.net.state_dict().items():
        assert torch.equal(r0[name], r1[name]), f"ranks disagree on {name}"
        torch.testing.assert_close(r0[name], p, rtol=1e-4, atol=1e-5, msg=name)
        moved = max(moved, float((p - initial.net.state_dict()[name]).abs().max()))
    assert moved > 1e-3  # training changed the weights, so the comparison is not vacuous
    gathered = torch.load(tmp_path / "gathered.pt")
    assert torch.equal(gathered, torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_global_batch_order_slices_one_permutation() -> None:
    n, batch = 8, 4
    full = GlobalBatchOrder(n, batch, seed=3)
    ranks = [GlobalBatchOrder(n, batch, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = []
    for step in range(4):  # 16 draws = two full epochs
        whole = full.indices(step)
        parts = [r.indices(step) for r in ranks]
        assert torch.equal(torch.cat(parts), whole)
        assert not set(parts[0].tolist()) & set(parts[1].tolist())
        seen.extend(whole.tolist())
    assert sorted(seen[:8]) == list(range(8)) and sorted(seen[8:]) == list(range(8))
    assert seen[:8] != seen[8:]  # a new permutation each epoch


def test_batches_run_across_epoch_boundaries() -> None:
    order = GlobalBatchOrder(10, 4, seed=5)
    stream = torch.cat([order.indices(s) for s in range(5)]).tolist()  # 20 draws = two epochs of 10
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] == order.permutation(0).tolist() and stream[10:] == order.permutation(1).tolist()


def test_mix_seed_is_deterministic_and_spread() -> None:
    assert mix_seed(1, 2, 3) == mix_seed(1, 2, 3)
    seeds = {mix_seed(0, s, p) for s in range(30) for p in range(30)}
    assert len(seeds) == 900 and all(0 <= s < 2**63 for s in seeds)


def test_single_process_gather_is_identity() -> None:
    x = torch.arange(6).reshape(3, 2)
    assert gather_to_main(x, DistInfo()) is x
