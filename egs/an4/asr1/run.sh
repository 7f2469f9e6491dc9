#!/usr/bin/env bash
# Real voices: CMU AN4 (spelled letters, digits, numbers, commands), 74 training speakers, 10 unseen test speakers.
# The dev set is whole training speakers. Usage: ./run.sh [--stage N] [--stop_stage M] [--an4_dir DIR] [--family true]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
an4_dir=""                # AN4 folder (etc/, wav/); default ../shared/data/an4 from the repo root, or
                          # $NARSPEECH_SHARED_DATA/an4; downloaded from CMU (an4_sphere.tar.gz) when absent
num_dev=100               # dev utterances, rounded up to whole training speakers
nbpe=30                   # SentencePiece units (ESPnet's AN4 recipe uses 30)
config=conf/ctc.yaml
exp=exp/ctc
train_args=""             # extra dotted overrides, e.g. "train.max_minutes=60"
decode_args=""
test_sets="dev test"
family=false              # stages 6-7: train every model of the NAR family, benchmark them against the AR baseline
family_models="ctc sc_ctc mask_ctc mask_ctc_sc imputer ar"   # conf/<name>.yaml -> exp/<name>; ctc first (the Imputer's teacher)
bench_threads=1

. ../../../tools/path.sh
. ../../../tools/parse_options.sh
. ../../../tools/family.sh

an4_opt=()
[ -n "$an4_dir" ] && an4_opt=(--an4-dir "$an4_dir")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: Kaldi data dirs data/{train,dev,test} (16 kHz wavs used in place; .sph converted into data/wav)"
    narspeech prepare an4 "${an4_opt[@]}" --data-dir data --audio-dir data/wav --download-dir downloads \
        --num-dev "$num_dev"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: validate the data directories"
    narspeech validate data/train data/dev data/test
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: SentencePiece unigram tokenizer ($nbpe units) and global CMVN"
    narspeech tokens --kind bpe --model-type unigram --vocab-size "$nbpe" --data data/train --out data/token_bpe
    narspeech cmvn --data data/train --out data/cmvn.json
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    log "stage 3: train $config -> $exp (resumes from $exp/last.pt if present)"
    # shellcheck disable=SC2086
    narspeech train --config "$config" --exp-dir "$exp" $train_args
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    log "stage 4: decode and score: $test_sets"
    # shellcheck disable=SC2086
    narspeech decode --model "$exp/model.pt" --data $(for s in $test_sets; do echo "data/$s"; done) \
        --out-dir "$exp/decode" $decode_args
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
    log "stage 5: benchmark on data/test ($bench_threads thread(s), batch 1 and full batch)"
    narspeech bench asr --model "$exp/model.pt" --data data/test --out-dir "$exp/bench" \
        --methods greedy,beam --threads "$bench_threads"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ] && [ "$family" = true ]; then
    log "stage 6: train and decode the family: $family_models"
    train_family "$family_models" "$test_sets" "$train_args"
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ] && [ "$family" = true ]; then
    log "stage 7: one benchmark of the whole family (1 thread; AR and NAR on the same inputs in one process)"
    bench_family "$family_models" data/test exp/bench_family --threads 1
fi

log "done. model: $exp/model.pt"
