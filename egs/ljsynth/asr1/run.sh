#!/usr/bin/env bash
# Sentence-level synthetic ASR: LJ Speech transcript segments (5-12 words, real open-vocabulary English) spoken by 28
# espeak-ng voices; a 3.6 M-parameter Conformer-CTC trained on 2 CPU cores in <= 20 minutes stays clearly imperfect,
# which leaves the NAR refinements (Mask-CTC, Imputer, SC-CTC) something to fix.
# Usage: ./run.sh [--stage N] [--stop_stage M] [--lj_text PATH] [--targets chars|phones] [--bench true] [--family true]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
lj_text=""                # LJ Speech metadata.csv (or its folder); default $NARSPEECH_SHARED_DATA/lj_text, else
                          # ../shared/data/lj_text from the repo root, else WordNet's examples (apt-get install wordnet-base)
targets=chars             # chars, or phones (espeak-ng IPA per voice; use another --exp, data/ is overwritten)
nj=2                      # parallel jobs for data generation
num_train=6000            # utterances per set (one text segment each)
num_dev=300
num_test=300
seed=0                    # text shuffle and prosody jitter
config=conf/ctc.yaml
exp=exp/ctc
train_args=""             # extra dotted overrides, e.g. "train.max_epochs=10 train.max_minutes=0"
decode_args=""            # e.g. "--method beam --beam-size 10"
test_sets="test"
family=false              # stages 6-7: train every model of the NAR family, benchmark them against the AR baseline
family_models="ctc sc_ctc mask_ctc mask_ctc_lp imputer ar"   # conf/<name>.yaml -> exp/<name>; ctc first (Imputer's teacher)
bench=false               # stage 5: latency/quality benchmark (narspeech bench asr)
bench_models=""           # models to benchmark together, e.g. "exp/ctc/model.pt exp/mask_ctc/model.pt"; default $exp

. ../../../tools/path.sh
. ../../../tools/parse_options.sh
. ../../../tools/family.sh

lj_opt=()
[ -n "$lj_text" ] && lj_opt=(--lj-text "$lj_text")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: speak LJ Speech text segments with espeak-ng (data/{train,dev,test}, audio in data/wav)"
    narspeech prepare ljsynth "${lj_opt[@]}" --data-dir data --audio-dir data/wav --nj "$nj" --seed "$seed" \
        --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test" --targets "$targets"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: validate the data directories"
    narspeech validate data/train data/dev data/test
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: character tokenizer (IPA symbols for --targets phones) and global CMVN statistics"
    narspeech tokens --kind char --data data/train --out data/token_char
    narspeech cmvn --data data/train --out data/cmvn.json --max-utts 1000
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

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ] && [ "$bench" = true ]; then
    log "stage 5: benchmark (1 thread, batch 1 and full batch), each model's default decoding modes"
    # shellcheck disable=SC2086
    narspeech bench asr --model ${bench_models:-$exp/model.pt} --data data/test --out-dir "$exp/bench" --threads 1
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
