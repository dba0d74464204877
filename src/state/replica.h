#pragma once
// A model's replicas (serve's `replicas = K`) are instances of their own in
// the state file, named "<model>#2" … "<model>#K": the state file, pid files,
// logs, `status` and `unload` keep one record per instance, and the name says
// which model it serves. Config model names cannot contain '#'. Pure.

#include <string>
#include <string_view>

namespace llamactl::state {

/// The model an instance name serves: "tiny#2" -> "tiny"; a name without a
/// "#<number>" suffix is its own model.
inline std::string replica_base(std::string_view instance) {
  const auto hash = instance.rfind('#');
  if (hash == std::string_view::npos || hash == 0 || hash + 1 == instance.size()) return std::string(instance);
  for (size_t i = hash + 1; i < instance.size(); ++i)
    if (instance[i] < '0' || instance[i] > '9') return std::string(instance);
  return std::string(instance.substr(0, hash));
}

/// Whether `instance` is a replica (not the model's own first instance).
inline bool is_replica(std::string_view instance) {
  return replica_base(instance).size() != instance.size();
}

/// The name of the k-th instance of `model` (k from 1): the model itself, then "model#k".
inline std::string replica_name(const std::string& model, int k) {
  return k <= 1 ? model : model + "#" + std::to_string(k);
}

}  // namespace llamactl::state
