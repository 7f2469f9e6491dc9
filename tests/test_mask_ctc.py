"""Mask-CTC and Improved Mask-CTC (length prediction): losses, batched refinement, training targets, an overfit run."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from narspeech.asr.base import ASRDecodeOptions
from narspeech.asr.mask_ctc import (
    IGNORE,
    PAD_ID,
    MaskCTCConfig,
    MaskCTCModel,
)
from narspeech.nat.ctc import (
    ctc_path_tokens,
    ctc_tokens_with_confidence,
    ctc_tokens_with_frames,
    frame_cumsum,
    span_means,
    token_spans,
)
from narspeech.nat.length import (
    delete_positions,
    expand_masks,
    expand_runs,
    gather_positions,
    align_to_references,
    hypothesis_length_targets,
    hypothesis_token_targets,
    insert_masks,
    length_targets,
    length_training_inputs,
    masked_run_spans,
    merge_mask_runs,
    merge_spans,
    neighbour_spans,
    split_spans,
)
from narspeech.config import ConfigError, config_from_dict, load_config
from narspeech.nat.ctc import ctc_forced_align, ctc_greedy, ctc_loss
from narspeech.nat.refine import lowest_scores_mask, uniform_mask
from narspeech.nn import make_pad_mask
from narspeech.registry import MODELS
from narspeech.text.tokenizer import BLANK_ID, MASK_ID

REPO = Path(__file__).resolve().parents[1]
M = MASK_ID
VOCAB = 12


def _tiny(length_prediction: bool = False, acoustic: bool = False, max_span_length: int = 3, **kw) -> MaskCTCModel:
    """With ``acoustic``, the (zero-initialized) acoustic projection is drawn at random, as a trained one would be,
    so that the acoustic embeddings change what the decoder predicts."""
    cfg = MaskCTCConfig(length_prediction=length_prediction, max_span_length=max_span_length, acoustic_embedding=acoustic, **kw)
    e = cfg.encoder
    e.block, e.d_model, e.num_heads, e.ffn_dim, e.num_layers, e.subsampling_channels, e.dropout = "conformer", 32, 2, 64, 2, 8, 0.0
    cfg.specaug.num_freq_masks = cfg.specaug.num_time_masks = 0
    d = cfg.decoder
    d.num_heads, d.ffn_dim, d.num_layers, d.dropout = 2, 64, 2, 0.0
    torch.manual_seed(0)
    model = MaskCTCModel.from_config(cfg, vocab_size=VOCAB)
    if acoustic:
        with torch.no_grad():
            torch.nn.init.normal_(model.acoustic_proj.weight, 0.0, 1.0)
    return model


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    lens = torch.tensor([120, 90, 61])
    feats = torch.randn(3, 120, 80, generator=g) * make_pad_mask(lens, 120).logical_not().unsqueeze(-1)
    tokens = torch.tensor([[5, 6, 7, 8, 9], [4, 5, 6, -1, -1], [7, 7, -1, -1, -1]])
    return {"feats": feats, "feat_lens": lens, "tokens": tokens, "token_lens": torch.tensor([5, 3, 2])}


class DecoderCalls:
    """Records every decoder pass (token passes and length passes alike: both embed their input) and the masks in
    its input, per row."""

    def __init__(self, model: MaskCTCModel) -> None:
        self.masks: list[list[int]] = []
        self.handle = model.decoder.embed.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.masks.append((args[0] == M).sum(1).tolist())

    def __enter__(self) -> "DecoderCalls":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


# ---------------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("acoustic", [False, True])
@pytest.mark.parametrize("length_prediction", [False, True])
def test_forward_backward_infer(length_prediction, acoustic):
    model = _tiny(length_prediction, acoustic)
    batch = _batch()
    terms = model(batch)
    expected = {"ctc": 0.3, "mlm": 0.7} | ({"length": 0.1} if length_prediction else {})
    assert {k: t.weight for k, t in terms.items()} == pytest.approx(expected)
    assert all(t.value.dim() == 0 and torch.isfinite(t.value) and t.value > 0 for t in terms.values())
    sum(t.weight * t.value for t in terms.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert (model.length_head is not None) == length_prediction
    assert (model.acoustic_proj is not None) == acoustic
    if acoustic:  # the MLM (and length) loss reaches the projection
        assert model.acoustic_proj.weight.grad.abs().sum() > 0

    model.eval()
    x, lens = batch["feats"], batch["feat_lens"]
    greedy = model.infer(x, lens, ASRDecodeOptions("greedy"))
    assert greedy == model.infer(x, lens, ASRDecodeOptions("beam", beam_size=1))
    for K in (1, 3):
        hyps = model.infer(x, lens, ASRDecodeOptions("refine", iterations=K, threshold=0.999))
        assert len(hyps) == 3
        assert all(isinstance(t, int) and 0 < t < VOCAB and t != M for h in hyps for t in h)


@pytest.mark.parametrize("length_prediction", [False, True])
def test_self_conditioned_encoder_option(length_prediction):
    """interctc_layers / self_condition as in conf ``ctc``: the CTC share lambda splits into (1 - w) * CTC +
    w * InterCTC (the intermediate loss from the shared head after the encoder's norm), the projected posteriors
    change the encoder output in training and decoding, and every decoding method runs on the conditioned one."""
    sc = _tiny(length_prediction, interctc_layers=[1], interctc_weight=0.5, self_condition=True)
    batch = _batch()
    terms = sc(batch)
    expected = {"ctc": 0.15, "interctc": 0.15, "mlm": 0.7} | ({"length": 0.1} if length_prediction else {})
    assert {k: t.weight for k, t in terms.items()} == pytest.approx(expected)
    sum(t.weight * t.value for t in terms.values()).backward()
    assert sc.cond_proj.weight.grad.abs().sum() > 0
    sc.eval()
    x, lens = batch["feats"], batch["feat_lens"]
    h_lens = sc.encoder.subsampling.output_lengths(lens)
    with torch.no_grad():  # the intermediate loss by hand: block 1, final norm, shared head
        h, _ = sc.encoder.subsampling(sc.cmvn(x), lens)
        h = sc.encoder.layers[0](sc.encoder.pos_enc(h), make_pad_mask(h_lens, h.size(1)))
        inter = ctc_loss(sc.ctc_head(sc.encoder.norm(h)).log_softmax(-1), h_lens, batch["tokens"], batch["token_lens"])
        torch.testing.assert_close(sc(batch)["interctc"].value, inter)
        h_sc, _ = sc.encode(x, lens)
        proj = {k: v.clone() for k, v in sc.cond_proj.state_dict().items()}
        sc.cond_proj.weight.zero_()
        sc.cond_proj.bias.zero_()
        h_zero, _ = sc.encode(x, lens)
        sc.cond_proj.load_state_dict(proj)
    assert not torch.allclose(h_sc, h_zero, atol=1e-4)  # decoding sees the conditioned states
    plain = _tiny(length_prediction).eval()  # same seed: the same weights but for the projection
    torch.testing.assert_close(h_zero, plain.encode(x, lens)[0])
    greedy = sc.infer(x, lens, ASRDecodeOptions("greedy"))
    assert greedy == ctc_greedy(sc.ctc_head(h_sc).log_softmax(-1), h_lens)
    assert sc.infer(x, lens, ASRDecodeOptions("refine", iterations=3, threshold=0.0)) == greedy
    assert len(sc.infer(x, lens, ASRDecodeOptions("refine", iterations=3))) == 3
    with pytest.raises(ValueError, match="self_condition needs"):
        _tiny(self_condition=True)


@pytest.mark.parametrize("acoustic", [False, True])
def test_length_hypotheses_add_a_third_copy_to_the_length_loss(acoustic):
    """With length_hypotheses the length pass runs on 3B rows (deletion, insertion, CTC-hypothesis copies), also
    while the CTC head emits nothing at all (early in training), and every loss term still has a gradient."""
    model = _tiny(True, acoustic, length_hypotheses=True)
    rows = []
    model.decoder.embed.register_forward_pre_hook(lambda m, args: rows.append(args[0].size(0)))  # every pass
    batch = _batch()
    terms = model(batch)
    sum(t.weight * t.value for t in terms.values()).backward()
    assert rows == [3, 9] and all(torch.isfinite(t.value) for t in terms.values())
    with torch.no_grad():
        model.ctc_head.bias[0] = 100.0  # blank everywhere: empty hypotheses, no masks in the third copy
    terms = model(batch)
    assert torch.isfinite(terms["length"].value)


@pytest.mark.parametrize("acoustic", [False, True])
@pytest.mark.parametrize("length_prediction", [False, True])
def test_mlm_hypotheses_add_a_second_mlm_copy(length_prediction, acoustic):
    """With mlm_hypotheses a second MLM pass runs on the B CTC hypotheses (term mlm_hyp, the MLM's weight) and trains
    the decoder; while the CTC head emits nothing it is 0 and costs no pass."""
    model = _tiny(length_prediction, acoustic, mlm_hypotheses=True)
    rows = []
    model.decoder.embed.register_forward_pre_hook(lambda m, args: rows.append(args[0].size(0)))
    batch = _batch()
    terms = model(batch)
    assert terms["mlm_hyp"].weight == pytest.approx(0.7) and terms["mlm_hyp"].value > 0
    assert rows == [3, 3] + ([6] if length_prediction else [])
    model.zero_grad()
    terms["mlm_hyp"].value.backward()
    assert model.decoder.embed.weight.grad.abs().sum() > 0 and model.ctc_head.weight.grad is None  # CTC detached
    with torch.no_grad():
        model.ctc_head.bias[0] = 100.0  # blank everywhere: empty hypotheses
    rows.clear()
    terms = model(batch)
    assert terms["mlm_hyp"].value == 0 and rows == [3] + ([6] if length_prediction else [])


@pytest.mark.parametrize("length_prediction", [False, True])
def test_mlm_hypothesis_copy_is_what_the_first_pass_of_decoding_sees(monkeypatch, length_prediction):
    """mlm_hypotheses: with the masks where decoding at a threshold puts them, the training copy gives the decoder
    the input tokens and acoustic embeddings of decoding's first mask-predict pass (with length prediction: when
    the length head keeps every run's length)."""
    import narspeech.asr.mask_ctc as mask_ctc
    import narspeech.asr.mask_ctc_length as mask_ctc_length

    model = _tiny(length_prediction, True, mlm_hypotheses=True).eval()
    batch = _batch()
    x, lens = batch["feats"], batch["feat_lens"]
    seen = []
    model.decoder.register_forward_pre_hook(lambda m, args: seen.append((args[0].clone(), args[4].clone())))
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
        lp = model.ctc_head(h).log_softmax(-1)
        hyp = ctc_tokens_with_frames(lp, h_lens)
        threshold = float(hyp[1][~make_pad_mask(hyp[2], hyp[1].size(1))].median())
        # length_threshold > 1: every run keeps CTC's count, the fill pass then sees CTC's tokens and frames
        model.infer(x, lens, ASRDecodeOptions("refine", iterations=1, threshold=threshold, length_threshold=1.5))
        decoding = seen[-1]
        for module in (mask_ctc, mask_ctc_length):  # the hypothesis copy of training (both halves of the model)
            monkeypatch.setattr(module, "lowest_scores_mask", lambda c, l: (c < threshold) & ~make_pad_mask(l, c.size(1)))
        refs = [row[: int(k)] for row, k in zip(batch["tokens"].tolist(), batch["token_lens"].tolist())]
        assert model._hypothesis_mlm_loss(hyp, refs, h, h_lens, model._frame_sums(h, lp, h_lens)) > 0
    training = seen[-1]
    assert (decoding[0] == M).any() and torch.equal(training[0], decoding[0])
    valid = ~make_pad_mask(hyp[2], hyp[0].size(1))
    assert torch.allclose(training[1][valid], decoding[1][valid], atol=1e-5)


@pytest.mark.parametrize("acoustic", [False, True])
@pytest.mark.parametrize("length_prediction", [False, True])
@pytest.mark.parametrize("K", [1, 10])
def test_threshold_zero_masks_nothing_and_refine_equals_greedy(length_prediction, K, acoustic):
    model = _tiny(length_prediction, acoustic).eval()
    x, lens = _batch()["feats"], _batch()["feat_lens"]
    with DecoderCalls(model) as calls:
        refined = model.infer(x, lens, ASRDecodeOptions("refine", iterations=K, threshold=0.0))
    assert refined == model.infer(x, lens, ASRDecodeOptions("greedy"))
    assert calls.masks == []  # no masks: no decoder pass at all


@pytest.mark.parametrize("acoustic", [False, True])
@pytest.mark.parametrize("length_prediction", [False, True])
def test_batched_refine_equals_per_utterance(length_prediction, acoustic):
    # spans of up to 20: the untrained model masks (nearly) every token, and longer runs would keep their length
    model = _tiny(length_prediction, acoustic, max_span_length=20).eval()
    if length_prediction:  # a random length head (the zero-initialized one follows the duration prior: CTC's count)
        torch.manual_seed(1)
        with torch.no_grad():
            torch.nn.init.normal_(model.length_head.weight, 0.0, 1.0)
    batch = _batch()
    x, lens = batch["feats"], batch["feat_lens"]
    greedy = model.infer(x, lens, ASRDecodeOptions("greedy"))
    for K in (2, 10):
        opts = ASRDecodeOptions("refine", iterations=K, threshold=0.999)
        with DecoderCalls(model) as calls:
            batched = model.infer(x, lens, opts)
        # one decoder pass per iteration, two with length prediction
        assert calls.masks and len(calls.masks) <= (2 * K if length_prediction else K)
        single = [model.infer(x[i : i + 1, : int(n)], lens[i : i + 1], opts)[0] for i, n in enumerate(lens)]
        assert batched == single
        assert batched != greedy  # the untrained model masks (nearly) everything: the decoder did the work
        if length_prediction:  # the random length head inserts and deletes
            assert [len(h) for h in batched] != [len(h) for h in greedy]
            # unless it is never trusted: every run keeps CTC's count
            kept = model.infer(x, lens, dataclasses.replace(opts, length_threshold=1.5))
            assert [len(h) for h in kept] == [len(h) for h in greedy]
        if acoustic:  # the acoustic embeddings take part: without them (a zero projection) the result differs
            weight = model.acoustic_proj.weight.detach().clone()
            with torch.no_grad():
                model.acoustic_proj.weight.zero_()
            assert model.infer(x, lens, opts) != batched
            with torch.no_grad():
                model.acoustic_proj.weight.copy_(weight)


def test_at_most_k_passes_each_filling_at_least_one_mask():
    """Row 0: 10 masks, row 1: 2 masks (and padding). K=3: ceil(masks left / passes left) per pass and row:
    row 0 fills 4, 3, 3 and row 1 fills 1, 1, 0. K=20 with 5 masks: one per pass, stopping after 5 passes."""
    model = _tiny().eval()
    x, lens = _batch()["feats"][:2], _batch()["feat_lens"][:2]
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
    tokens = torch.tensor([[M] * 10, [5, M, 6, M] + [PAD_ID] * 6])
    masked = tokens == M
    with DecoderCalls(model) as calls:
        state = model.refine_tokens(tokens, torch.tensor([10, 4]), masked, h, h_lens, iterations=3)
    assert calls.masks == [[10, 2], [6, 1], [3, 0]]
    assert state.passes == 3 and not state.masked.any()
    assert state.tokens[1, [0, 2]].tolist() == [5, 6]  # unmasked tokens are never changed
    assert not (state.tokens[:, :4] == M).any()

    tokens = torch.tensor([[5, M, M, 6, M, M, M]])
    with DecoderCalls(model) as calls:
        state = model.refine_tokens(tokens, torch.tensor([7]), tokens == M, h[:1], h_lens[:1], iterations=20)
    assert calls.masks == [[5], [4], [3], [2], [1]]
    assert state.passes == 5 and not state.masked.any()


def _force_span_length(model: MaskCTCModel, n: int) -> None:
    with torch.no_grad():
        model.length_head.weight.zero_()
        model.length_head.bias.zero_()
        model.length_head.bias[n] = 10.0


def test_length_prediction_deletes_and_expands_masked_spans():
    """With the length head forced to 0, every masked span is deleted (no token pass); forced to 2, every span of
    masks becomes exactly two tokens and the confident CTC tokens stay in place (one iteration). A run of more masks
    than the head has classes for (max_span_length 3) keeps its length."""
    model = _tiny(length_prediction=True).eval()
    x, lens = _batch()["feats"], _batch()["feat_lens"]
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
        tokens, conf, n = ctc_tokens_with_confidence(model.ctc_head(h).log_softmax(-1), h_lens)
    threshold = float(conf[conf > 0].median())
    masked = (conf < threshold) & ~make_pad_mask(n, tokens.size(1))
    assert masked.any() and (~masked & ~make_pad_mask(n, tokens.size(1))).any()

    runs = [_mask_runs(masked[b, : n[b]].tolist()) for b in range(3)]
    assert any(r <= 3 for rs in runs for r in rs) and any(r > 3 for rs in runs for r in rs)  # both kinds occur

    _force_span_length(model, 0)
    hyps = model.infer(x, lens, ASRDecodeOptions("refine", iterations=1, threshold=threshold))
    for b in range(3):  # short runs deleted; long runs kept and filled by the decoder
        expected = _expected_after_length_pass(tokens[b, : n[b]].tolist(), masked[b, : n[b]].tolist(), 0, 3)
        assert len(hyps[b]) == len(expected)
        assert all(e is None or e == t for e, t in zip(expected, hyps[b]))

    _force_span_length(model, 2)
    hyps = model.infer(x, lens, ASRDecodeOptions("refine", iterations=1, threshold=threshold))
    for b in range(3):
        expected = _expected_after_length_pass(tokens[b, : n[b]].tolist(), masked[b, : n[b]].tolist(), 2, 3)
        assert len(hyps[b]) == len(expected)
        assert all(e is None or e == t for e, t in zip(expected, hyps[b]))

    # more iterations: the masks a pass leaves in a long run form shorter runs, which the next pass may delete
    _force_span_length(model, 0)
    hyps = model.infer(x, lens, ASRDecodeOptions("refine", iterations=3, threshold=threshold))
    for b in range(3):
        kept = tokens[b, : n[b]][~masked[b, : n[b]]].tolist()
        assert len(kept) <= len(hyps[b]) <= len(_expected_after_length_pass(tokens[b, : n[b]].tolist(), masked[b, : n[b]].tolist(), 0, 3))
        if all(r <= 3 for r in runs[b]):  # only short runs: every mask deleted in the first pass
            assert hyps[b] == kept


@pytest.mark.parametrize("acoustic", [False, True])
def test_length_steps_limit_the_length_passes_to_the_first_iterations(acoustic):
    """length_steps N: the first N iterations run a length pass and a token pass, the later ones a token pass
    only; 0 (the paper) runs both in every iteration. With the head forced to keep every run's length (its count
    is the run's: 1 for single masks) the tokens are those of plain refinement either way."""
    model = _tiny(length_prediction=True, acoustic=acoustic, max_span_length=8).eval()
    x, lens = _batch()["feats"], _batch()["feat_lens"]
    tokens = torch.tensor([[5, M, 6, M, 7, M, 8, M]] * 3)
    masked = tokens == M
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
    spans = torch.tensor([[[2 * i, 2 * i + 2] for i in range(8)]] * 3) if acoustic else None
    _force_span_length(model, 1)
    if acoustic:
        with torch.no_grad():  # no duration prior: the forced head alone decides
            model.length_prior_log_beta.fill_(-30.0)
    passes, outs = {}, {}
    for steps in (0, 1, 2):
        with DecoderCalls(model) as calls:
            state = model.refine_tokens(tokens, torch.tensor([8] * 3), masked, h, h_lens, 4, spans, length_steps=steps)
        passes[steps], outs[steps] = len(calls.masks), state.tokens
        assert state.passes == 4 and not state.masked.any() and state.lens.tolist() == [8] * 3
    assert passes == {0: 8, 1: 5, 2: 6}
    assert outs[0].equal(outs[1]) and outs[0].equal(outs[2])
    with pytest.raises(ValueError, match="length_steps"):
        model.infer(x, lens, ASRDecodeOptions("refine", length_steps=-1))


def _mask_runs(masked: list[bool]) -> list[int]:
    runs, k = [], 0
    for m in masked + [False]:
        if m:
            k += 1
        elif k:
            runs.append(k)
            k = 0
    return runs


def _expected_after_length_pass(tokens: list[int], masked: list[bool], length: int, max_span: int) -> list[int | None]:
    """The row after one length pass with every prediction ``length``: None where the decoder fills a mask."""
    out: list[int | None] = []
    i = 0
    while i < len(tokens):
        if not masked[i]:
            out.append(tokens[i])
            i += 1
            continue
        j = i
        while j < len(tokens) and masked[j]:
            j += 1
        out += [None] * (j - i if j - i > max_span else length)
        i = j
    return out


# ---------------------------------------------------------------------------------------------------- helpers


def test_length_targets_by_hand():
    tokens = torch.tensor([[5, M, M, 8, M, 10], [M, M, M, 7, 0, 0]])
    lens = torch.tensor([6, 4])
    masked = (tokens == M) & ~make_pad_mask(lens, 6)
    inp, new_lens, tgt, _ = length_targets(tokens, lens, masked, max_span_length=3)
    assert new_lens.tolist() == [5, 2]
    assert inp.tolist() == [[5, M, 8, M, 10], [M, 7, PAD_ID, PAD_ID, PAD_ID]]
    assert tgt.tolist() == [[IGNORE, 2, IGNORE, 1, IGNORE], [3, IGNORE, IGNORE, IGNORE, IGNORE]]
    # a run longer than the largest class gets no target (rather than a wrong, clamped one)
    _, _, tgt, _ = length_targets(tokens, lens, masked, max_span_length=2)
    assert tgt.tolist() == [[IGNORE, 2, IGNORE, 1, IGNORE], [IGNORE] * 5]
    _, _, _, spans, dest = merge_mask_runs(tokens, lens, masked)
    assert spans.tolist() == [[1, 2, 1, 1, 1], [3, 1, 0, 0, 0]]
    assert dest.tolist() == [[0, 1, 1, 2, 3, 4], [0, 0, 0, 1, -1, -1]]


def test_hypothesis_length_targets_by_hand():
    """Targets from the alignment of a CTC hypothesis to its reference: substituted tokens count 1, inserted 0,
    missing reference tokens count for the run of masks beside them (lost between two unmasked tokens)."""
    hyp = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8], [5, 7, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]])
    lens = torch.tensor([4, 4, 2, 4, 0])
    masked = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]).bool()
    refs = [
        [5, 9, 6, 8],  # 9 missing before 6 (masked), 7 inserted: the run 6 7 stands for 2
        [5, 6, 7],  # 8 inserted at the end: 0
        [5, 9, 9, 7, 4],  # two missing before the masked 7 and 4 missing after it: 4
        [5, 6, 4, 7, 8, 3],  # 4 missing between unmasked 6 and 7, 3 after unmasked 8: lost; the masked 5: 1
        [4, 4],  # nothing emitted, nothing masked
    ]
    inp, new_lens, tgt, dest = hypothesis_length_targets(hyp, lens, masked, refs, max_span_length=5)
    assert new_lens.tolist() == [3, 4, 2, 4, 0]
    assert inp[0, :3].tolist() == [5, M, 8] and inp[2, :2].tolist() == [5, M] and inp[3, :4].tolist() == [M, 6, 7, 8]
    assert tgt.tolist() == [
        [IGNORE, 2, IGNORE, IGNORE],
        [IGNORE, IGNORE, IGNORE, 0],
        [IGNORE, 4, IGNORE, IGNORE],
        [1, IGNORE, IGNORE, IGNORE],
        [IGNORE] * 4,
    ]
    assert dest[0].tolist() == [0, 1, 1, 2]
    # a run standing for more tokens than the head has classes gets no target
    _, _, tgt, _ = hypothesis_length_targets(hyp, lens, masked, refs, max_span_length=3)
    assert tgt[2].tolist() == [IGNORE] * 4 and tgt[0, 1] == 2


def test_alignment_to_references_and_mlm_targets_by_hand():
    """Each hypothesis token gets the reference token it is aligned to (a match or a substitution), IGNORE when
    inserted; missing reference tokens are counted in the gap where they belong. MLM targets: those of the masks."""
    hyp = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8], [0, 0, 0, 0]])
    lens = torch.tensor([4, 4, 0])
    refs = [[5, 9, 6, 8], [5, 4, 7, 8, 3], [4]]
    aligned, missing = align_to_references(hyp, lens, refs)
    # row 0: 9 missing before 6, 7 inserted; row 1: 6 -> 4, 3 missing at the end; row 2: nothing emitted
    assert aligned.tolist() == [[5, 6, IGNORE, 8], [5, 4, 7, 8], [0, 0, 0, 0]]
    assert missing.tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]
    masked = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()  # row 2's mask lies in padding
    assert hypothesis_token_targets(hyp, lens, masked, refs).tolist() == [
        [IGNORE, 6, IGNORE, 8],
        [5, 4, IGNORE, IGNORE],
        [IGNORE] * 4,
    ]
    # mlm_deletion: the inserted token's target is the deletion id (a masked one only; padding keeps no loss)
    assert hypothesis_token_targets(hyp, lens, masked, refs, deletion_id=0).tolist() == [
        [IGNORE, 6, 0, 8],
        [5, 4, IGNORE, IGNORE],
        [IGNORE] * 4,
    ]


def test_lowest_scores_mask_masks_the_least_confident():
    conf = torch.tensor([[0.9, 0.2, 0.99, 0.5, 0.7], [0.3, 0.1, 0.0, 0.0, 0.0]])
    lens = torch.tensor([5, 2])
    least_first = [[1, 3, 4, 0, 2], [1, 0]]  # the valid positions by confidence (padding is never masked)
    counts = set()
    for seed in range(40):
        m = lowest_scores_mask(conf, lens, torch.Generator().manual_seed(seed))
        for b in range(2):
            n = int(m[b].sum())
            assert 1 <= n <= int(lens[b])
            assert m[b].nonzero().flatten().sort().values.tolist() == sorted(least_first[b][:n])
            counts.add((b, n))
    assert {n for b, n in counts if b == 0} == {1, 2, 3, 4, 5}  # every count 1..L is drawn


def test_expand_masks_by_hand():
    tokens = torch.tensor([[5, M, 8, M, 10], [M, 7, 0, 0, 0]])
    masked = tokens == M
    counts = torch.tensor([[9, 0, 9, 3, 9], [2, 9, 9, 9, 9]])  # 9s sit at unmasked/padded positions: ignored
    out, lens, out_masked, src = expand_masks(tokens, torch.tensor([5, 2]), masked, counts)
    assert lens.tolist() == [6, 3]
    assert out.tolist() == [[5, 8, M, M, M, 10], [M, M, 7, PAD_ID, PAD_ID, PAD_ID]]
    assert out_masked.tolist() == (out == M).tolist()
    assert src.tolist() == [[0, 2, 3, 3, 3, 4], [0, 0, 1, -1, -1, -1]]
    # at most max_lens positions: masks are cut (the last spans first), tokens always kept
    out, lens, _, _ = expand_masks(tokens, torch.tensor([5, 2]), masked, counts, max_lens=torch.tensor([4, 2]))
    assert lens.tolist() == [4, 2] and out.tolist() == [[5, 8, M, 10], [M, 7, PAD_ID, PAD_ID]]


def test_insert_masks_keeps_tokens_and_inserts_at_most_one_mask_per_gap():
    tokens = torch.tensor([[5, 6, 7, 8, 9], [4, 5, 0, 0, 0], [7, 0, 0, 0, 0]])
    lens = torch.tensor([5, 2, 1])
    seen = set()
    for seed in range(50):
        out, out_lens, masked, src = insert_masks(tokens, lens, M, torch.Generator().manual_seed(seed))
        for b in range(3):
            row, m = out[b, : out_lens[b]], masked[b, : out_lens[b]]
            assert row[~m].tolist() == tokens[b, : lens[b]].tolist()
            assert src[b, : out_lens[b]][~m].tolist() == list(range(lens[b])) and (src[b][masked[b]] == -1).all()
            assert (row[m] == M).all() and 1 <= int(m.sum()) <= int(lens[b]) + 1
            assert not (m[1:] & m[:-1]).any()
            seen.add((b, tuple(m.tolist())))
        assert not masked[make_pad_mask(out_lens, out.size(1))].any()
    assert len({s for s in seen if s[0] == 0}) > 10  # the gaps are drawn at random


def test_length_training_inputs_stack_deletion_and_insertion_copies():
    target = torch.tensor([[5, 6, 7, 8], [4, 5, 0, 0]])
    lens = torch.tensor([4, 2])
    inp, new_lens, tgt, values = length_training_inputs(target, lens, 10, torch.Generator().manual_seed(0))
    assert values is None
    assert inp.size(0) == tgt.size(0) == new_lens.size(0) == 4
    for b in range(2):
        d, i = tgt[b, : new_lens[b]], tgt[2 + b, : new_lens[2 + b]]
        # deletion-simulated: the spans of the merged masks and the kept tokens add up to the reference length
        assert (d[d != IGNORE] >= 1).all() and int(d[d != IGNORE].sum() + (d == IGNORE).sum()) == int(lens[b])
        assert ((inp[b, : new_lens[b]] == M) == (d != IGNORE)).all()
        # insertion-simulated: every mask stands for nothing
        assert (i[i != IGNORE] == 0).all() and int((i == 0).sum()) == int(new_lens[2 + b] - lens[b])


def test_length_training_inputs_give_masks_the_gap_between_their_neighbours():
    """Frame intervals through both copies: a merged mask of the deletion copy and an inserted mask of the insertion
    copy own the frames from the end of the previous unmasked token to the start of the next (0 and the frame
    count at the ends); unmasked tokens keep their own."""
    target = torch.tensor([[5, 6, 7, 8, 9], [4, 5, 6, 0, 0]])
    lens = torch.tensor([5, 3])
    spans = torch.tensor([[[1, 3], [4, 5], [5, 8], [10, 12], [13, 14]], [[0, 2], [3, 4], [6, 7], [0, 0], [0, 0]]])
    frames = torch.tensor([16, 9])
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        inp, new_lens, _, out = length_training_inputs(target, lens, 10, g, spans, frames)
        g = torch.Generator().manual_seed(seed)  # the same draws again, through the pieces
        uniform_mask(target, lens, M, g)
        ins, ins_lens, ins_masked, src = insert_masks(target, lens, M, g)
        for row in range(4):
            b, n = row % 2, int(new_lens[row])
            is_mask = (inp[row, :n] == M).tolist()
            own = [tuple(x) for x in spans[b, : lens[b]].tolist()]
            kept = [tuple(out[row, j].tolist()) for j in range(n) if not is_mask[j]]
            if row < 2:  # the unmasked tokens of the deletion copy, in order
                assert kept == [x for x in own if x in kept]
            else:  # every token of the insertion copy
                assert kept == own
            for j in range(n):
                if not is_mask[j]:
                    continue
                prev = [tuple(out[row, i].tolist()) for i in range(j) if not is_mask[i]]
                nxt = [tuple(out[row, i].tolist()) for i in range(j + 1, n) if not is_mask[i]]
                gap = (prev[-1][1] if prev else 0, nxt[0][0] if nxt else int(frames[b]))
                assert tuple(out[row, j].tolist()) == gap
            if row >= 2:
                assert inp[row, :n].tolist() == ins[b, :n].tolist()
            assert out[row, n:].eq(0).all()


def test_span_helpers_by_hand():
    spans = torch.tensor([[[1, 3], [4, 5], [5, 8], [10, 12]], [[0, 2], [3, 4], [0, 0], [0, 0]]])
    lens = torch.tensor([4, 2])
    masked = torch.tensor([[False, True, True, False], [True, False, False, False]])
    near = neighbour_spans(spans, lens, masked, torch.tensor([14, 6]))
    assert near.tolist() == [[[1, 3], [3, 10], [3, 10], [10, 12]], [[0, 3], [3, 4], [0, 0], [0, 0]]]
    # a mask at the end reaches the last frame; a row that is all masks owns everything
    near = neighbour_spans(spans, lens, torch.tensor([[False, False, False, True], [True, True, False, False]]), torch.tensor([14, 6]))
    assert near[0, 3].tolist() == [8, 14] and near[1, :2].tolist() == [[0, 6], [0, 6]]
    # merging takes the union of the merged intervals
    dest = torch.tensor([[0, 1, 1, 2], [0, 1, -1, -1]])
    assert merge_spans(spans, dest, 3).tolist() == [[[1, 3], [4, 8], [10, 12]], [[0, 2], [3, 4], [0, 0]]]
    # the masks of a group share its interval out evenly, in order
    group = torch.tensor([[0, 1, 1, 1, 2], [0, 0, 1, 2, 3]])
    spans = torch.tensor([[[0, 4], [4, 10], [4, 10], [4, 10], [10, 11]], [[2, 3], [2, 3], [3, 5], [0, 0], [0, 0]]])
    masked = torch.tensor([[False, True, True, True, False], [True, True, False, False, False]])
    assert split_spans(spans, group, masked).tolist() == [
        [[0, 4], [4, 6], [6, 8], [8, 10], [10, 11]],
        [[2, 2], [2, 3], [3, 5], [0, 0], [0, 0]],  # one frame for two masks: the first gets none
    ]
    # MLM training inputs of the length-prediction model: a run of masks splits the gap around it (share_prob 1),
    # or keeps its own frames (0)
    spans = torch.tensor([[[1, 3], [4, 5], [5, 8], [10, 12], [12, 13]]])
    masked = torch.tensor([[False, True, True, False, True]])
    shared = [[1, 3], [3, 6], [6, 10], [10, 12], [12, 16]]
    assert masked_run_spans(spans, torch.tensor([5]), masked, torch.tensor([16])).tolist() == [shared]
    assert masked_run_spans(spans, torch.tensor([5]), masked, torch.tensor([16]), share_prob=0.0).equal(spans)
    # in between, each run is shared or kept as a whole, and both happen
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        out = masked_run_spans(spans, torch.tensor([5]), masked, torch.tensor([16]), 0.5, g)[0].tolist()
        first, second = out[1:3], out[4]
        assert first in (shared[1:3], spans[0, 1:3].tolist()) and second in (shared[4], spans[0, 4].tolist())
        assert out[0] == shared[0] and out[3] == shared[3]
        seen.add((first == shared[1:3], second == shared[4]))
    assert len(seen) == 4


def test_expand_runs_moves_only_the_masks_that_come_or_go():
    """After merge + length prediction the masks of a run that keeps its length keep their frames; a run that grows
    shares its new masks among its gaps of frames and its masks' own frames in proportion to their frames (largest
    remainders first, ties: the earlier), the new masks of a gap share it evenly, a mask that gets new masks shares
    its frames with them; a run that shrinks loses its masks with the fewest frames; tokens and other runs are
    untouched."""
    tokens = torch.tensor([[5, M, M, 8, M, 10], [M, 7, 9, 0, 0, 0]])
    lens = torch.tensor([6, 3])
    masked = (tokens == M) & ~make_pad_mask(lens, 6)
    old = torch.tensor([[[0, 2], [3, 4], [6, 7], [9, 10], [10, 12], [13, 15]], [[1, 3], [3, 5], [5, 6], [0, 0], [0, 0], [0, 0]]])
    frames = torch.tensor([16, 8])
    merged, m_lens, m_masked, run_len, dest = merge_mask_runs(tokens, lens, masked)

    def expand(counts):
        out_tokens, out_lens, out_masked, spans = expand_runs(tokens, lens, masked, old, dest, torch.tensor(counts), frames)
        assert (out_masked == (out_tokens == M)).all() and not out_masked[make_pad_mask(out_lens, out_tokens.size(1))].any()
        return [row[: int(n)] for row, n in zip(out_tokens.tolist(), out_lens)], [
            row[: int(n)] for row, n in zip(spans.tolist(), out_lens)
        ]

    toks, spans = expand([[0, 2, 0, 1, 0], [1, 0, 0, 0, 0]])  # every run kept: nothing moves
    assert toks == [tokens[0].tolist(), [M, 7, 9]] and spans == [old[0].tolist(), old[1, :3].tolist()]
    # the first run of row 0 grows by one: its gaps [2, 3), [4, 6), [7, 9) and masks [3, 4), [6, 7) -> the first of
    # the two 2-frame gaps
    toks, spans = expand([[0, 3, 0, 1, 0], [3, 0, 0, 0, 0]])
    assert toks[0] == [5, M, M, M, 8, M, 10] and spans[0] == [[0, 2], [3, 4], [4, 6], [6, 7], [9, 10], [10, 12], [13, 15]]
    # row 1's mask [1, 3) grows by two: quotas 2/3 for the gap [0, 1), 4/3 for the mask, 0 for the empty gap after
    # it -> one new mask in [0, 1), one sharing the mask's frames
    assert toks[1] == [M, M, M, 7, 9] and spans[1] == [[0, 1], [1, 2], [2, 3], [3, 5], [5, 6]]
    # 5 new masks over frames 1, 1, 2, 1, 2 (gap, mask, gap, mask, gap): quotas 5/7, 5/7, 10/7, 5/7, 10/7 -> one each
    # (the 2-frame gaps from their whole parts, the others from the largest remainders, the earlier first)
    toks, spans = expand([[0, 7, 0, 1, 0], [1, 0, 0, 0, 0]])
    assert spans[0] == [[0, 2], [2, 3], [3, 3], [3, 4], [4, 6], [6, 6], [6, 7], [7, 9], [9, 10], [10, 12], [13, 15]]
    # shrinking: the first run to one mask drops its 1-frame mask that comes later ([6, 7) ties [3, 4): the later
    # goes), row 1's mask deleted
    toks, spans = expand([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])
    assert toks == [[5, M, 8, M, 10], [7, 9]] and spans[0] == [[0, 2], [3, 4], [9, 10], [10, 12], [13, 15]]
    assert spans[1] == [[3, 5], [5, 6]]


def test_gather_positions_by_hand():
    values = torch.tensor([[[1.0], [2.0], [4.0], [8.0]], [[16.0], [32.0], [0.0], [0.0]]])
    src = torch.tensor([[0, 1, 1, 1, 2], [0, -1, 1, -1, -1]])
    assert gather_positions(values, src).squeeze(-1).tolist() == [[1.0, 2.0, 2.0, 2.0, 4.0], [16.0, 0.0, 32.0, 0.0, 0.0]]
    assert gather_positions(values[:, :0], torch.full((2, 2), -1)).shape == (2, 2, 1)  # nothing to gather from


def test_delete_positions_by_hand():
    tokens = torch.tensor([[5, M, 6, M], [M, 7, PAD_ID, PAD_ID], [M, PAD_ID, PAD_ID, PAD_ID]])
    lens = torch.tensor([4, 2, 1])
    masked = tokens == M
    spans = torch.tensor([[[0, 2], [2, 3], [4, 6], [6, 7]], [[0, 1], [1, 3], [0, 0], [0, 0]], [[0, 5], [0, 0], [0, 0], [0, 0]]])
    delete = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]).bool()
    t, n, m, sp = delete_positions(delete, lens, tokens, masked, spans)
    assert n.tolist() == [3, 1, 1]
    assert t.tolist() == [[5, 6, M], [7, PAD_ID, PAD_ID], [M, PAD_ID, PAD_ID]]
    assert m.tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    assert sp.tolist() == [[[0, 2], [4, 6], [6, 7]], [[1, 3], [0, 0], [0, 0]], [[0, 5], [0, 0], [0, 0]]]
    # every position of every row deleted: empty rows, one padding column
    t, n, m, sp = delete_positions(~make_pad_mask(lens, 4), lens, tokens, masked, None)
    assert n.tolist() == [0, 0, 0] and t.tolist() == [[PAD_ID]] * 3 and not m.any() and sp is None


def _mlm_blank_bias(model: MaskCTCModel, value: float) -> None:
    with torch.no_grad():
        model.decoder.out.bias.zero_()
        model.decoder.out.bias[BLANK_ID] = value


@pytest.mark.parametrize("acoustic", [False, True])
def test_mlm_deletion_deletes_the_masks_filled_with_blank(acoustic):
    """mlm_deletion: a mask filled with the blank id is deleted (the rest close up); batched decoding equals
    per-utterance decoding; without the option the blank id is never predicted, whatever the decoder scores it."""
    model = _tiny(False, acoustic, mlm_hypotheses=True, mlm_deletion=True).eval()
    x, lens = _batch()["feats"], _batch()["feat_lens"]
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
        tokens, conf, n, _ = ctc_tokens_with_frames(model.ctc_head(h).log_softmax(-1), h_lens)
    threshold = float(conf[~make_pad_mask(n, conf.size(1))].median())  # about half the tokens masked
    kept = [[t for t, c in zip(row[:k], cr[:k]) if c >= threshold] for row, cr, k in zip(tokens.tolist(), conf.tolist(), n.tolist())]
    assert 0 < sum(map(len, kept)) < int(n.sum())
    opts = ASRDecodeOptions("refine", iterations=3, threshold=threshold)
    _mlm_blank_bias(model, 100.0)  # every mask filled with "no token": only the confident CTC tokens remain
    assert model.infer(x, lens, opts) == kept
    greedy_lens = n.tolist()
    partly = 0  # biases at which some masks were deleted and others filled
    for bias in (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0):
        _mlm_blank_bias(model, bias)
        batched = model.infer(x, lens, opts)
        single = [model.infer(x[i : i + 1, : int(k)], lens[i : i + 1], opts)[0] for i, k in enumerate(lens)]
        assert batched == single
        total = sum(map(len, batched))
        partly += sum(map(len, kept)) < total < sum(greedy_lens)
    assert partly
    plain = _tiny(False, acoustic).eval()
    plain.load_state_dict(model.state_dict())
    _mlm_blank_bias(plain, 100.0)
    out = plain.infer(x, lens, opts)
    assert [len(o) for o in out] == greedy_lens and not any(BLANK_ID in o for o in out)
    # the same model decoding without deletions: a deletion threshold above 1
    _mlm_blank_bias(model, 100.0)
    assert model.infer(x, lens, dataclasses.replace(opts, deletion_threshold=1.5)) == out
    # a threshold: "no token" deletes where its probability reaches it, even where a token is more probable
    _mlm_blank_bias(model, 0.0)  # "no token" at about 1 / VOCAB everywhere: never the most probable
    assert model.infer(x, lens, dataclasses.replace(opts, deletion_threshold=1e-6)) == kept
    assert model.infer(x, lens, dataclasses.replace(opts, deletion_threshold=0.999)) == out


def test_mlm_deletion_learns_to_delete_inserted_tokens():
    """The hypothesis copy with mlm_deletion teaches the decoder to delete: four fixed hypotheses, each its
    reference with one token inserted (the least confident: always masked), the decoder trained on their copy
    alone; afterwards refinement of the masked hypotheses gives the references (before: the hypotheses' length)."""
    model = _tiny(False, False, mlm_hypotheses=True, mlm_deletion=True)
    g = torch.Generator().manual_seed(3)
    refs = [[5, 6, 7, 8], [9, 4, 10], [11, 5, 5, 6, 7], [8, 9]]
    inserted = [([5, 6, 11, 7, 8], 2), ([9, 4, 4, 10], 2), ([6, 11, 5, 5, 6, 7], 0), ([8, 9, 9], 2)]
    hyp = torch.zeros(4, 6, dtype=torch.long)
    conf = torch.rand(4, 6, generator=g) * 0.2 + 0.8
    for b, (row, at) in enumerate(inserted):
        hyp[b, : len(row)] = torch.tensor(row)
        conf[b, at] = 0.1
    hyp_lens = torch.tensor([len(r) for r, _ in inserted])
    memory, memory_lens = torch.randn(4, 12, 32, generator=g), torch.full((4,), 12)
    frames = torch.full((4, 12), -1)  # not read without acoustic embeddings
    masked = conf <= 0.1

    def decode() -> list[list[int]]:
        model.eval()
        state = model.refine_tokens(hyp.masked_fill(masked, M), hyp_lens, masked, memory, memory_lens, iterations=1)
        model.train()
        return [row[: int(k)].tolist() for row, k in zip(state.tokens, state.lens)]

    assert [len(r) for r in decode()] == hyp_lens.tolist()  # untrained: the decoder fills, it does not delete
    opt = torch.optim.Adam(model.decoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = model._hypothesis_mlm_loss((hyp, conf, hyp_lens, frames), refs, memory, memory_lens, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert statistics.mean(losses[-10:]) < 0.2 * statistics.mean(losses[:10])
    assert decode() == refs


def test_token_frames_and_pooling_by_hand():
    """Frame map of a path (blanks and padding -1, a run of equal labels one token, a blank separating repeats),
    each token's frame interval, then the mean encoder state over each interval."""
    path = torch.tensor([[0, 5, 5, 0, 5, 6, 6], [7, 0, 0, 7, 7, 3, 3]])
    lens = torch.tensor([7, 5])
    frame_token, counts = ctc_path_tokens(path, lens)
    assert frame_token.tolist() == [[-1, 0, 0, -1, 1, 2, 2], [0, -1, -1, 1, 1, -1, -1]]
    assert counts.tolist() == [3, 2]
    spans = token_spans(frame_token, 3)
    assert spans.tolist() == [[[1, 3], [4, 5], [5, 7]], [[0, 1], [3, 5], [0, 0]]]  # a token without frames: [0, 0)
    x = torch.arange(2 * 7 * 2, dtype=torch.float).view(2, 7, 2)  # frame t of row b: [14b + 2t, 14b + 2t + 1]
    means, n = span_means(frame_cumsum(x), spans)
    assert n.tolist() == [[2, 1, 2], [1, 2, 0]]
    assert means.tolist() == [
        [[3.0, 4.0], [8.0, 9.0], [11.0, 12.0]],  # frames 1-2, 4, 5-6
        [[14.0, 15.0], [21.0, 22.0], [0.0, 0.0]],  # frames 0, 3-4; a token without frames
    ]


def test_reference_spans_align_or_split_evenly():
    """Training frames of each reference token: its run in the forced alignment (the runs collapse back to the
    reference); a reference with more tokens (+ repeats) than frames has none, so the frames are split evenly."""
    model = _tiny(acoustic=True)
    g = torch.Generator().manual_seed(0)
    log_probs = (3 * torch.randn(3, 12, VOCAB, generator=g)).log_softmax(-1)
    lens = torch.tensor([12, 9, 5])
    tokens = torch.tensor([[5, 6, 6, 7], [4, 8, -1, -1], [7, 7, 7, 5]])  # row 2: 4 tokens + 2 repeats > 5 frames
    token_lens = torch.tensor([4, 2, 4])
    spans = model.reference_spans(log_probs, lens, tokens, token_lens)
    for b in range(2):
        labels = ctc_forced_align(log_probs[b, : lens[b]], tokens[b, : token_lens[b]]).tolist()
        for l in range(int(token_lens[b])):  # token l's frames are exactly one run of its label
            s, e = spans[b, l].tolist()
            assert 0 <= s < e <= lens[b] and set(labels[s:e]) == {int(tokens[b, l])}
            assert s == 0 or labels[s - 1] != labels[s] or labels[s] == 0
        assert (spans[b, :-1, 1] <= spans[b, 1:, 0])[: token_lens[b] - 1].all()  # in order
        assert spans[b, token_lens[b] :].eq(0).all()
    assert spans[2].tolist() == [[0, 1], [1, 2], [2, 3], [3, 5]]  # [l * 5 // 4, (l + 1) * 5 // 4)


def test_refine_with_acoustic_embeddings_uses_the_ctc_frames():
    """Decoding pools each greedy token's run of frames: the frame map of ``ctc_tokens_with_frames`` agrees with a
    loop over frames, and refine_tokens insists on the frame intervals exactly when the model has the option."""
    g = torch.Generator().manual_seed(1)
    lp = (3 * torch.randn(3, 40, 6, generator=g)).log_softmax(-1)
    lens = torch.tensor([40, 23, 1])
    tokens, _, n, frame_token = ctc_tokens_with_frames(lp, lens)
    for b in range(3):
        best = lp[b].argmax(-1).tolist()
        expected, k, prev = [], -1, None
        for t in range(40):
            if t >= lens[b] or best[t] == 0:
                expected.append(-1)
            else:
                k += best[t] != prev
                expected.append(k)
            prev = best[t] if t < lens[b] else None
        assert frame_token[b].tolist() == expected
        assert k + 1 == int(n[b])

    model = _tiny(acoustic=True).eval()
    x, lens = _batch()["feats"], _batch()["feat_lens"]
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
    tokens = torch.tensor([[5, M, 6]] * 3)
    with pytest.raises(ValueError, match="spans"):
        model.refine_tokens(tokens, torch.tensor([3, 3, 3]), tokens == M, h, h_lens, iterations=2)
    with pytest.raises(ValueError, match="spans"):
        _tiny().refine_tokens(tokens, torch.tensor([3, 3, 3]), tokens == M, h, h_lens, 2, torch.zeros(3, 3, 2, dtype=torch.long))


@pytest.mark.parametrize("length_prior", ["speech", "ctc"])
def test_hypothesis_copy_is_what_the_first_length_step_of_decoding_sees(monkeypatch, length_prior):
    """length_hypotheses: the training copy built from the CTC hypothesis (masks where decoding at a threshold puts
    them) has the decoder input, the frame intervals and so the length logits of decoding's first length step."""
    import narspeech.asr.mask_ctc as mask_ctc
    import narspeech.asr.mask_ctc_length as mask_ctc_length

    model = _tiny(True, True, max_span_length=5, length_prior=length_prior, length_hypotheses=True).eval()
    with torch.no_grad():  # a length head that is not zero, so that the states matter too
        torch.nn.init.normal_(model.length_head.weight, 0.0, 1.0)
    batch = _batch()
    x, lens = batch["feats"], batch["feat_lens"]
    seen = []
    length_logits = model._length_logits

    def record(states, spans, sums):
        seen.append(length_logits(states, spans, sums))
        return seen[-1]

    monkeypatch.setattr(model, "_length_logits", record)
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
        lp = model.ctc_head(h).log_softmax(-1)
        _, conf, n, _ = ctc_tokens_with_frames(lp, h_lens)
        threshold = float(conf[~make_pad_mask(n, conf.size(1))].median())
        model.infer(x, lens, ASRDecodeOptions("refine", iterations=1, threshold=threshold))
        for module in (mask_ctc, mask_ctc_length):  # the hypothesis copy of training (both halves of the model)
            monkeypatch.setattr(module, "lowest_scores_mask", lambda c, l: (c < threshold) & ~make_pad_mask(l, c.size(1)))
        cum = model._frame_sums(h, lp, h_lens, batch["token_lens"])  # the reference's token rate, as in training
        refs = [row[: int(k)] for row, k in zip(batch["tokens"].tolist(), batch["token_lens"].tolist())]
        hyp = ctc_tokens_with_frames(lp, h_lens)
        inp, new_lens, tgt, spans, hyp_cum = model._hypothesis_length_inputs(hyp, refs, h_lens, cum)
        states = model.decoder.states(inp, new_lens.clamp_min(1), h, h_lens, model._acoustic_inputs(hyp_cum, spans))
        logits = length_logits(states, spans, hyp_cum)
    assert (inp == M).any() and ((inp == M) == (tgt != IGNORE)).all()  # max_span_length 5 covers every run here
    valid = ~make_pad_mask(new_lens, inp.size(1))
    assert torch.allclose(logits[valid], seen[0][valid], atol=1e-5)


def _slow_confidences(lp: torch.Tensor) -> tuple[list[int], list[float]]:
    """Reference (the Mask-CTC paper / ESPnet): per token, the max frame probability over its run of frames."""
    probs, ids = lp.exp().max(-1)
    tokens, conf, prev = [], [], None
    for p, i in zip(probs.tolist(), ids.tolist()):
        if i != prev and i != 0:
            tokens.append(i)
            conf.append(p)
        elif i == prev and i != 0:
            conf[-1] = max(conf[-1], p)
        prev = i
    return tokens, conf


def test_ctc_confidences_match_the_frame_loop():
    g = torch.Generator().manual_seed(0)
    lp = (3 * torch.randn(4, 50, 6, generator=g)).log_softmax(-1)
    lens = torch.tensor([50, 31, 1, 17])
    tokens, conf, n = ctc_tokens_with_confidence(lp, lens)
    assert [tokens[b, : n[b]].tolist() for b in range(4)] == ctc_greedy(lp, lens)
    for b in range(4):
        ref_tokens, ref_conf = _slow_confidences(lp[b, : lens[b]])
        assert tokens[b, : n[b]].tolist() == ref_tokens
        torch.testing.assert_close(conf[b, : n[b]], torch.tensor(ref_conf))


# ---------------------------------------------------------------------------------------------------- configs


def test_config_errors():
    bad = [
        (dict(ctc_weight=0.0), "ctc_weight"),
        (dict(ctc_weight=1.0), "ctc_weight"),
        (dict(lsm_weight=1.0), "lsm_weight"),
        (dict(length_prediction=True, length_weight=0.0), "length_weight"),
        (dict(max_span_length=0), "max_span_length"),
        (dict(length_hypotheses=True), "length_prediction"),
        (dict(mlm_deletion=True), "mlm_hypotheses"),
    ]
    for kw, name in bad:
        with pytest.raises(ValueError, match=name):
            MaskCTCModel.from_config(MaskCTCConfig(**kw), 10)
    cfg = MaskCTCConfig()
    cfg.decoder.num_heads = 5
    with pytest.raises(ValueError, match="decoder.num_heads"):
        MaskCTCModel.from_config(cfg, 10)
    cfg = MaskCTCConfig()
    cfg.decoder.num_layers = 0
    with pytest.raises(ValueError, match="decoder.num_layers"):
        MaskCTCModel.from_config(cfg, 10)
    with pytest.raises(ConfigError, match="model.conf.decoder.layers"):
        config_from_dict({"model": {"name": "mask_ctc", "conf": {"decoder": {"layers": 2}}}})
    with pytest.raises(ConfigError, match="model.conf.ctc_weight"):
        config_from_dict({"model": {"name": "mask_ctc", "conf": {"ctc_weight": "high"}}})

    model = _tiny().eval()
    x, lens = _batch()["feats"], _batch()["feat_lens"]
    with pytest.raises(ValueError, match="greedy, beam, refine"):
        model.infer(x, lens, ASRDecodeOptions("mask_predict"))
    with pytest.raises(ValueError, match="iterations"):
        model.infer(x, lens, ASRDecodeOptions("refine", iterations=0))


@pytest.mark.parametrize(
    "conf",
    [
        "mini/asr1/conf/mask_ctc.yaml",
        "mini/asr1/conf/mask_ctc_lp.yaml",
        "mini/asr1/conf/mask_ctc_sc.yaml",
        "mini/asr1/conf/mask_ctc_lp_sc.yaml",
        "fsdd/asr1/conf/mask_ctc.yaml",
        "fsdd/asr1/conf/mask_ctc_lp.yaml",
        "fsdd/asr1/conf/mask_ctc_sc.yaml",
    ],
)
def test_recipe_configs_build_train_and_decode(conf):
    cfg = load_config(REPO / "egs" / conf)
    assert cfg.model.name == "mask_ctc"
    torch.manual_seed(0)
    model = MODELS.get(cfg.model.name).from_config(cfg.model.conf, vocab_size=30)
    name = Path(conf).stem
    assert (model.length_head is not None) == ("_lp" in name)
    assert (model.cond_proj is not None) == name.endswith("_sc")  # the encoder of sc_ctc.yaml
    assert model.acoustic_proj is not None
    batch = _batch()
    batch["tokens"] = batch["tokens"] + 10 * (batch["tokens"] >= 0)
    terms = model(batch)
    sum(t.weight * t.value for t in terms.values()).backward()
    model.eval()
    for method in ("greedy", "refine"):
        assert len(model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions(method, iterations=2))) == 3


# ---------------------------------------------------------------------------------------------------- learning


# Epochs (2 steps each) until "refine" first transcribes the whole tone corpus, measured with per-epoch checkpoints
# of one run each: plain Mask-CTC 117 (stable from 128; CTC greedy is at CER 0 from epoch 20), with acoustic
# embeddings 18 (the same epoch as CTC greedy, every token then masked at 0.999, and stable after). Each run
# gets ~1.7x its measured need.
@pytest.mark.parametrize(
    "acoustic, length_prior, hypotheses, mlm_hypotheses, epochs",
    [
        (False, None, False, False, 150),
        (True, None, False, False, 30),
        (True, None, False, True, 30),
        (True, "ctc", False, False, 30),
        (True, "ctc", True, False, 30),
    ],
)
def test_mask_ctc_overfits_and_refine_reaches_zero_cer(
    tone_setup, tmp_path, acoustic, length_prior, hypotheses, mlm_hypotheses, epochs
):
    """Through the real Trainer on the tone corpus: the MLM loss falls more than 10x, and "refine" (K=10, threshold
    0.999, which masks some of the CTC tokens, so the decoder has work to do) transcribes every utterance; with
    acoustic embeddings in a fifth of the epochs plain Mask-CTC needs, also with the MLM trained on CTC hypotheses
    too (``mlm_hypotheses``); so does Improved Mask-CTC with the CTC-count length prior (``length_prior``), also
    with the length head trained on CTC hypotheses (``hypotheses``)."""
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.audio.features import SAMPLE_RATE, fbank
    from narspeech.audio.io import load_audio
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import char_error_rate
    from narspeech.train.checkpoint import load_checkpoint
    from narspeech.asr.task import load_asr_model
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "mask_ctc"
    cfg["model"]["conf"]["decoder"] = {"num_heads": 2, "ffn_dim": 96, "num_layers": 1, "dropout": 0.0}
    cfg["model"]["conf"]["acoustic_embedding"] = acoustic
    cfg["model"]["conf"]["mlm_hypotheses"] = mlm_hypotheses
    if length_prior is not None:
        cfg["model"]["conf"].update(
            length_prediction=True, length_prior=length_prior, max_span_length=8, length_hypotheses=hypotheses
        )
    # without acoustic embeddings the decoder needs more updates than the CTC head (~300 steps here)
    cfg["train"]["max_epochs"] = epochs
    exp = tmp_path / "mask_ctc"
    Trainer(config_from_dict(cfg), exp, resume=False).fit()
    # the last epoch, not model.pt: that is the first epoch of CTC-greedy CER 0, picked by validation
    model, tok, _ = load_asr_model(exp / "last.pt")
    utts = read_data_dir(tone_setup["train"])

    feats = [fbank(load_audio(u.audio, SAMPLE_RATE)) for u in utts]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    x_lens = torch.tensor([f.size(0) for f in feats])
    with torch.inference_mode():
        h, h_lens = model.encode(x, x_lens)
        _, conf, n = ctc_tokens_with_confidence(model.ctc_head(h).log_softmax(-1), h_lens)
    num_masked = int(((conf < 0.999) & ~make_pad_mask(n, conf.size(1))).sum())
    assert num_masked > 0

    opts = ASRDecodeOptions("refine", iterations=10, threshold=0.999)
    hyps = {t.key: t.text for t in transcribe_utterances(model, tok, utts, batch_size=4, opts=opts)}
    cer = char_error_rate([u.text for u in utts], [hyps[u.utt_id] for u in utts])
    assert cer.errors == 0, f"CER {cer}: {hyps}"
    hist = load_checkpoint(exp / "last.pt")["history"]
    # per-epoch values are single batches with random masks: compare the last ten epochs' mean
    assert statistics.mean(e["train_mlm"] for e in hist[-10:]) < 0.1 * hist[0]["train_mlm"]


def _tone_batch(utts):
    from narspeech.audio.features import SAMPLE_RATE, fbank
    from narspeech.audio.io import load_audio

    feats = [fbank(load_audio(u.audio, SAMPLE_RATE)) for u in utts]
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), torch.tensor([f.size(0) for f in feats])


# Epochs (2 steps each) of one run, corruptions below not restored: 12 of 137 at epoch 20, 7 at 50, 0 at 60, 3 at
# 70, 2 at 80 (random masks each step keep it moving by a few); without the duration prior (head only) 125 at 20
# and still 3 at 200.
LP_EPOCHS = 70
LP_MAX_FAILURES = 0.04  # of the corruptions


def test_improved_mask_ctc_learns_to_restore_deleted_and_inserted_tokens(tone_setup, tmp_path):
    """Improved Mask-CTC (+ acoustic embeddings) trained on the tone corpus: the length loss falls more than 10x,
    and the length predictor undoes corruptions it was never shown as such. In each utterance's CTC output (which
    is the reference by then), a run of 1-3 tokens replaced by one mask comes back as exactly those tokens (the
    predictor reads how many tones lie in the gap), and a mask inserted between two words is deleted again; all
    but a few percent of them."""
    from narspeech.data.kaldi import read_data_dir
    from narspeech.nat.ctc import ctc_greedy
    from narspeech.train.checkpoint import load_checkpoint
    from narspeech.asr.task import load_asr_model
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "mask_ctc"
    cfg["model"]["conf"].update(
        decoder={"num_heads": 2, "ffn_dim": 96, "num_layers": 1, "dropout": 0.0},
        acoustic_embedding=True, length_prediction=True, max_span_length=8,
    )
    cfg["train"]["max_epochs"] = LP_EPOCHS
    exp = tmp_path / "mask_ctc_lp"
    Trainer(config_from_dict(cfg), exp, resume=False).fit()
    model, tok, _ = load_asr_model(exp / "last.pt")
    hist = load_checkpoint(exp / "last.pt")["history"]
    assert statistics.mean(e["train_length"] for e in hist[-10:]) < 0.1 * hist[0]["train_length"]

    utts = read_data_dir(tone_setup["train"])
    x, x_lens = _tone_batch(utts)
    with torch.inference_mode():
        h, h_lens = model.encode(x, x_lens)
        log_probs = model.ctc_head(h).log_softmax(-1)
        tokens, _, n, frame_token = ctc_tokens_with_frames(log_probs, h_lens)
    refs = [tok.encode(u.text) for u in utts]
    assert ctc_greedy(log_probs, h_lens) == refs
    spans = token_spans(frame_token, tokens.size(1))
    space = tok.encode("a b")[1]
    failures, cases = [], 0
    for b, ref in enumerate(refs):
        for start in range(len(ref)):
            for k in (1, 2, 3):  # deletion: ref[start:start + k] -> one mask
                if start + k > len(ref) or space in ref[start : start + k]:
                    continue
                row = ref[:start] + [M] + ref[start + k :]
                row_spans = spans[b, : len(ref)].tolist()
                # the mask's frames: those of the tokens it replaced (as CTC's token would have had them)
                row_spans = row_spans[:start] + [[row_spans[start][0], row_spans[start + k - 1][1]]] + row_spans[start + k :]
                failures += _restore(model, row, row_spans, h[b : b + 1], h_lens[b : b + 1], ref)
                cases += 1
        for gap in [i for i, t in enumerate(ref) if t == space]:  # insertion: a mask before each word boundary
            row = ref[:gap] + [M] + ref[gap:]
            row_spans = spans[b, : len(ref)].tolist()
            row_spans = row_spans[:gap] + [[0, 0]] + row_spans[gap:]
            failures += _restore(model, row, row_spans, h[b : b + 1], h_lens[b : b + 1], ref)
            cases += 1
    assert cases > 100 and len(failures) <= LP_MAX_FAILURES * cases, f"{len(failures)} of {cases} not restored: {failures[:5]}"


def test_ctc_length_prior_counts_the_tokens_ctc_starts_in_a_span():
    """length_prior "ctc": the prior's mean for a span is how many tokens the CTC best path starts within its
    frames; with a zero length head it is the prediction, so a run of masks over CTC's own tokens keeps its count."""
    model = _tiny(length_prediction=True, acoustic=True, max_span_length=5, length_prior="ctc").eval()
    path = torch.tensor([[0, 5, 5, 0, 6, 6, 6, 0, 5, 0, 0, 0]])  # tokens start at frames 1, 4 and 8
    log_probs = torch.nn.functional.one_hot(path, VOCAB).float().mul(10.0).log_softmax(-1)
    h, lens = torch.zeros(1, 12, 32), torch.tensor([10])  # frames 10, 11: padding
    sums = model._frame_sums(h, log_probs, lens, torch.tensor([3]))
    assert sums.ctc_starts[0].tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    spans = torch.tensor([[[0, 4], [4, 10], [2, 9], [9, 12], [0, 10]]])
    with torch.no_grad():
        pred = model._length_logits(torch.zeros(1, 5, 32), spans, sums).argmax(-1)
    assert pred.tolist() == [[1, 2, 2, 0, 3]]


def _restore(model, row, row_spans, h, h_lens, ref) -> list:
    t = torch.tensor([row])
    state = model.refine_tokens(
        t, torch.tensor([len(row)]), t == M, h, h_lens, iterations=2, spans=torch.tensor([row_spans])
    )
    out = state.tokens[0, : int(state.lens[0])].tolist()
    return [] if out == ref else [(row, out, ref)]
