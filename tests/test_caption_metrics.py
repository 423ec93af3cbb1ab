"""Caption metrics (BLEU-4, CIDEr-D, ROUGE-L) on hand-computed cases, plus a cross-check with pycocoevalcap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitcompose.metrics.captions import (
    bleu,
    bleu4,
    caption_scores,
    cider_d,
    cider_d_per_image,
    exact_match,
    rouge_l,
    rouge_l_per_image,
    tokenize_caption,
)


def test_tokenize():
    assert tokenize_caption("A Man, riding a horse.") == ["a", "man", "riding", "a", "horse"]
    assert tokenize_caption("black-and-white  dog's_toy!") == ["black", "and", "white", "dog", "s", "toy"]
    assert tokenize_caption("  ") == []


def test_bleu_identical_is_one():
    caps = ["a small red circle to the left of a large blue square", "there is a cat"]
    assert bleu4(caps, [[c] for c in caps]) == pytest.approx(1.0, abs=1e-12)
    # punctuation and case do not matter
    assert bleu4(["A cat, on a mat."], [["a cat on a mat"]]) == pytest.approx(1.0, abs=1e-12)


def test_bleu_hand_computed_single():
    cand = "a small red circle to the left of a blue square"  # 11 words
    refs = ["a small red circle to the left of a large blue square", "a red circle left of a square"]  # 12, 7
    # clipped precisions: 11/11, 9/10 ("a blue" missing), 7/9, 6/8; closest ref length 12 -> BP = exp(1 - 12/11)
    expected = (1.0 * 9 / 10 * 7 / 9 * 6 / 8) ** 0.25 * math.exp(1 - 12 / 11)
    assert bleu4([cand], [refs]) == pytest.approx(expected, rel=1e-12)
    b = bleu([cand], [refs])
    assert b[0] == pytest.approx(math.exp(1 - 12 / 11), rel=1e-12)
    assert b[1] == pytest.approx((9 / 10) ** 0.5 * math.exp(1 - 12 / 11), rel=1e-12)


def test_bleu_is_corpus_level():
    c1 = "a small red circle to the left of a blue square"
    r1 = ["a small red circle to the left of a large blue square", "a red circle left of a square"]
    c2, r2 = "there is a cat", ["there is a cat"]
    # sums over the corpus: p = 15/15, 12/13, 9/11, 7/9; lengths c = 15, r = 12 + 4 = 16
    expected = (15 / 15 * 12 / 13 * 9 / 11 * 7 / 9) ** 0.25 * math.exp(1 - 16 / 15)
    assert bleu4([c1, c2], [r1, r2]) == pytest.approx(expected, rel=1e-12)
    mean_of_sentences = (bleu4([c1], [r1]) + bleu4([c2], [r2])) / 2
    assert abs(bleu4([c1, c2], [r1, r2]) - mean_of_sentences) > 1e-3


def test_bleu_closest_ref_length_ties_to_shorter_and_clipping():
    # candidate length 5; references of lengths 4 and 6 tie: the shorter (4) is used -> no brevity penalty
    assert bleu4(["a b c d e"], [["a b c d", "a b c d e f"]]) == pytest.approx(1.0, abs=1e-12)
    # clipping: "the the the the" against "the cat": unigram precision 1/4
    assert bleu(["the the the the"], [["the cat is here"]], max_n=1)[0] == pytest.approx(0.25)
    # no 4-gram match anywhere -> exactly 0; empty candidate -> 0
    assert bleu4(["the cat sat on the mat"], [["the cat is on the mat"]]) == 0.0
    assert bleu4([""], [["a b c d"]]) == 0.0


def test_rouge_l_hand_computed():
    # LCS(a b c d e, a x c y e z) = 3: P = 3/5, R = 3/6
    p, r = 3 / 5, 3 / 6
    expected = (1 + 1.44) * p * r / (r + 1.44 * p)
    assert rouge_l(["a b c d e"], [["a x c y e z"]]) == pytest.approx(expected, rel=1e-12)
    # max precision and max recall are taken separately over references (coco-caption): P = 3/5, R = 2/2
    expected2 = (1 + 1.44) * 0.6 * 1.0 / (1.0 + 1.44 * 0.6)
    assert rouge_l(["a b c d e"], [["a b", "a x c y e z w"]]) == pytest.approx(expected2, rel=1e-12)
    assert rouge_l(["a cat on a mat"], [["a cat on a mat"]]) == pytest.approx(1.0)
    assert rouge_l_per_image(["x y", "a b"], [["a b"], ["a b"]]) == [0.0, pytest.approx(1.0)]
    assert rouge_l([""], [["a"]]) == 0.0


def test_cider_identical_is_ten_and_no_overlap_is_zero():
    refs = [["a small red circle on the left"], ["two dogs play in the snow"], ["there is a blue square"]]
    cands = [r[0] for r in refs]
    # every n-gram order has an n-gram with non-zero IDF -> cosine 1 for n = 1..4, no length penalty -> 10
    assert cider_d_per_image(cands, refs) == pytest.approx([10.0, 10.0, 10.0], rel=1e-12)
    assert cider_d(["zebra giraffe", *cands[1:]], refs) == pytest.approx(20 / 3, rel=1e-12)
    assert cider_d_per_image(["zebra giraffe", *cands[1:]], refs)[0] == 0.0
    # a 2-word identical caption only has orders 1 and 2 -> (1 + 1 + 0 + 0) / 4 * 10 = 5
    assert cider_d_per_image(["a b", "c d"], [["a b"], ["c d"]]) == pytest.approx([5.0, 5.0])
    # one image: every reference n-gram has df = N = 1 -> IDF 0 -> CIDEr 0 (a property of the metric)
    assert cider_d(["a b c d"], [["a b c d"]]) == 0.0


def test_cider_hand_computed_length_penalty():
    refs = [["a b c d"], ["e f g h"]]
    # candidate = reference + 2 unseen words; IDF = log 2 for every n-gram (unseen ones included: df 0 -> log 1)
    # cosines: n=1: 4/(sqrt6*2); n=2: 3/(sqrt5*sqrt3); n=3: 2/(2*sqrt2); n=4: 1/sqrt3; delta = 5 - 3 bigrams
    cos = [4 / (math.sqrt(6) * 2), 3 / math.sqrt(15), 2 / (2 * math.sqrt(2)), 1 / math.sqrt(3)]
    expected = 10 * sum(cos) / 4 * math.exp(-(2**2) / (2 * 6.0**2))
    scores = cider_d_per_image(["a b c d x y", "e f g h"], refs)
    assert scores[0] == pytest.approx(expected, rel=1e-12)
    assert scores[1] == pytest.approx(10.0)
    # sigma controls the penalty
    s2 = cider_d_per_image(["a b c d x y", "e f g h"], refs, sigma=2.0)[0]
    assert s2 == pytest.approx(10 * sum(cos) / 4 * math.exp(-4 / 8), rel=1e-12)


def test_cider_clipping_and_reference_averaging():
    refs = [["a b c d"], ["e f g h"]]
    # "a a a a": unigram weight 4*idf clipped to the reference's 1*idf -> cosine idf^2 / (4 idf * 2 idf) = 1/8
    s = cider_d_per_image(["a a a a", "e f g h"], refs)[0]
    assert s == pytest.approx(10 * (1 / 8) / 4, rel=1e-12)
    # several references: the per-reference similarities are averaged
    two = cider_d_per_image(["a b c d", "e f g h"], [["a b c d", "p q r s"], ["e f g h"]])[0]
    assert 0 < two < 10
    one_a = cider_d_per_image(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]])[0]
    assert one_a == pytest.approx(10.0)


def test_caption_scores_and_errors():
    out = caption_scores(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]])
    assert set(out) == {"bleu4", "cider", "rouge_l"}
    assert out["bleu4"] == pytest.approx(1.0) and out["rouge_l"] == pytest.approx(1.0)
    assert out["cider"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="2 candidates but 1"):
        bleu4(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="empty"):
        cider_d([], [])
    with pytest.raises(ValueError, match="non-empty list"):
        rouge_l(["a"], [[]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        rouge_l(["a"], ["a"])
    with pytest.raises(ValueError, match="string"):
        bleu4([3], [["a"]])  # type: ignore[list-item]


def test_exact_match():
    refs = [["a red circle", "there is a red circle"], ["a blue square"], ["a cat"]]
    assert exact_match(["There is a red circle.", "a blue  square", "a dog"], refs) == pytest.approx(2 / 3)
    assert exact_match(["a"], [["a b"]]) == 0.0


def test_cross_check_with_pycocoevalcap():
    """Same numbers as coco-caption's scorers on pre-tokenised text (no Java needed for these three)."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from bitcompose.data.scenes import make_scenes

    s = make_scenes(60, seed=5)
    vocab = sorted({w for c in s.all_captions() for w in c.split()})
    rng = np.random.default_rng(0)
    cands = []
    for caps in s.captions:
        w = caps[int(rng.integers(5))].split()
        for _ in range(int(rng.integers(0, 4))):
            op, pos = int(rng.integers(3)), int(rng.integers(len(w)))
            if op == 0 and len(w) > 1:
                del w[pos]
            elif op == 1:
                w.insert(pos, vocab[int(rng.integers(len(vocab)))])
            else:
                w[pos] = vocab[int(rng.integers(len(vocab)))]
        cands.append(" ".join(w))
    refs = [caps[1:] for caps in s.captions]
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [c] for i, c in enumerate(cands)}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    c, _ = Cider().compute_score(gts, res)
    r, _ = Rouge().compute_score(gts, res)
    assert bleu(cands, refs) == pytest.approx(b, rel=1e-8)
    assert cider_d(cands, refs) == pytest.approx(c, rel=1e-10)
    assert rouge_l(cands, refs) == pytest.approx(r, rel=1e-10)
