# bash completion for llamactl. Install: source this file, or copy it to
# /usr/share/bash-completion/completions/llamactl
#
# Model names and GPU indices come from `llamactl __complete`, run with the
# --config and --state-dir already on the line, so they match the config and
# the state the command will use.

# _llamactl_words WHAT: the words `llamactl __complete WHAT` offers.
_llamactl_words() {
  local -a scope=()
  local i value
  for ((i = 1; i < cword; i++)); do
    case "${words[i]}" in
      --config | --state-dir)
        value=${words[i + 1]}
        [[ $value == = ]] && value=${words[i + 2]}
        # As the shell would pass it: quotes removed, a leading ~ expanded.
        value=${value#[\"\']}
        value=${value%[\"\']}
        value=${value/#\~/$HOME}
        scope+=("${words[i]}" "$value")
        ;;
    esac
  done
  "${words[0]}" "${scope[@]}" __complete "$1" 2>/dev/null
}

_llamactl() {
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion || return
  else
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi
  local global="--json --config --state-dir -v --verbose -q --quiet --smi-timeout --help --version"
  local cmds="gpus load unload status serve mcp watch"
  local sub="" w
  for w in "${words[@]:1:cword-1}"; do
    case "$w" in gpus | load | unload | status | serve | mcp | watch) sub=$w && break ;; esac
  done
  local IFS=$'\n'
  case "$prev" in
    --config)
      COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur"))
      compopt -o plusdirs -o filenames 2>/dev/null
      return
      ;;
    --state-dir)
      COMPREPLY=($(compgen -d -- "$cur"))
      compopt -o filenames 2>/dev/null
      return
      ;;
    --gpu)
      local specs
      specs=$(_llamactl_words gpus)
      # unload takes no "auto": it names GPUs that hold something.
      [[ $sub == unload ]] && specs=$(printf '%s\n' "$specs" | grep -vx auto)
      COMPREPLY=($(compgen -W "$specs" -- "$cur"))
      return
      ;;
    --port | --timeout | --threshold | --interval | --smi-timeout | --keep-alive | --listen | --api-key | \
      --max-body | --load-timeout | --grace | --allow-host | --gpus)
      return
      ;;
  esac
  IFS=$' \t\n'
  local opts
  case "$sub" in
    gpus) opts="--threshold --strict --gpus" ;;
    load) opts="--gpu --port --timeout --force --keep-alive --threshold --gpus" ;;
    unload) opts="--gpu --all --timeout" ;;
    status) opts="--check --threshold" ;;
    serve) opts="--listen --api-key --allow-host --keep-alive --unload-on-exit --max-body --load-timeout --grace --gpus" ;;
    mcp) opts="" ;;
    watch) opts="--interval --once" ;;
    "")
      COMPREPLY=($(compgen -W "$cmds $global" -- "$cur"))
      return
      ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
    return
  fi
  # The model argument: configured names (and .gguf files) for load, what runs for unload.
  IFS=$'\n'
  case "$sub" in
    load)
      COMPREPLY=($(compgen -W "$(_llamactl_words models)" -- "$cur") $(compgen -f -X '!*.gguf' -- "$cur"))
      compopt -o plusdirs -o filenames 2>/dev/null
      ;;
    unload)
      COMPREPLY=($(compgen -W "$(_llamactl_words loaded)" -- "$cur"))
      ;;
  esac
}
complete -F _llamactl llamactl
