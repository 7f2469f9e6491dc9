"""The joint CTC/attention AR baseline: batched CTC prefix scoring, the model's losses, greedy and beam search, and an
overfit run through the real Trainer (tiny dimensions; the overfit test takes ~20 s on one thread)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import yaml

from narspeech.asr.ar import ARConfig, AttentionModel, decoder_io
from narspeech.train.loss import label_smoothing_kl
from narspeech.asr.base import ASRDecodeOptions
from narspeech.nat.ctc import ctc_loss
from narspeech.config import ConfigError, config_from_dict, load_config
from narspeech.nat.ctc_prefix_score import CTCPrefixScorer
from narspeech.text.tokenizer import SOS_EOS_ID

REPO = Path(__file__).resolve().parents[1]
EOS = SOS_EOS_ID


@pytest.fixture
def one_thread():
    """Tiny ops gain nothing from intra-op threads, and on a busy machine thread hand-offs dominate (25x here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- CTC prefix scoring


def _collapse(path) -> tuple[int, ...]:
    out, prev = [], None
    for f in path:
        if f != prev and f != 0:
            out.append(f)
        prev = f
    return tuple(out)


def _state_of(scorer: CTCPrefixScorer, prefixes: list[tuple[int, ...]], utt: list[int]):
    """State of several equally long prefixes, built token by token through ``extend`` (rows = prefixes)."""
    state = scorer.init_state(torch.tensor(utt))
    rows = torch.arange(len(prefixes))
    for i in range(len(prefixes[0])):
        state = scorer.extend(state, rows, torch.tensor([p[i] for p in prefixes]))
    return state


def test_prefix_scores_equal_brute_force_sums_over_alignments():
    """psi(g + c) = sum of P(path) over all T-frame paths whose collapse starts with g + c, and
    psi(g + <eos>) = P(collapse == g) = exp(-ctc_loss(g)); blank scores -inf. T = 5, V = 4 (id 3 = <eos>)."""
    T, V = 5, 4
    lp = torch.randn(1, T, V, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    x = lp[0].double().tolist()
    exact: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = math.exp(sum(x[t][s] for t, s in enumerate(path)))
        exact[_collapse(path)] = exact.get(_collapse(path), 0.0) + p

    def prefix_prob(h: tuple[int, ...]) -> float:
        return sum(p for k, p in exact.items() if k[: len(h)] == h)

    scorer = CTCPrefixScorer(lp, torch.tensor([T]), blank=0, eos=EOS)
    cand = torch.tensor([1, 2, EOS, 0])
    for n in range(4):  # all prefixes over {1, 2} up to length 3, scored together as rows of one state
        prefixes = list(itertools.product([1, 2], repeat=n))
        state = _state_of(scorer, prefixes, [0] * len(prefixes))
        got = scorer.score(state, cand.expand(len(prefixes), -1)).exp()
        for row, g in enumerate(prefixes):
            want = [prefix_prob(g + (1,)), prefix_prob(g + (2,)), exact.get(g, 0.0), 0.0]
            torch.testing.assert_close(got[row], torch.tensor(want, dtype=torch.float64), atol=1e-9, rtol=1e-7)
            if g:
                nll = ctc_loss(lp, torch.tensor([T]), torch.tensor([list(g)]), torch.tensor([len(g)]))
                assert got[row, 2].item() == pytest.approx(math.exp(-nll.item()), rel=1e-5)


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _reference_scores(lp: torch.Tensor, prefix: list[int], cands: list[int], blank: int = 0) -> list[float]:
    """The per-frame loops of Watanabe et al. (2017), Algorithm 2, in Python floats (float64) on one utterance's
    (T, V): the forward variables of the prefix token by token, then each candidate's prefix score."""
    x = lp.double().tolist()
    T, ninf = len(x), -math.inf
    r_n, r_b = [ninf] * T, list(itertools.accumulate(x[t][blank] for t in range(T)))
    last = None

    def phi(t: int, c: int) -> float:  # phi_{t-1}: all of the prefix in frames 0..t-1, ready for c at frame t
        if t == 0:
            return 0.0 if last is None else ninf
        return r_b[t - 1] if c == last else _logaddexp(r_n[t - 1], r_b[t - 1])

    for c in prefix:
        n, b = [ninf] * T, [ninf] * T
        for t in range(T):
            n[t] = _logaddexp(n[t - 1] if t else ninf, phi(t, c)) + x[t][c]
            b[t] = _logaddexp(n[t - 1], b[t - 1]) + x[t][blank] if t else ninf
        r_n, r_b, last = n, b, c
    out = []
    for c in cands:
        if c == EOS:
            out.append(_logaddexp(r_n[T - 1], r_b[T - 1]))
        else:
            acc = ninf
            for t in range(T):
                acc = _logaddexp(acc, phi(t, c) + x[t][c])
            out.append(acc)
    return out


def test_closed_form_recursion_matches_frame_loop_on_long_peaky_padded_batch():
    """The loop-free scorer equals the per-frame recursion on 300 confident frames, batched with a padded shorter
    utterance (whose scores must not see the padding)."""
    g = torch.Generator().manual_seed(1)
    T, V = 300, 12
    lp = (8 * torch.randn(2, T, V, generator=g)).log_softmax(-1)
    lens = torch.tensor([T, 173])
    scorer = CTCPrefixScorer(lp, lens, blank=0, eos=EOS)
    prefixes = []
    for b in range(2):  # the best path's labels: prefixes with a non-negligible probability
        best = [t for t in _collapse(lp[b, : lens[b]].argmax(-1).tolist()) if t != EOS]
        prefixes.append(best[:20])
    state = _state_of(scorer, prefixes, [0, 1])
    cands = [1, 2, prefixes[0][-1], prefixes[1][-1], EOS]
    got = scorer.score(state, torch.tensor([cands, cands]))
    for b in range(2):
        want = _reference_scores(lp[b, : lens[b]], prefixes[b], cands)
        torch.testing.assert_close(got[b], torch.tensor(want, dtype=torch.float64), atol=1e-8, rtol=1e-10)
    nll = ctc_loss(lp[1:, :173], torch.tensor([173]), torch.tensor([prefixes[1]]), torch.tensor([20]))
    assert got[1, -1].item() == pytest.approx(-nll.item(), rel=1e-5)


# ---------------------------------------------------------------- the model


def _tiny_config(ctc_weight: float = 0.3) -> ARConfig:
    cfg = ARConfig(ctc_weight=ctc_weight)
    e = cfg.encoder
    e.block, e.d_model, e.num_heads, e.ffn_dim, e.num_layers, e.subsampling_channels, e.dropout = "conformer", 32, 2, 64, 2, 8, 0.0
    cfg.decoder.num_heads, cfg.decoder.ffn_dim, cfg.decoder.num_layers, cfg.decoder.dropout = 2, 64, 2, 0.0
    cfg.specaug.num_freq_masks = cfg.specaug.num_time_masks = 0
    return cfg


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lens, tl = torch.tensor([160, 111, 64, 137]), torch.tensor([7, 4, 3, 6])
    tokens = torch.randint(4, 12, (4, 7), generator=g)
    tokens[torch.arange(7).unsqueeze(0) >= tl.unsqueeze(1)] = -1
    feats = torch.randn(4, 160, 80, generator=g)
    feats[torch.arange(160).unsqueeze(0) >= lens.unsqueeze(1)] = 0.0
    return {"feats": feats, "feat_lens": lens, "tokens": tokens, "token_lens": tl}


@pytest.fixture(scope="module")
def half_trained() -> AttentionModel:
    """A tiny model trained 70 steps on 4 utterances: outputs depend on the input, have varied lengths and end with
    <eos>, and greedy and beam search disagree (a random decoder ignores the input and never stops)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AttentionModel.from_config(_tiny_config(), 12)
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    batch = _batch()
    for _ in range(70):
        terms = model(batch)
        loss = sum(t.weight * t.value for t in terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(n)
    return model.eval()


def _encode(model: AttentionModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return model.encode(batch["feats"], batch["feat_lens"])


def test_forward_backward_infer(one_thread):
    torch.manual_seed(0)
    model = AttentionModel.from_config(_tiny_config(), 12)
    batch = _batch()
    terms = model(batch)
    assert set(terms) == {"ctc", "att"} and terms["ctc"].weight == 0.3 and terms["att"].weight == 0.7
    assert all(torch.isfinite(t.value) for t in terms.values())
    sum(t.weight * t.value for t in terms.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    assert len(model(batch)) == 2  # validation loss in eval mode
    for opts in (ASRDecodeOptions("greedy"), ASRDecodeOptions("beam", beam_size=3), ASRDecodeOptions("beam", beam_size=3, ctc_weight=0.0)):
        out = model.infer(batch["feats"], batch["feat_lens"], opts)
        assert len(out) == 4 and all(isinstance(t, int) and t not in (0, 2) for y in out for t in y)


def test_self_conditioned_encoder_option(one_thread):
    """interctc_layers / self_condition as in conf ``ctc``: the CTC share lambda splits into (1 - w) * CTC +
    w * InterCTC (shared head after block 1 and the encoder's norm), the projected posteriors change the encoder
    output the decoder and the CTC prefix scores see, and both searches run on it."""
    cfg = _tiny_config()
    cfg.interctc_layers, cfg.interctc_weight, cfg.self_condition = [1], 0.4, True
    torch.manual_seed(0)
    model = AttentionModel.from_config(cfg, 12)
    batch = _batch()
    terms = model(batch)
    assert {k: t.weight for k, t in terms.items()} == pytest.approx({"ctc": 0.18, "interctc": 0.12, "att": 0.7})
    sum(t.weight * t.value for t in terms.values()).backward()
    assert model.cond_proj.weight.grad.abs().sum() > 0
    model.eval()
    x, lens = batch["feats"], batch["feat_lens"]
    with torch.no_grad():  # the intermediate loss by hand
        h, h_lens = model.encoder.subsampling(model.cmvn(x), lens)
        pad = torch.arange(h.size(1)).unsqueeze(0) >= h_lens.unsqueeze(1)
        h = model.encoder.layers[0](model.encoder.pos_enc(h), pad)
        inter = ctc_loss(model.ctc_head(model.encoder.norm(h)).log_softmax(-1), h_lens, batch["tokens"], batch["token_lens"])
        torch.testing.assert_close(model(batch)["interctc"].value, inter)
    h_sc, _ = _encode(model, batch)
    with torch.no_grad():
        model.cond_proj.weight.zero_()
        model.cond_proj.bias.zero_()
    h_zero, _ = _encode(model, batch)
    assert not torch.allclose(h_sc, h_zero, atol=1e-4)
    torch.manual_seed(0)
    plain = AttentionModel.from_config(_tiny_config(), 12).eval()  # same seed: the same weights but the projection
    torch.testing.assert_close(h_zero, _encode(plain, batch)[0])
    for opts in (ASRDecodeOptions("greedy"), ASRDecodeOptions("beam", beam_size=3)):
        assert len(model.infer(x, lens, opts)) == 4
    with pytest.raises(ValueError, match="self_condition needs"):
        AttentionModel.from_config(ARConfig(self_condition=True), 12)


def test_decoder_io_and_label_smoothed_loss():
    tokens, lens = torch.tensor([[5, 6, 7], [8, -1, -1]]), torch.tensor([3, 1])
    ys_in, ys_out = decoder_io(tokens, lens)
    assert ys_in.tolist() == [[EOS, 5, 6, 7], [EOS, 8, 0, 0]]
    assert ys_out.tolist() == [[5, 6, 7, EOS], [8, EOS, -1, -1]]
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(0))
    # no smoothing: summed cross-entropy per utterance, averaged over utterances
    ce = torch.nn.functional.cross_entropy(logits.view(-1, 9), ys_out.view(-1), ignore_index=-1, reduction="sum") / 2
    torch.testing.assert_close(label_smoothing_kl(logits, ys_out, 0.0) / 2, ce)
    # smoothing: KL(q || p) with 0.9 on the target and 0.1 / 8 elsewhere
    q = torch.full((2, 4, 9), 0.1 / 8)
    q.scatter_(-1, ys_out.clamp_min(0).unsqueeze(-1), 0.9)
    kl = torch.nn.functional.kl_div(logits.log_softmax(-1), q, reduction="none").sum(-1)
    torch.testing.assert_close(label_smoothing_kl(logits, ys_out, 0.1) / 2, kl[ys_out >= 0].sum() / 2)
    # 0 at the smoothed optimum
    assert label_smoothing_kl(q.log(), ys_out, 0.1).abs().item() < 1e-5


def test_greedy_equals_beam_of_one(half_trained, one_thread):
    torch.manual_seed(3)
    untrained = AttentionModel.from_config(_tiny_config(), 12).eval()
    b = _batch()
    outputs = []
    for model in (half_trained, untrained):
        greedy = model.infer(b["feats"], b["feat_lens"], ASRDecodeOptions("greedy"))
        beam = model.infer(b["feats"], b["feat_lens"], ASRDecodeOptions("beam", beam_size=1, ctc_weight=0.0))
        assert greedy == beam
        outputs.append(greedy)
    assert len({tuple(y) for y in outputs[0]}) > 1  # compared on outputs that differ between utterances


def test_batched_beam_equals_per_utterance_beam(half_trained, one_thread):
    """Utterances of different lengths decoded together give exactly what each gives alone (n-best and scores)."""
    b = _batch()
    h, lens = _encode(half_trained, b)
    for w in (0.0, 0.5):
        opts = ASRDecodeOptions("beam", beam_size=4, ctc_weight=w)
        batched = half_trained.beam_search(h, lens, opts)
        assert len({hyps[0].tokens for hyps in batched}) > 1  # the utterances really differ
        for i in range(4):
            alone = half_trained.beam_search(h[i : i + 1, : lens[i]], lens[i : i + 1], opts)[0]
            assert [x.tokens for x in alone] == [x.tokens for x in batched[i]]
            torch.testing.assert_close(torch.tensor([x.score for x in alone]), torch.tensor([x.score for x in batched[i]]), atol=1e-4, rtol=1e-5)


def test_beam_scores_are_teacher_forced_log_probs(half_trained, one_thread):
    """Every finished hypothesis' attention score is log p(y + <eos> | x) under forward(); its CTC score is
    -ctc_loss(y); the search score is their weighted sum (w = 0: the attention log-probability itself)."""
    b = _batch()
    h, lens = _encode(half_trained, b)
    for w in (0.0, 0.5):
        nbest = half_trained.beam_search(h, lens, ASRDecodeOptions("beam", beam_size=4, ctc_weight=w))
        for rank in range(2):
            hyps = [list(nb[rank].tokens) for nb in nbest]
            with torch.inference_mode():
                tf = half_trained.sequence_log_probs(h, lens, hyps)
                ctc_lp = half_trained.ctc_head(h).log_softmax(-1)
            for i, nb in enumerate(nbest):
                hyp = nb[rank]
                assert hyp.att == pytest.approx(tf[i].item(), abs=1e-4)
                if w == 0:
                    assert hyp.score == pytest.approx(tf[i].item(), abs=1e-4) and hyp.ctc == 0.0
                else:
                    y = torch.tensor([hyps[i]]) if hyps[i] else torch.zeros(1, 1, dtype=torch.long)
                    nll = ctc_loss(ctc_lp[i : i + 1, : lens[i]], lens[i : i + 1], y, torch.tensor([len(hyps[i])]))
                    assert hyp.ctc == pytest.approx(-nll.item(), abs=1e-3)
                    assert hyp.score == pytest.approx((1 - w) * hyp.att + w * hyp.ctc, abs=1e-4)
            assert all(nb[0].score >= nb[rank].score for nb in nbest)


def test_beam_never_scores_worse_than_greedy(half_trained, one_thread):
    """Not a theorem of beam search (the greedy path can fall off the beam), but on these inputs it must hold, and
    beam search does find strictly better hypotheses than greedy here; a bookkeeping bug breaks either."""
    b = _batch()
    h, lens = _encode(half_trained, b)
    greedy = half_trained.greedy_search(h, lens)
    with torch.inference_mode():
        greedy_lp = half_trained.sequence_log_probs(h, lens, greedy)
    better = 0
    for k in (2, 4, 8):
        nbest = half_trained.beam_search(h, lens, ASRDecodeOptions("beam", beam_size=k, ctc_weight=0.0))
        for i in range(4):
            assert nbest[i][0].score >= greedy_lp[i].item() - 1e-5
            better += nbest[i][0].score > greedy_lp[i].item() + 1e-3
    assert better > 0


def test_length_limit_and_length_bonus(half_trained, one_thread):
    """A large length bonus makes every output run to the limit ``max_len_ratio * frames`` (which also checks that
    the early stop accounts for what live hypotheses can still gain); greedy respects the limit too."""
    b = _batch()
    h, lens = _encode(half_trained, b)
    limit = (lens * 0.25).long().tolist()
    for w in (0.0, 0.3):
        out = half_trained.beam_search(h, lens, ASRDecodeOptions("beam", beam_size=3, ctc_weight=w, length_bonus=50.0, max_len_ratio=0.25))
        assert [len(nb[0].tokens) for nb in out] == limit
    assert all(len(y) <= n for y, n in zip(half_trained.greedy_search(h, lens, 0.1), (lens * 0.1).long().tolist()))


def test_decoding_option_and_config_errors(one_thread):
    torch.manual_seed(0)
    model = AttentionModel.from_config(_tiny_config(), 12).eval()
    f, n = torch.randn(1, 40, 80), torch.tensor([40])
    with pytest.raises(ValueError, match="greedy, beam"):
        model.infer(f, n, ASRDecodeOptions("refine"))
    with pytest.raises(ValueError, match="beam_size"):
        model.infer(f, n, ASRDecodeOptions("beam", beam_size=0))
    with pytest.raises(ValueError, match="ctc_weight"):
        model.infer(f, n, ASRDecodeOptions("beam", ctc_weight=1.5))
    with pytest.raises(ValueError, match="max_len_ratio"):
        model.infer(f, n, ASRDecodeOptions("greedy", max_len_ratio=0.0))
    for bad, match in ((dict(ctc_weight=1.0), "ctc_weight"), (dict(lsm_weight=-0.1), "lsm_weight")):
        cfg = _tiny_config()
        cfg.ctc_weight, cfg.lsm_weight = bad.get("ctc_weight", 0.3), bad.get("lsm_weight", 0.1)
        with pytest.raises(ValueError, match=match):
            AttentionModel.from_config(cfg, 12)
    cfg = _tiny_config()
    cfg.decoder.num_heads = 5
    with pytest.raises(ValueError, match="decoder.num_heads"):
        AttentionModel.from_config(cfg, 12)
    with pytest.raises(ConfigError, match="model.conf.decoder"):
        config_from_dict({"model": {"name": "ar", "conf": {"decoder": {"layers": 3}}}})


def test_recipe_configs_extend_their_ctc_configs():
    """egs/*/asr1/conf/ar.yaml: the CTC recipe's encoder, SpecAugment, data, optimizer and schedule, plus a decoder."""
    for recipe, base in (("mini", "ctc.yaml"), ("fsdd", "conformer_ctc.yaml")):
        ar_cfg, ctc_cfg = load_config(REPO / f"egs/{recipe}/asr1/conf/ar.yaml"), load_config(REPO / f"egs/{recipe}/asr1/conf/{base}")
        assert ar_cfg.model.name == "ar" and isinstance(ar_cfg.model.conf, ARConfig)
        assert ar_cfg.model.conf.encoder == ctc_cfg.model.conf.encoder and ar_cfg.model.conf.specaug == ctc_cfg.model.conf.specaug
        assert (ar_cfg.data, ar_cfg.optim, ar_cfg.train) == (ctc_cfg.data, ctc_cfg.optim, ctc_cfg.train)
        model = AttentionModel.from_config(ar_cfg.model.conf, 40)
        assert len(model.decoder.layers) == ar_cfg.model.conf.decoder.num_layers


# ---------------------------------------------------------------- learning, through the real Trainer


def test_ar_overfits_to_zero_cer(tone_setup, tmp_path, one_thread):
    """A tiny encoder-decoder learns the generated utterances: joint CTC/attention beam search transcribes them all
    exactly and the attention loss drops more than 10x."""
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import char_error_rate
    from narspeech.train.checkpoint import load_checkpoint
    from narspeech.asr.task import load_asr_model
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "ar"
    cfg["model"]["conf"]["decoder"] = {"num_heads": 2, "ffn_dim": 96, "num_layers": 1, "dropout": 0.0}
    out = Trainer(config_from_dict(cfg), tmp_path / "ar", resume=False).fit()
    model, tok, _ = load_asr_model(out)
    assert isinstance(model, AttentionModel)
    utts = read_data_dir(tone_setup["train"])
    opts = ASRDecodeOptions("beam", beam_size=4, ctc_weight=0.3)
    hyps = {t.key: t.text for t in transcribe_utterances(model, tok, utts, batch_size=4, opts=opts)}
    cer = char_error_rate([u.text for u in utts], [hyps[u.utt_id] for u in utts])
    assert cer.errors == 0, f"CER {cer}: {hyps}"
    hist = load_checkpoint(tmp_path / "ar" / "last.pt")["history"]
    assert hist[-1]["train_att"] < 0.1 * hist[0]["train_att"]
