# PowerShell completion for llamactl. Install: . .\llamactl.ps1 (e.g. from $PROFILE)
# Model names and GPU indices come from `llamactl __complete`, run with the
# --config and --state-dir already on the line.
Register-ArgumentCompleter -Native -CommandName llamactl, llamactl.exe -ScriptBlock {
  param($wordToComplete, $commandAst, $cursorPosition)
  $commands = 'gpus', 'load', 'unload', 'status', 'serve', 'mcp', 'watch'
  $global = '--json', '--config', '--state-dir', '--verbose', '--quiet', '--smi-timeout', '--help', '--version'
  $perCommand = @{
    gpus   = '--threshold', '--strict', '--gpus'
    load   = '--gpu', '--port', '--timeout', '--force', '--keep-alive', '--threshold', '--gpus'
    unload = '--gpu', '--all', '--timeout'
    status = '--check', '--threshold'
    serve  = '--listen', '--api-key', '--allow-host', '--keep-alive', '--unload-on-exit', '--max-body', '--load-timeout', '--grace', '--gpus'
    watch  = '--interval', '--once'
  }
  $words = $commandAst.CommandElements | ForEach-Object { $_.ToString() }
  $sub = $words | Where-Object { $commands -contains $_ } | Select-Object -First 1
  $previous = if ($words.Count -ge 2) { $words[-1] } else { '' }
  if ($wordToComplete -eq $previous -and $words.Count -ge 3) { $previous = $words[-2] }
  $scope = @()
  for ($i = 1; $i -lt $words.Count - 1; $i++) {
    if ($words[$i] -eq '--config' -or $words[$i] -eq '--state-dir') { $scope += $words[$i], $words[$i + 1] }
  }
  $ask = { param($what) & $words[0] @scope __complete $what 2>$null }
  if ($previous -eq '--gpu') {
    $candidates = & $ask gpus
    if ($sub -eq 'unload') { $candidates = $candidates | Where-Object { $_ -ne 'auto' } }
  } elseif (-not $sub) {
    $candidates = $commands + $global
  } elseif ($wordToComplete -like '-*') {
    $candidates = $perCommand[$sub] + $global
  } elseif ($sub -eq 'load') {
    $candidates = @(& $ask models) + @(Get-ChildItem -Name -Filter '*.gguf' -ErrorAction SilentlyContinue)
  } elseif ($sub -eq 'unload') {
    $candidates = & $ask loaded
  } else {
    $candidates = $perCommand[$sub] + $global
  }
  $candidates | Where-Object { $_ -like "$wordToComplete*" } | ForEach-Object {
    [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
  }
}
