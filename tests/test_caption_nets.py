"""Tests of the captioning networks: shapes, (non-)causality, beam search, exact overfitting of a few captions."""

from __future__ import annotations

import pytest
import torch

from bitcompose import BitDenoiser, diffusion_loss, sample
from bitcompose.nets.ar_decoder import CaptionARNet, causal_mask
from bitcompose.nets.caption import CaptionDiffusionNet, CaptionNetConfig, caption_net_config

V, L = 10, 6


def _config(**kw: object) -> CaptionNetConfig:
    base: dict[str, object] = dict(encoder_channels=(8, 16), dim=32, depth=2, heads=2, mlp_ratio=2)
    base.update(kw)
    return CaptionNetConfig(vocab_size=V, max_len=L, **base)  # type: ignore[arg-type]


def _seeded(fn, seed: int = 0):  # type: ignore[no-untyped-def]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _fixed_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    images = colours[:, :, None, None].expand(4, 3, 16, 16).clone()  # one plain colour per image
    tokens = torch.tensor(
        [[4, 5, 6, 3, 0, 0], [7, 8, 3, 0, 0, 0], [9, 4, 4, 5, 3, 0], [6, 6, 7, 8, 9, 3]], dtype=torch.long
    )
    return images, tokens


@pytest.mark.parametrize("head", ["linear", "softmax"])
def test_diffusion_net_shapes_and_feature_reuse(head: str) -> None:
    cfg = _config(output_head=head)
    net = _seeded(lambda: CaptionDiffusionNet(cfg)).eval()
    assert cfg.num_bits == 4
    x_in = torch.randn(3, L, 2 * cfg.num_bits)
    gamma = torch.rand(3)
    images = torch.randn(3, 3, 32, 32)
    out = net(x_in, gamma, images)
    assert out.shape == (3, L, cfg.num_bits)
    # Precomputed image tokens give the same output as images.
    feats = net.encode(images)
    assert feats.shape == (3, cfg.grid**2, cfg.dim)
    torch.testing.assert_close(net(x_in, gamma, feats), out)
    if head == "softmax":
        assert float(out.detach().abs().max()) <= cfg.bit_scale + 1e-6


def test_diffusion_net_bad_inputs() -> None:
    net = CaptionDiffusionNet(_config())
    with pytest.raises(ValueError, match="x_in"):
        net(torch.randn(2, L, 4), torch.rand(2), torch.randn(2, 3, 32, 32))  # missing self-cond bits
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(2, L, 8), torch.rand(2), None)
    with pytest.raises(ValueError, match="images"):
        net(torch.randn(2, L, 8), torch.rand(2), torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown caption net size"):
        caption_net_config("huge", vocab_size=V, max_len=L)


def test_diffusion_decoder_is_not_causal() -> None:
    cfg = _config(output_head="linear")
    net = _seeded(lambda: CaptionDiffusionNet(cfg)).eval()
    torch.nn.init.normal_(net.head.weight)  # the linear head starts at zero
    x_in = torch.randn(1, L, 8)
    images = torch.randn(1, 3, 32, 32)
    gamma = torch.tensor([0.5])
    changed = x_in.clone()
    changed[0, -1] += 1.0  # change only the last position's input
    a, b = net(x_in, gamma, images), net(changed, gamma, images)
    assert not torch.allclose(a[0, 0], b[0, 0]), "the first position must see the last one"


def test_ar_decoder_is_causal() -> None:
    cfg = _config()
    net = _seeded(lambda: CaptionARNet(cfg)).eval()
    memory = net.encode(torch.randn(1, 3, 32, 32))
    tokens = torch.tensor([[10, 4, 5, 6, 7, 8]])  # start id (= V) first
    changed = tokens.clone()
    changed[0, -1] = 9
    a, b = net(tokens, memory), net(changed, memory)
    torch.testing.assert_close(a[0, :-1], b[0, :-1])  # earlier positions do not see the last token
    assert not torch.allclose(a[0, -1], b[0, -1])
    assert a.shape == (1, L, V)
    assert causal_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]


def test_beam_one_equals_greedy_and_wider_beams_score_no_worse() -> None:
    cfg = _config()
    net = _seeded(lambda: CaptionARNet(cfg), seed=3).eval()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    greedy = net.greedy(images, eos_id=3, pad_id=0)
    # reference greedy decoding written out step by step
    memory = net.encode(images)
    seq = torch.full((5, 1), net.start_id)
    for _ in range(L):
        nxt = net(seq, memory)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    ref = seq[:, 1:].clone()
    for row in ref:  # after the first EOS, padding
        hits = (row == 3).nonzero()
        if len(hits):
            row[int(hits[0]) + 1 :] = 0
    assert torch.equal(greedy, ref)
    assert torch.equal(net.beam_search(images, beam=1, eos_id=3, pad_id=0), greedy)

    def logprob(seqs: torch.Tensor) -> torch.Tensor:
        inp = net.shift_right(seqs)
        lp = torch.log_softmax(net(inp, memory), -1).gather(-1, seqs[..., None])[..., 0]
        keep = torch.ones_like(lp, dtype=torch.bool)
        for i, row in enumerate(seqs):
            hits = (row == 3).nonzero()
            if len(hits):
                keep[i, int(hits[0]) + 1 :] = False
        return (lp * keep).sum(-1)

    beam4 = net.beam_search(images, beam=4, eos_id=3, pad_id=0)
    assert bool((logprob(beam4) >= logprob(greedy) - 1e-5).all())
    with pytest.raises(ValueError, match="beam"):
        net.beam_search(images, beam=0)


def test_tiny_diffusion_captioner_overfits_exactly() -> None:
    images, tokens = _fixed_pairs()
    cfg = _config(depth=1, image_size=16, output_head="linear")
    net = _seeded(lambda: CaptionDiffusionNet(cfg))
    den = BitDenoiser(net, channel_dim=-1)
    x0 = cfg.codec.encode_sequence(tokens)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3)
    for _ in range(400):
        loss = diffusion_loss(den, x0, cond=net.encode(images), generator=gen).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    bits = sample(
        den, (4, L, cfg.num_bits), steps=10, td=1.0, cond=images, generator=gen, progress=False
    ).samples
    assert torch.equal(cfg.codec.decode_sequence(bits), tokens)


def test_tiny_ar_captioner_overfits_exactly() -> None:
    images, tokens = _fixed_pairs()
    net = _seeded(lambda: CaptionARNet(_config(depth=1, image_size=16)))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = net.loss(images, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    assert torch.equal(net.greedy(images, eos_id=3, pad_id=0), tokens)
    assert torch.equal(net.beam_search(images, beam=3, eos_id=3, pad_id=0), tokens)
