#!/usr/bin/env bash
# The classic smoke test: Kaldi's yes/no corpus (OpenSLR 1), one speaker saying 8 Hebrew words per file.
# Usage: ./run.sh [--stage N] [--stop_stage M] [--yesno_dir DIR]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
yesno_dir=""              # folder with waves_yesno/*.wav; default ../shared/data/yesno from the repo root
                          # (or $NARSPEECH_SHARED_DATA/yesno); downloaded from OpenSLR when absent
config=conf/ctc.yaml
exp=exp/ctc
train_args=""

. ../../../tools/path.sh
. ../../../tools/parse_options.sh

yesno_opt=()
[ -n "$yesno_dir" ] && yesno_opt=(--yesno-dir "$yesno_dir")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: prepare data/{train,dev,test} (16 kHz copies in data/wav)"
    narspeech prepare yesno "${yesno_opt[@]}" --data-dir data --audio-dir data/wav --download-dir downloads
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: validate"
    narspeech validate data/train data/dev data/test
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: SentencePiece unigram tokenizer (pieces ▁yes, ▁no) and CMVN"
    narspeech tokens --kind bpe --model-type unigram --vocab-size 9 --data data/train --out data/token_bpe
    narspeech cmvn --data data/train --out data/cmvn.json
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    log "stage 3: train $config -> $exp"
    # shellcheck disable=SC2086
    narspeech train --config "$config" --exp-dir "$exp" $train_args
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    log "stage 4: decode and score data/test"
    narspeech decode --model "$exp/model.pt" --data data/test --out-dir "$exp/decode"
fi

log "done. model: $exp/model.pt"
