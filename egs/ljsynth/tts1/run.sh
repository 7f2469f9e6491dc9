#!/usr/bin/env bash
# NAR TTS on one espeak-ng voice reading LJ Speech transcript segments (the generator of egs/ljsynth/asr1 with a
# single voice at 22.05 kHz): FastSpeech 2 with its built-in aligner, trained on 2 CPU cores, vocoded by Griffin-Lim.
# Usage: ./run.sh [--stage N] [--stop_stage M] [--lj_text PATH] [--num_train N] [--config conf/fastspeech2.yaml]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
lj_text=""                # LJ Speech metadata.csv (or its folder); default $NARSPEECH_SHARED_DATA/lj_text, else
                          # ../shared/data/lj_text from the repo root, else WordNet's examples
voice=en-us               # the one espeak-ng voice of the corpus
nj=2                      # parallel jobs for data generation and feature extraction
num_train=2000            # utterances per set (one 5-12 word text segment each)
num_dev=50
num_test=100
seed=0
config=conf/fastspeech2.yaml
exp=exp/fastspeech2
train_args=""             # extra dotted overrides, e.g. "train.max_minutes=5"
synth_args=""             # e.g. "--speed 1.2 --pitch-shift 2"
test_sets="test"

. ../../../tools/path.sh
. ../../../tools/parse_options.sh

lj_opt=()
[ -n "$lj_text" ] && lj_opt=(--lj-text "$lj_text")

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: speak LJ Speech text segments with espeak-ng voice $voice at 22.05 kHz (data/{train,dev,test})"
    narspeech prepare ljsynth "${lj_opt[@]}" --data-dir data --audio-dir data/wav --nj "$nj" --seed "$seed" \
        --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test" --voice "$voice" --sample-rate 22050
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: validate the data directories"
    narspeech validate data/train data/dev data/test
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: hifi-gan log-mel, Praat F0 and energy on one frame grid -> dump/<set>/{feats,pitch,energy}.scp"
    narspeech dump --data data/train data/dev data/test --out-dir dump --kind mel --kind pitch --kind energy
    narspeech validate dump/train dump/dev dump/test
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    log "stage 3: phoneme set of the training text (espeak-ng IPA via phonemizer)"
    narspeech tokens --kind phoneme --data data/train --out data/token_phn
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    log "stage 4: train $config -> $exp (resumes from $exp/last.pt if present)"
    # shellcheck disable=SC2086
    narspeech train --config "$config" --exp-dir "$exp" $train_args
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
    log "stage 5: synthesize $test_sets -> $exp/synth/<set>/<utt>.wav (Griffin-Lim)"
    for s in $test_sets; do
        # shellcheck disable=SC2086
        narspeech synthesize --model "$exp/model.pt" --text-file "data/$s/text" --output-dir "$exp/synth/$s" $synth_args
    done
fi

log "done. model: $exp/model.pt"
