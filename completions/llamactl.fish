# fish completion for llamactl. Install: copy to ~/.config/fish/completions/llamactl.fish
#
# Model names and GPU indices come from `llamactl __complete`, run with the
# --config and --state-dir already on the line.
function __llamactl_words -a what
    set -l tokens (commandline -opc)
    set -l scope
    for i in (seq 2 (count $tokens))
        switch $tokens[$i]
            case --config --state-dir
                # A leading ~ expanded, as the shell would pass it.
                set -a scope $tokens[$i] (string replace -r '^~' $HOME -- $tokens[(math $i + 1)])
            case '--config=*' '--state-dir=*'
                set -a scope $tokens[$i]
        end
    end
    $tokens[1] $scope __complete $what 2>/dev/null
end
function __llamactl_gpus
    set -l specs (__llamactl_words gpus)
    if __fish_seen_subcommand_from unload
        string match -v auto -- $specs
    else
        printf '%s\n' $specs
    end
end
# .gguf files and directories under what is typed (fish's own helper offers every file).
function __llamactl_gguf
    set -l typed (commandline -ct)
    for f in $typed*.gguf $typed*/
        echo $f
    end
end
set -l cmds gpus load unload status serve mcp watch
complete -c llamactl -f
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a gpus -d 'Detect GPUs and classify each one'
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a load -d 'Place and start a llama-server'
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a unload -d 'Stop instances and free their GPUs'
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a status -d 'Show every instance and the GPUs'
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a serve -d 'Ollama/OpenAI routing listener'
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a mcp -d 'MCP server on stdio for agents'
complete -c llamactl -n "not __fish_seen_subcommand_from $cmds" -a watch -d 'Live terminal dashboard'
complete -c llamactl -l json -d 'Machine-readable JSON'
complete -c llamactl -l config -r -F -d 'Config file'
complete -c llamactl -l state-dir -r -a '(__fish_complete_directories)' -d 'State directory'
complete -c llamactl -s v -l verbose -d 'More diagnostics'
complete -c llamactl -s q -l quiet -d 'Only errors'
complete -c llamactl -l smi-timeout -r -d 'Seconds to wait for nvidia-smi'
complete -c llamactl -l version -d 'Show version'
complete -c llamactl -n '__fish_seen_subcommand_from gpus' -l threshold -r -d 'MiB in use threshold'
complete -c llamactl -n '__fish_seen_subcommand_from gpus' -l strict -d 'Fail without GPUs'
complete -c llamactl -n '__fish_seen_subcommand_from load' -a '(__llamactl_gguf)' -d 'Model file'
complete -c llamactl -n '__fish_seen_subcommand_from load' -a '(__llamactl_words models)' -d 'Configured model'
complete -c llamactl -n '__fish_seen_subcommand_from unload' -a '(__llamactl_words loaded)' -d 'Loaded model'
complete -c llamactl -n '__fish_seen_subcommand_from load unload' -l gpu -x -a '(__llamactl_gpus)' -d 'GPUs'
complete -c llamactl -n '__fish_seen_subcommand_from load' -l port -r -d 'Port'
complete -c llamactl -n '__fish_seen_subcommand_from load unload' -l timeout -r -d 'Seconds'
complete -c llamactl -n '__fish_seen_subcommand_from load' -l force -d 'Skip the memory check'
complete -c llamactl -n '__fish_seen_subcommand_from load serve' -l keep-alive -r -d 'Idle time'
complete -c llamactl -n '__fish_seen_subcommand_from unload' -l all -d 'Every instance'
complete -c llamactl -n '__fish_seen_subcommand_from status' -l check -d 'Exit 13 when dead or unhealthy'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l listen -r -d 'HOST:PORT'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l api-key -r -d 'Bearer key'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l allow-host -r -d 'Another Host name to answer'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l unload-on-exit -d 'Unload on exit'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l max-body -r -d 'Largest request body'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l load-timeout -r -d 'Seconds to become healthy'
complete -c llamactl -n '__fish_seen_subcommand_from serve' -l grace -r -d 'Seconds for in-flight requests on stop'
complete -c llamactl -n '__fish_seen_subcommand_from gpus load serve' -l gpus -x -d 'Only these GPUs (indices or UUIDs)'
complete -c llamactl -n '__fish_seen_subcommand_from watch' -l interval -r -d 'Seconds'
complete -c llamactl -n '__fish_seen_subcommand_from watch' -l once -d 'One frame'
