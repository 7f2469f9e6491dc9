#!/usr/bin/env bash
# Connected-digit ASR on real voices: utterances of 2-7 Free Spoken Digit Dataset takes of one speaker, 16 kHz.
# Split by take (0-4 test, 5-9 dev, rest train). Usage: ./run.sh [--stage N] [--stop_stage M] [--fsdd_dir DIR] [--family true]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
fsdd_dir=""               # FSDD folder (recordings/{digit}_{speaker}_{take}.wav); default ../shared/data/fsdd
                          # from the repo root, or $NARSPEECH_SHARED_DATA/fsdd; cloned from GitHub when absent
num_train=3000
num_dev=300
num_test=300
extra_sets=""             # extra FSDD-layout folders to prepare as whole test sets: "name=/path name2=/path2"
config=conf/conformer_ctc.yaml
exp=exp/conformer_ctc
train_args=""             # extra dotted overrides, e.g. "train.max_minutes=40"
decode_args=""
test_sets="test"          # data dirs under data/ to decode (extra sets are added automatically)
family=false              # stages 6-7: train every model of the NAR family, benchmark them against the AR baseline
family_models="conformer_ctc sc_ctc mask_ctc mask_ctc_sc mask_ctc_lp imputer ar"   # conf/<name>.yaml -> exp/<name>; conformer_ctc first (Imputer's teacher)
bench_threads=1

. ../../../tools/path.sh
. ../../../tools/parse_options.sh
. ../../../tools/family.sh

fsdd_opt=()
[ -n "$fsdd_dir" ] && fsdd_opt=(--fsdd-dir "$fsdd_dir")
for kv in $extra_sets; do test_sets="$test_sets ${kv%%=*}"; done

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: build connected-digit utterances (data/{train,dev,test}, audio in data/wav)"
    narspeech prepare fsdd "${fsdd_opt[@]}" --data-dir data --audio-dir data/wav --download-dir downloads \
        --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test"
    for kv in $extra_sets; do
        narspeech prepare fsdd --fsdd-dir "${kv#*=}" --data-dir data --audio-dir data/wav --single-set "${kv%%=*}" --no-download
    done
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: validate the data directories"
    # shellcheck disable=SC2086
    narspeech validate data/train data/dev $(for s in $test_sets; do echo "data/$s"; done)
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: SentencePiece unigram tokenizer (each digit word becomes one piece) and global CMVN"
    narspeech tokens --kind bpe --model-type unigram --vocab-size 30 --data data/train --out data/token_bpe
    narspeech cmvn --data data/train --out data/cmvn.json --max-utts 1000
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
