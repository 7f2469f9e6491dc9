#!/usr/bin/env bash
# The offline demo: generate a multi-voice English corpus with espeak-ng, train a small Conformer-CTC on 2 CPU
# cores, decode and score the test set, then transcribe a file with the CLI. Usage: ./run.sh [--stage N] [--stop_stage M]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2                      # parallel jobs for data generation
num_train=1500            # generated utterances per split
num_dev=150
num_test=150
num_eval=0                # > 0: also data/eval, a larger held-out set after train in the sentence stream (benchmarks)
config=conf/ctc.yaml
exp=exp/ctc
train_args=""             # extra dotted overrides, e.g. "train.max_epochs=20 optim.lr=1e-3"
decode_args=""            # e.g. "--method beam --beam-size 10"
test_sets="test"
bench=false               # stage 6: latency/quality benchmark (narspeech bench asr)
family=false              # stages 7-8: train every model of the NAR family and benchmark them against the AR baseline
family_models="ctc sc_ctc mask_ctc mask_ctc_sc mask_ctc_lp imputer_sc imputer_sc_self ar"   # conf/<name>.yaml -> exp/<name>; ctc first (the Imputer's teacher), imputer_sc before imputer_sc_self (its start)
bench_utts=0              # stage 8: benchmark the first N test utterances (0 = all)

. ../../../tools/path.sh
. ../../../tools/parse_options.sh
. ../../../tools/family.sh

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: generate the corpus with espeak-ng (data/{train,dev,test}, audio in data/wav)"
    narspeech prepare mini --data-dir data --audio-dir data/wav --nj "$nj" \
        --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test" --num-eval "$num_eval"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: validate the data directories"
    sets="data/train data/dev data/test"
    if [ "$num_eval" -gt 0 ]; then sets="$sets data/eval"; fi
    # shellcheck disable=SC2086
    narspeech validate $sets
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: tokenizers (200 BPE units for the configs, characters for conf/ctc_char.yaml) and global CMVN"
    narspeech tokens --kind bpe --vocab-size 200 --data data/train --out data/token_bpe200
    narspeech tokens --kind char --data data/train --out data/token_char
    narspeech cmvn --data data/train --out data/cmvn.json --max-utts 500
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    log "stage 3: train $config -> $exp (resumes from $exp/last.pt if present)"
    # shellcheck disable=SC2086
    narspeech train --config "$config" --exp-dir "$exp" $train_args
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    log "stage 4: decode and score $test_sets"
    for s in $test_sets; do
        # shellcheck disable=SC2086
        narspeech decode --model "$exp/model.pt" --data "data/$s" --out-dir "$exp/decode" $decode_args
    done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
    log "stage 5: transcribe audio files with the CLI"
    files=$(awk 'NR<=3 {print $2}' data/test/wav.scp)
    # shellcheck disable=SC2086
    narspeech transcribe --model "$exp/model.pt" $files
    log "references:"; head -3 data/test/text >&2
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ] && [ "$bench" = true ]; then
    log "stage 6: benchmark (1 thread, batch 1 and full batch)"
    narspeech bench asr --model "$exp/model.pt" --data data/test --out-dir "$exp/bench" --methods greedy,beam --threads 1
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ] && [ "$family" = true ]; then
    log "stage 7: train and decode the family: $family_models"
    train_family "$family_models" "$test_sets" "$train_args"
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ] && [ "$family" = true ]; then
    log "stage 8: one benchmark of the whole family (1 thread; AR and NAR on the same inputs in one process)"
    bench_family "$family_models" data/test exp/bench_family --threads 1 --max-utts "$bench_utts"
fi

log "done. model: $exp/model.pt"
