#!/usr/bin/env bash
# LibriSpeech ASR (OpenSLR 12): train-clean-100 (100 h) or the full 960 h, any model of the family (conf/*.yaml),
# decoded on dev/test clean/other and benchmarked. See README.md for disk/time needs.
# Usage: ./run.sh [--stage N] [--stop_stage M] [--train_set train_clean_100|train_960] [--config conf/X.yaml] ...
set -euo pipefail
cd "$(dirname "$0")"

stage=1
stop_stage=100
librispeech_dir=downloads  # folder holding LibriSpeech/<subset>/ (an existing copy, or where stage 1 downloads to)
mirror=https://www.openslr.org/resources/12  # or https://openslr.elda.org/resources/12 (EU), openslr.trmal.net (US)
train_set=train_clean_100  # train_clean_100 | train_960 (= train-clean-100 + train-clean-360 + train-other-500)
valid_sets="dev_clean dev_other"
test_sets="dev_clean dev_other test_clean test_other"
nj=4                      # processes reading flac headers in stage 2
keep_case=false           # true: keep the corpus's upper-case transcripts (default: lower case, as every corpus here)
nbpe=""                   # SentencePiece unigram units; default 300 for train_clean_100, 5000 for train_960
cmvn_utts=2000            # utterances sampled for the global CMVN statistics
config=conf/ctc.yaml
exp=""                    # default exp/<config name>_<train_set>
ngpu=1                    # >1: data-parallel training under torchrun on this many GPUs
train_args=""             # extra dotted overrides, e.g. "train.max_epochs=10 optim.lr=1e-3"
decode_args=""            # e.g. "--method beam --beam-size 10", "--method refine --iterations 10"
decode_dir=""             # default <exp>/decode
bench_set=test_clean
bench_methods=""          # e.g. "greedy,beam10"; default: the model family's own modes (narspeech bench asr)
bench_threads=1
bench_max_utts=200        # batch-1 CPU timing of the whole test set would take hours

. ../../../tools/path.sh
. ../../../tools/parse_options.sh

case "$train_set" in
    train_clean_100) train_parts="train-clean-100"; nbpe=${nbpe:-300} ;;
    train_960) train_parts="train-clean-100 train-clean-360 train-other-500"; nbpe=${nbpe:-5000} ;;
    *) echo "$0: --train_set must be train_clean_100 or train_960, got '$train_set'" >&2; exit 1 ;;
esac
exp=${exp:-exp/$(basename "$config" .yaml)_$train_set}
decode_dir=${decode_dir:-$exp/decode}
token_dir=data/token_${train_set}_bpe$nbpe
cmvn=data/cmvn_$train_set.json
# corpus subsets (dashes) behind every data dir used, without repeats
subsets=$(for s in $train_parts $valid_sets $test_sets; do echo "${s//_/-}"; done | awk '!seen[$0]++' | xargs)
eval_dirs=$(for s in $valid_sets $test_sets; do echo "data/$s"; done | awk '!seen[$0]++' | xargs)
combine_opt=()
[ "$train_set" = train_960 ] && combine_opt=(--combine train_960)
case_opt=()
[ "$keep_case" = true ] && case_opt=(--keep-case)

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
    missing=""
    for s in $subsets; do
        [ -d "$librispeech_dir/LibriSpeech/$s" ] || [ -d "$librispeech_dir/$s" ] || missing="$missing $s"
    done
    if [ -z "$missing" ]; then
        log "stage 1: all subsets present in $librispeech_dir; nothing to download"
    else
        log "stage 1: download and unpack$missing from $mirror into $librispeech_dir (resumable, md5-checked)"
        # shellcheck disable=SC2086
        narspeech prepare librispeech --librispeech-dir "$librispeech_dir" --subsets $missing \
            --download-only --mirror "$mirror"
    fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    log "stage 2: Kaldi data dirs for $subsets${combine_opt[*]:+ (+ train_960)} under data/"
    # shellcheck disable=SC2086
    narspeech prepare librispeech --librispeech-dir "$librispeech_dir" --data-dir data --subsets $subsets \
        "${combine_opt[@]}" "${case_opt[@]}" --nj "$nj"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    log "stage 3: validate the data directories"
    # shellcheck disable=SC2086
    narspeech validate "data/$train_set" $eval_dirs
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    log "stage 4: SentencePiece unigram tokenizer ($nbpe units) -> $token_dir, global CMVN -> $cmvn"
    narspeech tokens --kind bpe --model-type unigram --vocab-size "$nbpe" --data "data/$train_set" --out "$token_dir"
    narspeech cmvn --data "data/$train_set" --out "$cmvn" --max-utts "$cmvn_utts"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
    log "stage 5: train $config on $train_set -> $exp (resumes from $exp/last.pt if present)"
    valid_list=$(echo $valid_sets | awk '{for (i = 1; i <= NF; i++) printf "%sdata/%s", (i > 1 ? "," : ""), $i}')
    launcher=(narspeech)
    [ "$ngpu" -gt 1 ] && launcher=(torchrun --nproc_per_node "$ngpu" -m narspeech.cli)
    # shellcheck disable=SC2086
    "${launcher[@]}" train --config "$config" --exp-dir "$exp" "data.train=[data/$train_set]" \
        "data.valid=[$valid_list]" "data.tokenizer=$token_dir" "data.cmvn=$cmvn" $train_args
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
    log "stage 6: decode and score $eval_dirs -> $decode_dir"
    # shellcheck disable=SC2086
    narspeech decode --model "$exp/model.pt" --data $eval_dirs --out-dir "$decode_dir" $decode_args
    for d in $eval_dirs; do cat "$decode_dir/$(basename "$d")/score.txt"; done
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
    log "stage 7: benchmark on data/$bench_set (first $bench_max_utts utts, $bench_threads CPU thread(s), GPU if any)"
    narspeech bench asr --model "$exp/model.pt" --data "data/$bench_set" --out-dir "$exp/bench" \
        ${bench_methods:+--methods "$bench_methods"} --threads "$bench_threads" --max-utts "$bench_max_utts"
fi

log "done. model: $exp/model.pt"
