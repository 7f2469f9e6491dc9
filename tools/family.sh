#!/usr/bin/env bash
# Sourced by recipes (after tools/path.sh): train the NAR family and benchmark it against the AR baseline in one run.
# Models are config names: conf/<name>.yaml -> exp/<name>. List the CTC teacher before the Imputer that reads it.

# train_family "MODELS" "TEST_SETS" "TRAIN_ARGS": train each model (a finished run only re-exports its model.pt, an
# interrupted one resumes), then decode each test set with the model's default method (greedy).
train_family() {
    local m s
    for m in $1; do
        log "train conf/$m.yaml -> exp/$m, decode $2"
        # shellcheck disable=SC2086
        narspeech train --config "conf/$m.yaml" --exp-dir "exp/$m" $3
        for s in $2; do
            narspeech decode --model "exp/$m/model.pt" --data "data/$s" --out-dir "exp/$m/decode"
        done
    done
}

# bench_family "MODELS" TEST_DIR OUT_DIR [bench args...]: one `narspeech bench asr` over every model, each with its
# family's default decoding modes (AR and NAR timed on the same inputs in one process).
bench_family() {
    local m models=() names=$1 data=$2 out=$3
    shift 3
    for m in $names; do models+=("exp/$m/model.pt"); done
    narspeech bench asr --model "${models[@]}" --data "$data" --out-dir "$out" "$@"
}
