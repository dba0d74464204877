#include "gpu/visible.h"

#include <algorithm>

#include "util/strings.h"

namespace llamactl::gpu {
namespace {

constexpr int kMaxIndex = 63;  // as --gpu and [gpu.N]

std::string source_name(RestrictionSource s, const std::string& where) {
  switch (s) {
    case RestrictionSource::flag:
      return "--gpus";
    case RestrictionSource::config:
      return where.empty() ? std::string("config gpus") : "config gpus (" + where + ")";
    case RestrictionSource::cuda_env:
      return "CUDA_VISIBLE_DEVICES";
    case RestrictionSource::nvidia_env:
      return "NVIDIA_VISIBLE_DEVICES";
  }
  return "?";
}

ErrorKind error_kind(RestrictionSource s) {
  return s == RestrictionSource::flag ? ErrorKind::usage : ErrorKind::config;
}

bool uuid_like(std::string_view s) {
  if (s.size() <= 4 || !iequals(s.substr(0, 4), "GPU-")) return false;
  return std::all_of(s.begin() + 4, s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-';
  });
}

std::string listed(const std::vector<GpuReading>& gpus) {
  if (gpus.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& g : gpus) parts.push_back(std::to_string(g.index) + (g.uuid.empty() ? std::string() : " " + g.uuid));
  return join(parts, ", ");
}

}  // namespace

std::string Restriction::describe() const {
  if (source == "--gpus") return "--gpus " + text;
  if (from_env) return source + "=" + text;
  return source + " = [" + text + "]";
}

Result<std::optional<Restriction>> parse_restriction(std::string_view text, RestrictionSource source,
                                                     const std::string& where) {
  Restriction r;
  r.source = source_name(source, where);
  r.text = std::string(text);
  r.from_env = source == RestrictionSource::cuda_env || source == RestrictionSource::nvidia_env;
  const auto bad = [&](const std::string& why) {
    return make_error(error_kind(source), r.source + " '" + r.text + "': " + why);
  };
  const std::string word = to_lower(trim(text));
  if (word == "all") return std::optional<Restriction>();
  if (word == "none" || word == "void" || word == "nodevfiles") return std::optional<Restriction>(r);
  if (word.empty()) {
    if (source == RestrictionSource::flag) return bad("empty; use 'none' for no GPU or 'all' for every GPU");
    return std::optional<Restriction>(r);  // CUDA and the NVIDIA runtime: an empty list shows no GPU
  }
  for (auto part : split(text, ',')) {
    const auto entry = trim(part);
    GpuSelector sel;
    sel.text = std::string(entry);
    if (entry.empty()) return bad("an empty entry (use indices or GPU-... UUIDs separated by commas)");
    if (const auto i = parse_int(entry)) {
      if (*i < 0 && source == RestrictionSource::cuda_env) break;  // CUDA stops at the first invalid index
      if (*i < 0 || *i > kMaxIndex) return bad("index " + sel.text + " is out of range (0-63)");
      sel.index = static_cast<int>(*i);
    } else if (uuid_like(entry)) {
      sel.uuid = sel.text;
    } else if (entry.size() >= 4 && iequals(entry.substr(0, 4), "MIG-")) {
      return bad("'" + sel.text +
                 "' is a MIG device; llamactl places whole GPUs: name the GPU by index or GPU-... UUID");
    } else {
      return bad("'" + sel.text + "' is neither a GPU index nor a GPU-... UUID");
    }
    r.entries.push_back(std::move(sel));
  }
  return std::optional<Restriction>(r);
}

Result<std::optional<Restriction>> choose_restriction(const std::optional<std::string>& flag,
                                                      const std::optional<std::vector<std::string>>& config,
                                                      const std::string& config_where,
                                                      const std::optional<std::string>& cuda_env,
                                                      const std::optional<std::string>& nvidia_env) {
  if (flag) return parse_restriction(*flag, RestrictionSource::flag);
  if (config) return parse_restriction(join(*config, ","), RestrictionSource::config, config_where);
  if (cuda_env) return parse_restriction(*cuda_env, RestrictionSource::cuda_env);
  if (nvidia_env) return parse_restriction(*nvidia_env, RestrictionSource::nvidia_env);
  return std::optional<Restriction>();
}

Result<std::set<int>> resolve(const Restriction& r, const std::vector<GpuReading>& gpus) {
  std::set<int> out;
  std::vector<const GpuSelector*> missing_indices;
  for (const auto& e : r.entries) {
    if (e.index) {
      const bool present =
          std::any_of(gpus.begin(), gpus.end(), [&](const GpuReading& g) { return g.index == *e.index; });
      if (present)
        out.insert(*e.index);
      else
        missing_indices.push_back(&e);
      continue;
    }
    std::vector<int> matches;
    for (const auto& g : gpus)
      if (g.uuid.size() >= e.uuid.size() && iequals(std::string_view(g.uuid).substr(0, e.uuid.size()), e.uuid))
        matches.push_back(g.index);
    if (matches.empty()) {
      const bool no_uuids =
          !gpus.empty() && std::all_of(gpus.begin(), gpus.end(), [](const GpuReading& g) { return g.uuid.empty(); });
      return make_error(ErrorKind::gpu_unavailable,
                        r.describe() + " names " + e.text + ", which nvidia-smi does not list" +
                            (no_uuids ? " (its reading has no UUIDs)" : " (it lists " + listed(gpus) + ")"));
    }
    if (matches.size() > 1)
      return make_error(ErrorKind::gpu_unavailable,
                        r.describe() + " names " + e.text + ", a prefix of several GPUs' UUIDs; give more of it");
    out.insert(matches[0]);
  }
  if (missing_indices.empty()) return out;
  const bool all_indices =
      std::all_of(r.entries.begin(), r.entries.end(), [](const GpuSelector& e) { return e.index.has_value(); });
  std::set<int> distinct;
  for (const auto& e : r.entries)
    if (e.index) distinct.insert(*e.index);
  if (r.from_env && all_indices && !gpus.empty() && distinct.size() == gpus.size()) {
    // Renumbered by a container runtime or cgroup: it shows exactly the GPUs we were given.
    out.clear();
    for (const auto& g : gpus) out.insert(g.index);
    return out;
  }
  return make_error(ErrorKind::gpu_unavailable, r.describe() + " names GPU " + missing_indices[0]->text +
                                                    ", which nvidia-smi does not list (it lists " + listed(gpus) + ")");
}

}  // namespace llamactl::gpu
