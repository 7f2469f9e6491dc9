"""Imputer (Chan et al., 2020): the imputation loss against CTC and brute force, block masking, block decoding,
the model (tiny dimensions), its teacher, its configs, and an overfit run through the real Trainer."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch
import yaml

from narspeech.asr.base import ASRDecodeOptions
from narspeech.asr.imputer import VALID_MASK_SEED, ImputerConfig, ImputerModel
from narspeech.asr.task import ASRDataConfig
from narspeech.config import config_from_dict, load_config
from narspeech.nat.ctc import ctc_forced_align, ctc_loss
from narspeech.nat.imputation import block_decode, block_mask, constrain_to_alignment, imputation_loss
from narspeech.text.tokenizer import BLANK_ID, MASK_ID
from narspeech.train.checkpoint import load_checkpoint
from narspeech.asr.task import load_asr_model

REPO = Path(__file__).resolve().parents[1]


def slow_collapse(frames: list[int], blank: int = 0) -> list[int]:
    out, prev = [], None
    for f in frames:
        if f != prev and f != blank:
            out.append(f)
        prev = f
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine thread hand-offs dominate."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- the imputation loss


def _random_log_probs(batch: int, frames: int, vocab: int, seed: int) -> torch.Tensor:
    return (2 * torch.randn(batch, frames, vocab, generator=torch.Generator().manual_seed(seed))).log_softmax(-1)


# two utterances, the second padded; the first has a repeated token (needs a blank in between)
_TOKENS = torch.tensor([[5, 5, 6], [7, -1, -1]])
_TOKEN_LENS = torch.tensor([3, 1])
_LENS = torch.tensor([10, 6])
# one valid alignment per utterance (padding: anything)
_PATH = torch.tensor([[0, 5, 5, 0, 5, 6, 6, 0, 0, 0], [0, 7, 7, 0, 0, 0, 3, 3, 3, 3]])


def test_imputation_loss_with_nothing_observed_is_exactly_ctc():
    lp = _random_log_probs(2, 10, 9, seed=0)
    observed = torch.zeros(2, 10, dtype=torch.bool)
    got = imputation_loss(lp, _LENS, _TOKENS, _TOKEN_LENS, _PATH, observed)
    assert torch.equal(got, ctc_loss(lp, _LENS, _TOKENS, _TOKEN_LENS))


def test_imputation_loss_fully_observed_is_the_path_log_prob():
    lp = _random_log_probs(2, 10, 9, seed=1)
    observed = torch.arange(10).unsqueeze(0) < _LENS.unsqueeze(1)
    got = imputation_loss(lp, _LENS, _TOKENS, _TOKEN_LENS, _PATH, observed)
    path_lp = [sum(float(lp[b, t, _PATH[b, t]]) for t in range(int(_LENS[b]))) for b in range(2)]
    torch.testing.assert_close(got, torch.tensor(-sum(path_lp) / 2))


def _brute_force_loss(lp: torch.Tensor, tokens: list[int], align: list[int], observed: list[bool]) -> float:
    """-log of the summed probability of every frame labelling that collapses to ``tokens`` and agrees with
    ``align`` at the observed frames (enumerates all V^T labellings)."""
    T, V = lp.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        if slow_collapse(list(path)) == tokens and all(not o or p == a for p, a, o in zip(path, align, observed)):
            total += float(sum(lp[t, s] for t, s in enumerate(path)).double().exp())
    return -torch.tensor(total, dtype=torch.float64).log().item()


def test_partially_observed_loss_is_the_exact_constrained_marginal_and_lies_between():
    """Observing more frames of one valid path shrinks the set of alignments summed over: the loss grows from CTC
    (nothing observed) to the path's own loss (everything observed); each value equals brute-force enumeration."""
    T, V = 6, 4
    lp = _random_log_probs(1, T, V, seed=2)
    tokens, path = [1, 2, 2], [1, 1, 2, 0, 2, 0]
    order = [3, 0, 5, 2, 1, 4]  # frames revealed one by one
    losses = []
    for n in range(T + 1):
        observed = [t in order[:n] for t in range(T)]
        got = imputation_loss(lp, torch.tensor([T]), torch.tensor([tokens]), torch.tensor([3]), torch.tensor([path]),
                              torch.tensor([observed]))
        assert got.item() == pytest.approx(_brute_force_loss(lp[0], tokens, path, observed), rel=1e-5)
        losses.append(got.item())
    ctc = ctc_loss(lp, torch.tensor([T]), torch.tensor([tokens]), torch.tensor([3])).item()
    assert losses[0] == pytest.approx(ctc, rel=1e-6)
    assert losses[-1] == pytest.approx(-float(sum(lp[0, t, s] for t, s in enumerate(path))), rel=1e-5)
    assert all(a <= b + 1e-5 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] > losses[0] + 1e-3


def test_imputation_loss_gradients_are_finite_and_impossible_observations_are_zeroed():
    """Utterance 0: observations agree with its reference. 1: observes a token absent from the reference.
    2: observes 5, blank, 5 (two 5s) although the reference has one. 3: more tokens than frames.
    Only utterance 0 gets a loss and a gradient; everything stays finite."""
    x = torch.randn(4, 8, 9, generator=torch.Generator().manual_seed(3), requires_grad=True)
    lp = x.log_softmax(-1)
    tokens = torch.tensor([[5, 6, -1], [5, 6, -1], [5, 6, -1], [5, 6, 7]])
    token_lens = torch.tensor([2, 2, 2, 3])
    lens = torch.tensor([8, 8, 8, 2])
    align = torch.tensor([
        [0, 5, 0, 0, 6, 0, 0, 0],
        [0, 8, 0, 0, 0, 0, 0, 0],
        [5, 0, 5, 0, 6, 0, 0, 0],
        [5, 6, 0, 0, 0, 0, 0, 0],
    ])
    observed = align != 0
    observed[2, 1] = True  # the blank between the two 5s
    per_utt = [imputation_loss(lp[b : b + 1], lens[b : b + 1], tokens[b : b + 1], token_lens[b : b + 1],
                               align[b : b + 1], observed[b : b + 1]) for b in range(4)]
    assert per_utt[0] > 0 and all(v == 0 for v in per_utt[1:])
    # constrained emissions really are -inf off the observed symbol
    c = constrain_to_alignment(lp, align, observed)
    assert torch.isinf(c[1, 1]).sum() == 8 and c[1, 1, 8] == lp[1, 1, 8]
    loss = imputation_loss(lp, lens, tokens, token_lens, align, observed)
    torch.testing.assert_close(loss, per_utt[0] / 4)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0].abs().sum() > 0 and x.grad[1:].abs().sum() == 0


# ---------------------------------------------------------------- block masking


def test_block_mask_by_hand():
    """Per utterance k ~ U{1..B}; in every block the k frames with the smallest noise are masked (partial last block:
    min(k, its valid frames)); padding never; the draws are k then the noise, from the given generator."""
    B, T = 4, 11
    lens = torch.tensor([11, 9, 3, 0, 8])
    mask = block_mask(lens, T, B, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    k = torch.randint(1, B + 1, (5,), generator=g)
    noise = torch.rand(5, 12, generator=g)
    expected = torch.zeros(5, T, dtype=torch.bool)
    for b in range(5):
        for start in range(0, T, B):
            frames = [t for t in range(start, start + B) if t < int(lens[b])]
            for t in sorted(frames, key=lambda t: float(noise[b, t]))[: int(k[b])]:
                expected[b, t] = True
    assert torch.equal(mask, expected)


def test_block_mask_counts_cover_one_to_b():
    B = 8
    lens = torch.full((400,), 24)
    mask = block_mask(lens, 24, B, torch.Generator().manual_seed(0))
    per_block = mask.view(400, 3, B).sum(-1)
    assert (per_block == per_block[:, :1]).all()  # one k per utterance, the same in each of its blocks
    counts = torch.bincount(per_block[:, 0], minlength=B + 1)
    assert counts[0] == 0 and (counts[1:] > 25).all()  # every k in 1..B drawn (50 expected each)


def test_block_mask_errors():
    with pytest.raises(ValueError, match="block_size"):
        block_mask(torch.tensor([5]), 5, 0)
    with pytest.raises(ValueError, match="full_prob"):
        block_mask(torch.tensor([5]), 5, 2, full_prob=1.5)


def test_block_mask_full_prob_masks_whole_utterances():
    """full_prob p: every valid frame of an utterance masked with probability p + (1 - p) / B; p = 0 draws exactly
    the default masks (same generator state), p = 1 masks every valid frame and no padding."""
    B, T = 4, 24
    lens = torch.randint(5, T + 1, (2000,), generator=torch.Generator().manual_seed(1))
    valid = ~(torch.arange(T) >= lens.unsqueeze(1))
    plain = block_mask(lens, T, B, torch.Generator().manual_seed(3))
    assert torch.equal(block_mask(lens, T, B, torch.Generator().manual_seed(3), full_prob=0.0), plain)
    assert torch.equal(block_mask(lens, T, B, torch.Generator().manual_seed(3), full_prob=1.0), valid)
    half = block_mask(lens, T, B, torch.Generator().manual_seed(3), full_prob=0.5)
    full = (half == valid).all(1)
    assert abs(full.float().mean().item() - (0.5 + 0.5 / B)) < 0.04  # 0.625 expected; sd of the mean ~0.011
    # the utterances not fully masked keep the default masks (k and noise drawn first, in the same order)
    assert torch.equal(half[~full], plain[~full])


# ---------------------------------------------------------------- block decoding (model-free)


def test_block_decode_fills_the_most_confident_frame_of_every_block_per_pass():
    V, B = 6, 3
    lens = torch.tensor([7, 4])
    lp = _random_log_probs(2, 7, V, seed=4)
    lp[..., MASK_ID] = float("-inf")
    seen: list[torch.Tensor] = []

    def frame_log_probs(alignment: torch.Tensor) -> torch.Tensor:
        seen.append(alignment.clone())
        return lp

    state = block_decode(frame_log_probs, lens, 7, B, MASK_ID)
    assert state.passes == B and len(seen) == B and not state.masked.any()
    valid = torch.arange(7).unsqueeze(0) < lens.unsqueeze(1)
    assert torch.equal(state.tokens[valid], lp.argmax(-1)[valid])  # fixed inputs: every frame ends at its argmax
    assert (state.tokens[~valid] == MASK_ID).all()
    conf = lp.max(-1).values
    for b in range(2):
        for start in range(0, 7, B):
            frames = [t for t in range(start, start + B) if t < int(lens[b])]
            # the order frames were filled in == descending confidence
            filled_at = {t: next(i for i, a in enumerate(seen + [state.tokens]) if a[b, t] != MASK_ID) for t in frames}
            by_conf = sorted(frames, key=lambda t: -float(conf[b, t]))
            assert [filled_at[t] for t in by_conf] == list(range(1, len(frames) + 1))


# ---------------------------------------------------------------- the model


def _tiny_model(ctc_weight: float = 0.0, block: str = "conformer", vocab: int = 12, teacher: str = "", **kw) -> ImputerModel:
    cfg = ImputerConfig(teacher=teacher, block_size=4, ctc_weight=ctc_weight, **kw)
    cfg.encoder.block, cfg.encoder.d_model, cfg.encoder.num_heads, cfg.encoder.ffn_dim = block, 32, 2, 64
    cfg.encoder.num_layers, cfg.encoder.subsampling_channels, cfg.encoder.dropout = 2, 8, 0.0
    cfg.specaug.num_freq_masks = cfg.specaug.num_time_masks = 0
    torch.manual_seed(0)
    return ImputerModel.from_config(cfg, vocab_size=vocab)


def _batch(lengths: list[int], vocab: int = 12, seed: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), max(lengths), 80)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, 80, generator=g)
    token_lens = torch.tensor([min(5, max(1, n // 40)) for n in lengths])
    tokens = torch.full((len(lengths), int(token_lens.max())), -1)
    for i, m in enumerate(token_lens.tolist()):
        tokens[i, :m] = torch.randint(4, vocab, (m,), generator=g)
    return {"feats": feats, "feat_lens": torch.tensor(lengths), "tokens": tokens, "token_lens": token_lens}


def test_imputer_forward_backward_infer():
    batch = _batch([120, 90, 20])  # the last: 4 encoder frames for 1 token
    for w in (0.0, 0.3):
        model = _tiny_model(ctc_weight=w)
        terms = model(batch)
        assert set(terms) == ({"imputer", "ctc"} if w else {"imputer"})
        assert terms["imputer"].weight == pytest.approx(1 - w)
        for t in terms.values():
            assert t.value.dim() == 0 and torch.isfinite(t.value) and t.value > 0
        sum(t.weight * t.value for t in terms.values()).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        assert model.align_embed.weight.grad.abs().sum() > 0
        model.eval()
        for method in ("greedy", "refine"):
            hyps = model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions(method, iterations=4))
            assert len(hyps) == 3 and all(isinstance(t, int) and 0 < t < 12 and t != MASK_ID for h in hyps for t in h)


def test_full_mask_prob_one_makes_the_imputation_loss_the_ctc_loss_of_the_all_masked_pass():
    model = _tiny_model(full_mask_prob=1.0).eval()
    batch = _batch([120, 90])
    with torch.no_grad():
        h, lens = model.encode(batch["feats"], batch["feat_lens"])
        expected = ctc_loss(model.ctc_head(h).log_softmax(-1), lens, batch["tokens"], batch["token_lens"])
        got = model(batch)["imputer"].value
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="full_mask_prob"):
        _tiny_model(full_mask_prob=-0.1)


def test_model_files_with_the_old_head_name_load():
    """Files written before the head was renamed ``ctc_head`` name it ``head``."""
    model = _tiny_model()
    state = {(k.replace("ctc_head.", "head.")): v.clone() + 1.0 for k, v in model.state_dict().items()}
    fresh = _tiny_model()
    fresh.load_state_dict(state)  # strict
    assert torch.equal(fresh.ctc_head.weight, state["head.weight"])


def test_unalignable_utterances_fall_back_to_nothing_observed():
    model = _tiny_model().eval()
    batch = _batch([120, 30])  # 30 fbank frames -> 6 encoder frames
    # 8 tokens with 6 repeats need 14 frames
    batch["tokens"] = torch.tensor([[4, 5, 6, -1, -1, -1, -1, -1], [7, 7, 7, 7, 8, 8, 8, 8]])
    batch["token_lens"] = torch.tensor([3, 8])
    alignment, aligned = model._expert_alignment(*(batch[k] for k in ("feats", "feat_lens", "tokens", "token_lens")), 29)
    assert aligned.tolist() == [True, False]
    assert slow_collapse(alignment[0, :29].tolist()) == [4, 5, 6]
    assert torch.isfinite(model(batch)["imputer"].value)


def test_eval_loss_is_deterministic_and_train_masks_vary():
    model = _tiny_model()
    batch = _batch([120, 90])
    model.eval()
    assert torch.equal(model(batch)["imputer"].value, model(batch)["imputer"].value)
    model.train()
    assert len({round(model(batch)["imputer"].value.item(), 4) for _ in range(5)}) > 1


SC = {"interctc_layers": [1], "interctc_weight": 0.5, "self_condition": True}


@pytest.mark.parametrize("sc", [False, True])
def test_refine_pass_equals_the_encoder_hook_pass(sc):
    """The decoding path (front end once, blocks per pass) computes what Encoder.forward with the hook computes,
    self-conditioning included."""
    for block in ("conformer", "transformer"):
        model = _tiny_model(block=block, **(SC if sc else {})).eval()
        batch = _batch([120, 77])
        align = torch.randint(0, 12, (2, 29), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            h_ref, lens, _ = model._frames(model.cmvn(batch["feats"]), batch["feat_lens"], align)
            h0, lens2 = model._front(batch["feats"], batch["feat_lens"])
            pad = torch.arange(29).unsqueeze(0) >= lens2.unsqueeze(1)
            h = model._blocks(h0, pad, align)
        assert torch.equal(lens, lens2)
        torch.testing.assert_close(h[0], h_ref[0])
        torch.testing.assert_close(h[1, : lens[1]], h_ref[1, : lens[1]])


def test_self_conditioned_encoder_option():
    """interctc_layers / self_condition as in conf ``ctc``: the imputer share splits into (1 - w) * imputer +
    w * interimputer (the imputation loss of the shared head after block 1 and the encoder's norm, with the same
    observed frames), the projected posteriors change every pass, and both decoding methods run on them."""
    batch = _batch([120, 90, 20])
    model = _tiny_model(ctc_weight=0.2, **SC)
    terms = model(batch)
    assert {k: t.weight for k, t in terms.items()} == pytest.approx({"imputer": 0.4, "interimputer": 0.4, "ctc": 0.2})
    sum(t.weight * t.value for t in terms.values()).backward()
    assert model.cond_proj.weight.grad.abs().sum() > 0
    model.eval()
    feats, feat_lens, tokens, token_lens = (batch[k] for k in ("feats", "feat_lens", "tokens", "token_lens"))
    with torch.no_grad():  # the intermediate loss by hand, on the eval-mode masks
        num_frames = model._num_frames(feats)
        alignment, aligned = model._expert_alignment(feats, feat_lens, tokens, token_lens, num_frames)
        h0, lens = model._front(feats, feat_lens)
        masked = block_mask(lens, num_frames, 4, torch.Generator().manual_seed(VALID_MASK_SEED))
        observed = ~masked & aligned.unsqueeze(1) & (torch.arange(num_frames) < lens.unsqueeze(1))
        pad = torch.arange(num_frames).unsqueeze(0) >= lens.unsqueeze(1)
        h1 = model.encoder.layers[0](h0 + model.align_embed(torch.where(observed, alignment, MASK_ID)), pad)
        z = model.ctc_head(model.encoder.norm(h1)).log_softmax(-1)
        expected = imputation_loss(z, lens, tokens, token_lens, alignment, observed, BLANK_ID)
        torch.testing.assert_close(model(batch)["interimputer"].value, expected)
        h_sc, _ = model.encode(feats, feat_lens)
        proj = {k: v.clone() for k, v in model.cond_proj.state_dict().items()}
        model.cond_proj.weight.zero_()
        model.cond_proj.bias.zero_()
        h_zero, _ = model.encode(feats, feat_lens)
        model.cond_proj.load_state_dict(proj)
    assert not torch.allclose(h_sc, h_zero, atol=1e-4)
    plain = _tiny_model(ctc_weight=0.2).eval()  # same seed: the same weights but for the projection
    torch.testing.assert_close(h_zero, plain.encode(feats, feat_lens)[0])
    for method in ("greedy", "refine"):
        hyps = model.infer(feats, feat_lens, ASRDecodeOptions(method, iterations=4))
        assert len(hyps) == 3 and all(0 < t < 12 and t != MASK_ID for h in hyps for t in h)
    with pytest.raises(ValueError, match="self_condition needs"):
        _tiny_model(self_condition=True)
    with pytest.raises(ValueError, match="interctc_layers"):
        _tiny_model(interctc_layers=[2])  # 2 blocks: the last one already has the loss


class _CallCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self.inner = module.forward
        module.forward = self  # the instance attribute shadows the class method for nn.Module.__call__

    def __call__(self, *args, **kwargs):
        self.n += 1
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("lengths", [[200], [200, 120, 45], [120, 61], [27]])
def test_block_decoding_takes_b_passes_and_one_front_end(lengths):
    """B model passes whatever the lengths (fewer only when every utterance is shorter than one block: then all
    frames are filled after as many passes as frames); the CMVN/subsampling front end runs once."""
    model = _tiny_model().eval()
    batch = _batch(lengths)
    B = 8
    frames = [((n - 1) // 2 - 1) // 2 for n in lengths]
    passes = _CallCounter(model.encoder.layers[0])
    front = _CallCounter(model.encoder.subsampling)
    hyps = model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("refine", iterations=B))
    assert passes.n == min(B, max(frames)) and front.n == 1 and len(hyps) == len(lengths)
    passes.n = front.n = 0
    model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("greedy"))
    assert passes.n == 1 and front.n == 1


def test_batched_decoding_equals_per_utterance():
    model = _tiny_model().eval()
    with torch.no_grad():
        model.ctc_head.weight.mul_(8.0)  # a peaky random model: confidences far apart, no near-ties to flip
    lengths = [200, 150, 97, 61]
    batch = _batch(lengths)
    for opts in (ASRDecodeOptions("greedy"), ASRDecodeOptions("refine", iterations=4),
                 ASRDecodeOptions("refine", iterations=8)):
        together = model.infer(batch["feats"], batch["feat_lens"], opts)
        alone = [model.infer(batch["feats"][i : i + 1, :n], torch.tensor([n]), opts)[0] for i, n in enumerate(lengths)]
        assert together == alone, opts
    assert any(len(h) > 0 for h in together)


def test_refine_with_b_1_is_greedy():
    """With B = 1, every frame is its own block: one pass fixes them all, i.e. exactly greedy decoding."""
    model = _tiny_model().eval()
    batch = _batch([150, 97])
    assert model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("refine", iterations=1)) == \
        model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("greedy"))


def test_config_and_option_errors():
    with pytest.raises(ValueError, match="block_size"):
        ImputerModel.from_config(ImputerConfig(block_size=0), 10)
    with pytest.raises(ValueError, match="ctc_weight"):
        ImputerModel.from_config(ImputerConfig(ctc_weight=1.0), 10)
    model = _tiny_model().eval()
    batch = _batch([100])
    with pytest.raises(ValueError, match="greedy, refine"):
        model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("beam"))
    with pytest.raises(ValueError, match="iterations"):
        model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("refine", iterations=0))
    with pytest.raises(ValueError, match="block_size"):
        config_from_dict({"model": {"name": "imputer", "conf": {"block_size": "eight"}}})
    with pytest.raises(ValueError, match="model.conf.blocksize"):
        config_from_dict({"model": {"name": "imputer", "conf": {"blocksize": 8}}})


# ---------------------------------------------------------------- teacher


def test_missing_teacher_names_the_file(tmp_path):
    path = tmp_path / "no_such" / "model.pt"
    model = _tiny_model(teacher=str(path))
    with pytest.raises(ValueError, match=str(path)):
        model(_batch([120]))


def test_teacher_vocabulary_mismatch_names_the_file(trained_tone_model):
    _, tok, _ = load_asr_model(trained_tone_model)
    model = _tiny_model(teacher=str(trained_tone_model), vocab=tok.vocab_size + 1)
    with pytest.raises(ValueError, match=f"{trained_tone_model}.*vocabulary"):
        model(_batch([120], vocab=tok.vocab_size))


def test_teacher_alignments_are_its_forced_alignments_and_it_stays_out_of_the_model(trained_tone_model):
    teacher, tok, _ = load_asr_model(trained_tone_model)
    model = _tiny_model(teacher=str(trained_tone_model), vocab=tok.vocab_size)
    keys, n_params = set(model.state_dict()), sum(p.numel() for p in model.parameters())
    batch = _batch([160, 120], vocab=tok.vocab_size)
    terms = model(batch)
    assert torch.isfinite(terms["imputer"].value)
    assert set(model.state_dict()) == keys and sum(p.numel() for p in model.parameters()) == n_params
    assert not any(p.requires_grad for p in model._teacher_cache["model"].parameters())
    assert not model._teacher_cache["model"].training
    alignment, aligned = model._expert_alignment(*(batch[k] for k in ("feats", "feat_lens", "tokens", "token_lens")), 39)
    with torch.no_grad():
        lp, lens = teacher.ctc_log_probs(batch["feats"], batch["feat_lens"])
    assert aligned.all()
    for b in range(2):
        n, m = int(lens[b]), int(batch["token_lens"][b])
        assert torch.equal(alignment[b, :n], ctc_forced_align(lp[b, :n], batch["tokens"][b, :m]))


# ---------------------------------------------------------------- recipe configs


@pytest.mark.parametrize(
    "recipe,conf,teacher",
    [
        ("mini", "imputer.yaml", "exp/ctc/model.pt"),
        ("mini", "imputer_sc.yaml", "exp/ctc/model.pt"),
        ("fsdd", "imputer.yaml", "exp/conformer_ctc/model.pt"),
    ],
)
def test_recipe_configs_name_the_ctc_teacher_and_train(recipe, conf, teacher):
    """The teacher path is the CTC model the recipe's run.sh writes; with self-alignment instead (the teacher is not
    trained here) the config's model trains and decodes on a dummy batch."""
    asr1 = REPO / "egs" / recipe / "asr1"
    cfg = load_config(asr1 / "conf" / conf)
    assert cfg.model.name == "imputer" and cfg.model.conf.teacher == teacher
    assert (ImputerModel.from_config(cfg.model.conf, 30).cond_proj is not None) == conf.endswith("_sc.yaml")
    base = yaml.safe_load((asr1 / "conf" / ("ctc.yaml" if recipe == "mini" else "conformer_ctc.yaml")).read_text())
    assert cfg.data == ASRDataConfig(**base["data"])  # same data, tokenizer, CMVN as the CTC teacher
    run_sh = (asr1 / "run.sh").read_text()
    assert f"exp={Path(teacher).parent}" in run_sh
    cfg.model.conf.teacher = ""
    torch.manual_seed(0)
    model = ImputerModel.from_config(cfg.model.conf, vocab_size=30)
    batch = _batch([120, 90], vocab=30)
    terms = model(batch)
    sum(t.weight * t.value for t in terms.values()).backward()
    assert all(torch.isfinite(t.value) for t in terms.values())
    model.eval()
    hyps = model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions("refine", iterations=cfg.model.conf.block_size))
    assert len(hyps) == 2


# ---------------------------------------------------------------- overfit through the Trainer


def test_imputer_overfits_to_zero_cer_with_a_ctc_teacher(tone_setup, trained_tone_model, tmp_path):
    """Imputer trained on the tone corpus with the trained tiny CTC model as the aligner: block decoding ("refine",
    B passes) transcribes the training utterances without error and the imputation loss drops.

    Decoded with the final weights (last.pt): model.pt is the earliest epoch with the best validation CER, which the
    trainer measures by greedy decoding (every frame masked); that one reaches 0 before the conditioned states that
    block decoding visits are learned."""
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import char_error_rate
    from narspeech.train.checkpoint import build_model_from_checkpoint
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "imputer"
    cfg["model"]["conf"].update(teacher=str(trained_tone_model), block_size=4)
    out = Trainer(config_from_dict(cfg), tmp_path / "imputer", resume=False).fit()
    exported, _, _ = load_asr_model(out)  # a model file decodes without the teacher
    assert isinstance(exported, ImputerModel) and not exported._teacher_cache
    last = load_checkpoint(tmp_path / "imputer" / "last.pt")
    model, task, _ = build_model_from_checkpoint(last)
    tok = task.tokenizer
    utts = read_data_dir(tone_setup["train"])
    refs = [u.text for u in utts]
    for opts in (ASRDecodeOptions("refine", iterations=4), ASRDecodeOptions("greedy")):
        hyps = {t.key: t.text for t in transcribe_utterances(model, tok, utts, batch_size=4, opts=opts)}
        cer = char_error_rate(refs, [hyps[u.utt_id] for u in utts])
        assert cer.errors == 0, f"{opts.method}: CER {cer}: {hyps}"
    hist = last["history"]
    assert hist[-1]["train_imputer"] < 0.05 * hist[0]["train_imputer"]
    assert hist[-1]["valid_loss"] < 0.05 * hist[0]["valid_loss"]


def test_init_from_a_ctc_model_starts_as_that_model_and_self_aligns(trained_tone_model, tone_setup, tmp_path):
    """train.init_from a CTC model file: encoder and head are loaded, the new alignment embedding starts at zero, so
    the all-masked pass gives the CTC model's posteriors exactly; self-aligned training (no teacher) from there
    decodes the training utterances without error after one epoch."""
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import char_error_rate
    from narspeech.train.checkpoint import build_model_from_checkpoint
    from narspeech.train.trainer import Trainer

    ctc, tok, _ = load_asr_model(trained_tone_model)
    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "imputer"
    cfg["model"]["conf"].update(teacher="", block_size=4, full_mask_prob=0.3)
    cfg["train"].update(init_from=str(trained_tone_model), max_epochs=1)
    trainer = Trainer(config_from_dict(cfg), tmp_path / "imp", resume=False)
    trainer._try_resume()
    model = trainer.model.eval()
    assert model.align_embed.weight.abs().sum() == 0
    utts = read_data_dir(tone_setup["train"])
    batch = _batch([200, 150], vocab=tok.vocab_size)
    with torch.no_grad():
        h, lens = model.encode(batch["feats"], batch["feat_lens"])
        expected, expected_lens = ctc.ctc_log_probs(batch["feats"], batch["feat_lens"])
    assert torch.equal(lens, expected_lens)
    torch.testing.assert_close(model.ctc_head(h).log_softmax(-1), expected)

    Trainer(config_from_dict(cfg), tmp_path / "imp", resume=False).fit()
    model, task, _ = build_model_from_checkpoint(load_checkpoint(tmp_path / "imp" / "last.pt"))
    tok = task.tokenizer
    refs = [u.text for u in utts]
    hyps = {t.key: t.text for t in transcribe_utterances(model, tok, utts, batch_size=4, opts=ASRDecodeOptions("refine", iterations=4))}
    cer = char_error_rate(refs, [hyps[u.utt_id] for u in utts])
    assert cer.errors == 0, f"CER {cer}: {hyps}"


def test_an_sc_ctc_models_weights_make_the_all_masked_pass_that_model():
    """The same for the self-conditioned encoder: intermediate head, its norm and the conditioning projection are
    the ones SC-CTC uses, so an Imputer loaded from an SC-CTC state dict (plus ``init_missing``) is that model."""
    from narspeech.asr.ctc import CTCModel, CTCModelConfig

    kw = dict(interctc_layers=[1], interctc_weight=0.5, self_condition=True)
    imp = _tiny_model(**kw).eval()
    ccfg = CTCModelConfig(**kw)
    ccfg.encoder = imp_cfg_encoder(imp)
    ccfg.specaug.num_freq_masks = ccfg.specaug.num_time_masks = 0
    torch.manual_seed(1)
    ctc = CTCModel.from_config(ccfg, vocab_size=12).eval()
    with torch.no_grad():  # a trained CTC model never emits <mask> (the Imputer's decoding excludes it); this random one would
        ctc.ctc_head.bias[MASK_ID] = -1e4
    result = imp.load_state_dict(ctc.state_dict(), strict=False)
    assert result.missing_keys == ["align_embed.weight"] and not result.unexpected_keys
    imp.init_missing(result.missing_keys)
    batch = _batch([120, 90])
    with torch.no_grad():
        h, lens = imp.encode(batch["feats"], batch["feat_lens"])
        expected, _ = ctc.ctc_log_probs(batch["feats"], batch["feat_lens"])
    torch.testing.assert_close(imp.ctc_head(h).log_softmax(-1), expected)
    assert imp.infer(batch["feats"], batch["feat_lens"]) == ctc.infer(batch["feats"], batch["feat_lens"])


def imp_cfg_encoder(model: ImputerModel):
    """The EncoderConfig of ``_tiny_model``."""
    from narspeech.nn.encoder import EncoderConfig

    cfg = EncoderConfig()
    cfg.block, cfg.d_model, cfg.num_heads, cfg.ffn_dim = "conformer", 32, 2, 64
    cfg.num_layers, cfg.subsampling_channels, cfg.dropout = 2, 8, 0.0
    return cfg


def test_mini_self_alignment_stage_continues_the_teacher_aligned_imputer():
    """egs/mini/asr1/conf/imputer_sc_self.yaml: conf/imputer_sc.yaml's model and data without the teacher, started
    from the model the family trains before it (train.init_from, in run.sh's family after imputer_sc)."""
    asr1 = REPO / "egs" / "mini" / "asr1"
    first, second = load_config(asr1 / "conf" / "imputer_sc.yaml"), load_config(asr1 / "conf" / "imputer_sc_self.yaml")
    assert second.model.conf.teacher == "" and first.model.conf.teacher
    first.model.conf.teacher = ""
    assert second.model == first.model and second.data == first.data
    assert second.train.init_from == "exp/imputer_sc/model.pt"
    family = re.search(r'^family_models="([^"]*)"', (asr1 / "run.sh").read_text(), re.M).group(1).split()
    assert family.index("imputer_sc") < family.index("imputer_sc_self")
