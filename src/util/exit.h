#pragma once
// Process exit codes: part of the interface (scripts and cron depend on
// them). The README's table is a copy of this enum; keep them in sync.

#include "util/result.h"

namespace llamactl {

enum class Exit : int {
  ok = 0,
  failure = 1,               // unexpected error not covered below
  usage = 2,                 // bad command line
  config = 3,                // config file missing, unreadable or invalid
  gpu_unavailable = 4,       // GPU occupied by others, already ours, or lost
  model_not_found = 5,       // unknown model name or unreadable .gguf
  start_failed = 6,          // llama-server exited or failed its health check
  timeout = 7,               // a wait (health, lock, stop) ran out
  state = 8,                 // state dir / state file / lock error
  not_implemented = 9,       // command not built yet
  no_gpu = 10,               // --strict and no usable GPU reading
  insufficient_memory = 11,  // model needs more free GPU memory (see --force)
  port_in_use = 12,          // the requested --port is taken
  unhealthy = 13,            // status --check: an instance is dead or unhealthy
  interrupted = 130,         // Ctrl-C / SIGINT
};

inline int code(Exit e) {
  return static_cast<int>(e);
}

/// The exit code that a failed operation of this kind ends the process with.
inline Exit exit_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::usage:
      return Exit::usage;
    case ErrorKind::config:
      return Exit::config;
    case ErrorKind::gpu_unavailable:
      return Exit::gpu_unavailable;
    case ErrorKind::insufficient_memory:
      return Exit::insufficient_memory;
    case ErrorKind::model_not_found:
      return Exit::model_not_found;
    case ErrorKind::start_failed:
      return Exit::start_failed;
    case ErrorKind::timeout:
      return Exit::timeout;
    case ErrorKind::state:
      return Exit::state;
    case ErrorKind::port_in_use:
      return Exit::port_in_use;
    case ErrorKind::not_implemented:
      return Exit::not_implemented;
    case ErrorKind::unhealthy:
      return Exit::unhealthy;
    case ErrorKind::no_gpu:
      return Exit::no_gpu;
    case ErrorKind::io:
    case ErrorKind::parse:
      return Exit::failure;
  }
  return Exit::failure;
}

}  // namespace llamactl
