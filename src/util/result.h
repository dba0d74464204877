#pragma once
// Result<T>: a value or an Error with a category. Parsers and OS wrappers
// return these; cmd/ turns the category into an exit code at the edge.

#include <string>
#include <utility>
#include <variant>

namespace llamactl {

enum class ErrorKind {
  usage,                // bad flags or arguments
  config,               // config file unreadable or invalid
  gpu_unavailable,      // chosen GPU occupied, lost, or already ours
  insufficient_memory,  // model does not fit the free GPU memory
  model_not_found,      // name not in config and not a readable .gguf
  start_failed,         // llama-server exited or never became healthy
  timeout,              // a wait ran past its deadline
  state,                // state dir, state file or lock problem
  port_in_use,          // the requested port is taken
  io,                   // other OS-level failure
  parse,                // malformed input text
  not_implemented,      // a command that is not built yet
  unhealthy,            // status --check found a dead or unhealthy instance
  no_gpu,               // gpus --strict: no usable GPU reading
};

struct Error {
  ErrorKind kind;
  std::string message;
};

inline Error make_error(ErrorKind kind, std::string message) {
  return Error{kind, std::move(message)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() {
  return Unit{};
}

}  // namespace llamactl
