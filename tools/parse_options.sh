#!/usr/bin/env bash
# Sourced by recipes after their defaults: turns "--stop_stage 3 --nj=4" into shell variables, ESPnet/Kaldi style.
# Only variables that already have a default can be set, so a typo is an error rather than a silent no-op.
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "usage: $0 [--<option> <value>] ...  (options: the variables at the top of $0)"
            exit 0 ;;
        --*=*) name=${1%%=*}; value=${1#*=}; shift ;;
        --*) name=$1; [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }; value=$2; shift 2 ;;
        *) echo "$0: unexpected argument '$1' (options are --name value)" >&2; exit 1 ;;
    esac
    name=${name#--}; name=${name//-/_}
    if [ -z "${!name+x}" ]; then
        echo "$0: unknown option --$name" >&2; exit 1
    fi
    printf -v "$name" '%s' "$value"
done
