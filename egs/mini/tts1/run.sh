#!/usr/bin/env bash
# The offline TTS demo: the mini demo's sentences read by one espeak-ng voice at 22.05 kHz, a small FastSpeech 2 with
# its built-in aligner trained for a few minutes on 2 CPU cores, then: synthesize test sentences (Griffin-Lim) and,
# when egs/mini/asr1 has been run, transcribe the synthesized speech with its ASR model (the round trip).
# Usage: ./run.sh [--stage N] [--stop_stage M] [--num_train N] [--train_args "train.max_minutes=10"]
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
nj=2
num_train=600             # sentences after the test and dev ones of egs/mini/asr1 (same seed, same sets)
num_dev=150               # as egs/mini/asr1, so that test holds the sentences the ASR model never heard
num_test=150
num_synth=20              # test sentences synthesized in stage 5
voice=en-us
config=conf/fastspeech2.yaml
exp=exp/fastspeech2
train_args=""
asr_model=../asr1/exp/ctc/model.pt   # stage 6 judge (skipped when absent)

. ../../../tools/path.sh
. ../../../tools/parse_options.sh

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
    log "stage 0: the mini sentences read by espeak-ng voice $voice at 22.05 kHz (data/{train,dev,test})"
    narspeech prepare mini --data-dir data --audio-dir data/wav --nj "$nj" --voice "$voice" --sample-rate 22050 \
        --num-train "$num_train" --num-dev "$num_dev" --num-test "$num_test"
    narspeech validate data/train data/dev data/test
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    log "stage 1: log-mel, F0 and energy (dump/), phoneme set (data/token_phn)"
    narspeech dump --data data/train data/dev --out-dir dump --kind mel --kind pitch --kind energy
    narspeech tokens --kind phoneme --data data/train --out data/token_phn
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: train $config -> $exp (resumes from $exp/last.pt if present)"
    # shellcheck disable=SC2086
    narspeech train --config "$config" --exp-dir "$exp" $train_args
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    log "stage 3: synthesize $num_synth test sentences -> $exp/synth/*.wav, and one sentence of your own"
    head -n "$num_synth" data/test/text > "$exp/synth_text"
    narspeech synthesize --model "$exp/model.pt" --text-file "$exp/synth_text" --output-dir "$exp/synth"
    narspeech synthesize --model "$exp/model.pt" --text "The red fox reads seven old books." --output "$exp/hello.wav"
    log "wrote $exp/synth/ ($num_synth wavs) and $exp/hello.wav"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    if [ -f "$asr_model" ]; then
        log "stage 4: round trip: transcribe the synthesized speech with $asr_model and score it"
        awk -v d="$exp/synth" '{print $1, d "/" $1 ".wav"}' "$exp/synth_text" > "$exp/synth_wav.scp"
        narspeech transcribe --model "$asr_model" --wav-scp "$exp/synth_wav.scp" --output "$exp/synth_hyp" --quiet
        narspeech score --ref "$exp/synth_text" --hyp "$exp/synth_hyp"
    else
        log "stage 4: skipped: no ASR model at $asr_model (run egs/mini/asr1/run.sh first for the round trip)"
    fi
fi

log "done. model: $exp/model.pt"
