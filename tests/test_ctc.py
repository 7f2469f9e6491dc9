"""CTC decoding/alignment utilities, encoder masks and the CTC model (tiny dimensions, < 1 s each)."""

from __future__ import annotations

import itertools

import pytest
import torch

from narspeech.asr.base import ASRDecodeOptions
from narspeech.asr.ctc import CTCModel, CTCModelConfig
from narspeech.nat.ctc import ctc_collapse, ctc_forced_align, ctc_greedy, ctc_loss, ctc_prefix_beam_search
from narspeech.nn import Encoder, make_pad_mask


def slow_collapse(frames: list[int], blank: int = 0) -> list[int]:
    out, prev = [], None
    for f in frames:
        if f != prev and f != blank:
            out.append(f)
        prev = f
    return out


def test_greedy_matches_slow_reference():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(5, 40, 6, generator=g).log_softmax(-1)
    lens = torch.tensor([40, 33, 1, 17, 40])
    got = ctc_greedy(lp, lens)
    for b in range(5):
        assert got[b] == slow_collapse(lp[b, : lens[b]].argmax(-1).tolist())


def test_collapse_handles_repeats_blanks_and_padding():
    frames = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3, 3], [2, 0, 2, 2, 9, 9, 9, 9, 9, 9]])
    assert ctc_collapse(frames, torch.tensor([10, 4])) == [[1, 1, 2, 3], [2, 2]]


def test_prefix_beam_one_equals_greedy():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        lp = (3 * torch.randn(30, 7, generator=g)).log_softmax(-1)
        hyp = ctc_prefix_beam_search(lp, beam_size=1)[0]
        assert list(hyp.tokens) == ctc_greedy(lp.unsqueeze(0), torch.tensor([30]))[0]


def _brute_force_prefix_probs(lp: torch.Tensor) -> dict[tuple[int, ...], float]:
    T, V = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = float(sum(lp[t, s] for t, s in enumerate(path)).exp())
        k = tuple(slow_collapse(list(path)))
        probs[k] = probs.get(k, 0.0) + p
    return probs


def test_prefix_beam_search_scores_are_exact_sums_over_alignments():
    """With a beam wide enough to keep everything, scores equal the brute-force sum over all alignments."""
    lp = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)).log_softmax(-1)
    exact = _brute_force_prefix_probs(lp)
    hyps = ctc_prefix_beam_search(lp, beam_size=100, token_prune=3)
    assert list(hyps[0].tokens) == list(max(exact, key=exact.get))
    for h in hyps:
        assert abs(torch.tensor(h.score).exp().item() - exact[h.tokens]) < 1e-5


def test_forced_align_returns_a_valid_path():
    lp = torch.randn(20, 6, generator=torch.Generator().manual_seed(3)).log_softmax(-1)
    tokens = torch.tensor([2, 2, 5, 1])
    path = ctc_forced_align(lp, tokens)
    assert path.shape == (20,)
    assert slow_collapse(path.tolist()) == tokens.tolist()


def test_pad_mask():
    m = make_pad_mask(torch.tensor([3, 1, 0]), 4)
    assert m.tolist() == [[False, False, False, True], [False, True, True, True], [True, True, True, True]]


def _tiny_model(block: str = "conformer") -> CTCModel:
    cfg = CTCModelConfig()
    cfg.encoder.block, cfg.encoder.d_model, cfg.encoder.num_heads, cfg.encoder.ffn_dim = block, 32, 2, 64
    cfg.encoder.num_layers, cfg.encoder.subsampling_channels, cfg.encoder.dropout = 2, 8, 0.0
    torch.manual_seed(0)
    return CTCModel.from_config(cfg, vocab_size=12)


def test_encoder_output_is_independent_of_padding():
    """Batched encoding equals per-utterance encoding on the valid frames (padding never leaks), with both
    subsampling front-ends: x4 gives ((T - 1) // 2 - 1) // 2 frames, x2 (T - 1) // 2 - 2."""
    for block, factor in itertools.product(("conformer", "transformer"), (4, 2)):
        enc = Encoder(80, block, 32, 2, 64, 2, 7, 0.0, 8, subsampling_factor=factor).eval()
        a, b = torch.randn(1, 100, 80), torch.randn(1, 61, 80)
        x = torch.zeros(2, 100, 80)
        x[0], x[1, :61] = a[0], b[0]
        with torch.no_grad():
            y, lens = enc(x, torch.tensor([100, 61]))
            ya, la = enc(a, torch.tensor([100]))
            yb, lb = enc(b, torch.tensor([61]))
        n = {4: 14, 2: 28}[factor]
        assert lens.tolist() == [la.item(), lb.item()] == [{4: 24, 2: 47}[factor], n] == [ya.size(1), yb.size(1)]
        torch.testing.assert_close(y[0], ya[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(y[1, :n], yb[0], atol=1e-5, rtol=1e-4)
        with torch.no_grad():  # the shortest input the recipes accept (7 frames) gives one output frame
            assert enc(torch.randn(1, 7, 80), torch.tensor([7]))[0].size(1) == 1
    with pytest.raises(ValueError, match="subsampling_factor"):
        Encoder(80, subsampling_factor=3)


def test_ctc_model_forward_backward_infer():
    model = _tiny_model()
    batch = {
        "feats": torch.randn(2, 120, 80), "feat_lens": torch.tensor([120, 90]),
        "tokens": torch.tensor([[5, 6, 7, 8, 9], [4, 5, 6, -1, -1]]), "token_lens": torch.tensor([5, 3]),
    }
    terms = model(batch)
    assert set(terms) == {"ctc"} and torch.isfinite(terms["ctc"].value)
    terms["ctc"].value.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    greedy = model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("greedy"))
    beam = model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("beam", beam_size=1))
    assert len(greedy) == 2 and greedy == beam


def test_ctc_loss_is_mean_per_utterance():
    lp = torch.randn(2, 30, 5).log_softmax(-1)
    tokens = torch.tensor([[1, 2, 3], [4, 4, -1]])
    both = ctc_loss(lp, torch.tensor([30, 30]), tokens, torch.tensor([3, 2]))
    one = ctc_loss(lp[:1], torch.tensor([30]), tokens[:1, :3], torch.tensor([3]))
    two = ctc_loss(lp[1:], torch.tensor([30]), tokens[1:, :2], torch.tensor([2]))
    torch.testing.assert_close(both, (one + two) / 2)


def _inter_model(self_condition: bool, weight: float = 0.3) -> CTCModel:
    cfg = CTCModelConfig(interctc_layers=[1, 2], interctc_weight=weight, self_condition=self_condition)
    cfg.encoder.block, cfg.encoder.d_model, cfg.encoder.num_heads, cfg.encoder.ffn_dim = "conformer", 32, 2, 64
    cfg.encoder.num_layers, cfg.encoder.subsampling_channels, cfg.encoder.dropout = 3, 8, 0.0
    cfg.specaug.num_freq_masks = cfg.specaug.num_time_masks = 0
    torch.manual_seed(0)
    return CTCModel.from_config(cfg, vocab_size=12)


_BATCH = {
    "feats": torch.randn(2, 120, 80, generator=torch.Generator().manual_seed(5)), "feat_lens": torch.tensor([120, 90]),
    "tokens": torch.tensor([[5, 6, 7, 8, 9], [4, 5, 6, -1, -1]]), "token_lens": torch.tensor([5, 3]),
}


def test_interctc_loss_terms_and_weights():
    """InterCTC: (1-w)*CTC + w*mean(InterCTC), the intermediate losses computed with the shared head."""
    model = _inter_model(self_condition=False).eval()
    terms = model(_BATCH)
    assert set(terms) == {"ctc", "interctc"} and terms["ctc"].weight == 0.7 and terms["interctc"].weight == 0.3
    # recompute the intermediate losses by hand from the encoder layers
    x = model.cmvn(_BATCH["feats"])
    h, lens = model.encoder.subsampling(x, _BATCH["feat_lens"])
    h = model.encoder.pos_enc(h)
    pad = make_pad_mask(lens, h.size(1))
    manual = []
    for layer in model.encoder.layers[:2]:
        h = layer(h, pad)
        manual.append(ctc_loss(model.ctc_head(model.encoder.norm(h)).log_softmax(-1), lens, _BATCH["tokens"], _BATCH["token_lens"]))
    torch.testing.assert_close(terms["interctc"].value, torch.stack(manual).mean())
    # without self-conditioning, the final output is the plain encoder's
    plain = ctc_loss(model.ctc_log_probs(_BATCH["feats"], _BATCH["feat_lens"])[0], lens, _BATCH["tokens"], _BATCH["token_lens"])
    torch.testing.assert_close(terms["ctc"].value, plain)


def test_self_conditioning_feeds_posteriors_back_in_training_and_inference():
    sc = _inter_model(self_condition=True).eval()
    plain = _inter_model(self_condition=False).eval()  # same seed: identical weights except the projection
    with torch.no_grad():
        sc.cond_proj.weight.normal_(0, 1.0)
        h_sc, _ = sc.encode(_BATCH["feats"], _BATCH["feat_lens"])
        h_plain, _ = plain.encode(_BATCH["feats"], _BATCH["feat_lens"])
        assert not torch.allclose(h_sc, h_plain, atol=1e-3)
        sc.cond_proj.weight.zero_()
        sc.cond_proj.bias.zero_()
        h_zero, _ = sc.encode(_BATCH["feats"], _BATCH["feat_lens"])
    torch.testing.assert_close(h_zero, h_plain)  # a zero projection is exactly the unconditioned encoder
    terms = sc.train()(_BATCH)
    (terms["ctc"].weight * terms["ctc"].value + terms["interctc"].weight * terms["interctc"].value).backward()
    assert sc.cond_proj.weight.grad is not None and sc.cond_proj.weight.grad.abs().sum() > 0
    assert len(sc.eval().infer(_BATCH["feats"], _BATCH["feat_lens"])) == 2


def test_interctc_config_errors():
    import pytest

    cfg = CTCModelConfig(interctc_layers=[6])
    with pytest.raises(ValueError, match="interctc_layers"):
        CTCModel.from_config(cfg, 10)
    with pytest.raises(ValueError, match="self_condition needs"):
        CTCModel.from_config(CTCModelConfig(self_condition=True), 10)
