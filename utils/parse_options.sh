#!/usr/bin/env bash
# Kaldi-style option parsing; source it after the variables it may set are defined:
#   nj=4; stage=0
#   . utils/parse_options.sh
# Then `--nj 8`, `--nj=8` and `--stage-x 3` (dashes become underscores) override them.
# `--config FILE` sources FILE first (Kaldi's option files), unless the script has a variable `config`
# of its own (the recipes' training YAML): then it sets that like any other option. `--help` prints
# $help_message. An option whose variable is not defined is an error, and a variable that holds
# true/false only takes true or false.

for ((argpos = 1; argpos < $#; argpos++)); do
  if [ "${!argpos}" == "--config" ] && [ -z "${config+set}" ]; then
    argpos_plus1=$((argpos + 1))
    config=${!argpos_plus1}
    [ ! -r "$config" ] && echo "$0: missing config '$config'" 1>&2 && exit 1
    . "$config"  # may set any of the variables
  fi
done

while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      if [ -z "${help_message:-}" ]; then echo "No help found." 1>&2; else printf "%s\n" "$help_message" 1>&2; fi
      exit 0 ;;
    --*=*)
      name=$(echo "$1" | sed 's/=.*//; s/^--//; s/-/_/g')
      value=${1#*=}
      shift
      set -- "--$name" "$value" "$@" ;;
    --*)
      name=$(echo "$1" | sed 's/^--//; s/-/_/g')
      # An unset variable means the script has no such option.
      eval '[ -z "${'"$name"'+xxx}" ]' && echo "$0: invalid option $1" 1>&2 && exit 1
      [ $# -lt 2 ] && echo "$0: option $1 needs a value" 1>&2 && exit 1
      oldval=$(eval echo \$"$name")
      if [ "$oldval" == "true" ] || [ "$oldval" == "false" ]; then was_bool=true; else was_bool=false; fi
      eval "$name=\"\$2\""
      if $was_bool && [[ "$2" != "true" && "$2" != "false" ]]; then
        echo "$0: expected \"true\" or \"false\": $1 $2" 1>&2
        exit 1
      fi
      shift 2 ;;
    *) break ;;
  esac
done

true  # so that sourcing this file never fails on the last test
