#include "placement/placement.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "util/strings.h"

namespace llamactl::placement {
namespace {

constexpr int64_t kMiB = 1024 * 1024;

std::string describe_others(const gpu::GpuStatus& g) {
  std::vector<std::string> parts;
  for (const auto& p : g.processes) {
    if (p.ours) continue;
    std::string s = p.pid ? "pid " + std::to_string(*p.pid) + " " + p.name : p.name + " process";
    std::vector<std::string> extra;
    if (p.used_memory_mib) extra.push_back(std::to_string(*p.used_memory_mib) + " MiB");
    if (p.user) extra.push_back("user " + *p.user);
    if (!extra.empty()) s += " (" + join(extra, ", ") + ")";
    parts.push_back(s);
  }
  std::string used =
      g.reading.memory_used_mib ? std::to_string(*g.reading.memory_used_mib) + " MiB used" : "memory in use";
  return used + (parts.empty() ? "" : ": " + join(parts, "; "));
}

// "CUDA_VISIBLE_DEVICES=GPU-… gives us GPU 2" for messages.
std::string given_text(const gpu::GpuView& view) {
  if (!view.restriction_error.empty()) return view.restriction_error;
  std::vector<int> given;
  for (const auto& g : view.gpus)
    if (g.ours_to_use) given.push_back(g.reading.index);
  return view.restricted_by + (given.empty() ? " gives us no GPU" : " gives us GPU " + gpus_text(given));
}

// Why this GPU cannot take a new instance; empty when it can.
std::string refusal(int index, const gpu::GpuView& view, const std::vector<state::Instance>& ours) {
  for (const auto& inst : ours) {
    if (std::find(inst.gpus.begin(), inst.gpus.end(), index) == inst.gpus.end()) continue;
    if (inst.gpus.size() > 1)
      return "GPU " + std::to_string(index) + " is part of the multi-GPU instance '" + inst.model + "' on GPUs " +
             gpus_text(inst.gpus) + " (pid " + std::to_string(inst.pid) + "); unload it first";
    return "GPU " + std::to_string(index) + " already runs '" + inst.model + "' (pid " + std::to_string(inst.pid) +
           ", port " + std::to_string(inst.port) + "); unload it first";
  }
  const gpu::GpuStatus* g = view.find(index);
  if (!g) {
    return "GPU " + std::to_string(index) + " does not exist (" +
           (view.gpus.empty()
                ? std::string("no GPU detected")
                : std::to_string(view.gpus.size()) + " GPUs: 0-" + std::to_string(view.gpus.back().reading.index)) +
           ")";
  }
  switch (g->state) {
    case gpu::GpuState::idle:
      return {};
    case gpu::GpuState::model_loaded:
      return "GPU " + std::to_string(index) + " already runs '" + g->model_name.value_or("?") + "'; unload it first";
    case gpu::GpuState::occupied_by_others:
      return "GPU " + std::to_string(index) + " is occupied by others: " + describe_others(*g);
    case gpu::GpuState::unavailable:
      return "GPU " + std::to_string(index) + " is unavailable (" +
             (g->reading.error.empty() ? "memory reading unknown" : g->reading.error) + ")";
    case gpu::GpuState::not_ours:
      return "GPU " + std::to_string(index) + " is not ours to use: " + given_text(view);
  }
  return {};
}

std::string fits_or_why(const std::vector<int>& gpus, const gpu::GpuView& view, const Estimate& need) {
  const int64_t per = need.per_gpu_mib(gpus.size());
  for (int i : gpus) {
    const auto free = view.find(i) ? view.find(i)->free_mib() : std::nullopt;
    if (!free)
      return "free memory of GPU " + std::to_string(i) + " is unknown; the model needs about " + std::to_string(per) +
             " MiB there";
    if (*free < per)
      return "GPU " + std::to_string(i) + " has " + std::to_string(*free) + " MiB free, the model needs about " +
             std::to_string(per) + " MiB there";
  }
  return {};
}

}  // namespace

Result<GpuSpec> parse_gpu_spec(const std::string& text) {
  GpuSpec s;
  s.text = text;
  const std::string t = to_lower(trim(text));
  if (t.empty() || t == "auto") return s;
  if (t == "cpu" || t == "none") {
    s.kind = GpuSpec::Kind::cpu;
    return s;
  }
  if (t == "both" || t == "all") {
    s.kind = GpuSpec::Kind::all;
    return s;
  }
  s.kind = GpuSpec::Kind::list;
  std::set<int> seen;
  for (auto part : split(t, ',')) {
    const auto i = parse_int(part);
    if (!i || *i < 0 || *i > 63)
      return make_error(ErrorKind::usage, "invalid --gpu '" + text + "' (use 0, 1, 0,1, both, auto or cpu)");
    if (!seen.insert(static_cast<int>(*i)).second)
      return make_error(ErrorKind::usage, "--gpu '" + text + "' names GPU " + std::to_string(*i) + " twice");
    s.indices.push_back(static_cast<int>(*i));
  }
  std::sort(s.indices.begin(), s.indices.end());
  return s;
}

int64_t Estimate::per_gpu_mib(size_t n) const {
  if (n == 0) n = 1;
  const int64_t shared = weights_mib + kv_cache_mib;
  return (shared + static_cast<int64_t>(n) - 1) / static_cast<int64_t>(n) + overhead_per_gpu_mib;
}

Estimate estimate(uint64_t file_bytes, const gguf::Info* info, int64_t context) {
  Estimate e;
  e.context = context;
  // Tensor data is nearly the whole file; the header's own sum is exact when every type is known.
  const uint64_t weights = info && info->tensor_bytes ? info->tensor_bytes : file_bytes;
  e.weights_mib = static_cast<int64_t>((weights + kMiB - 1) / kMiB);
  if (info) {
    e.from_header = true;
    if (const auto kv = gguf::kv_cache_bytes(*info, static_cast<uint64_t>(context)))
      e.kv_cache_mib = static_cast<int64_t>((*kv + kMiB - 1) / kMiB);
  }
  return e;
}

Result<Choice> choose_gpus(const GpuSpec& spec, const gpu::GpuView& view, const std::vector<state::Instance>& ours,
                           const Estimate& need, bool force) {
  Choice c;
  if (spec.kind == GpuSpec::Kind::cpu) return c;
  // A restriction that names a GPU nvidia-smi does not list is a mistake to fix, not a hint to ignore.
  if (!view.restriction_error.empty()) return make_error(ErrorKind::gpu_unavailable, view.restriction_error);
  const bool none_given =
      !view.cpu_mode && !view.gpus.empty() &&
      std::none_of(view.gpus.begin(), view.gpus.end(), [](const gpu::GpuStatus& g) { return g.ours_to_use; });

  if (spec.kind == GpuSpec::Kind::auto_) {
    if (view.cpu_mode || view.gpus.empty()) {
      c.notes.push_back("no GPU detected (" + (view.cpu_reason.empty() ? std::string("CPU mode") : view.cpu_reason) +
                        "); running on CPU");
      return c;
    }
    if (none_given) {
      c.notes.push_back(given_text(view) + "; running on CPU");
      return c;
    }
    std::vector<const gpu::GpuStatus*> idle;
    for (const auto& g : view.gpus)
      if (refusal(g.reading.index, view, ours).empty()) idle.push_back(&g);
    if (idle.empty()) {
      std::vector<std::string> why;
      for (const auto& g : view.gpus)
        if (g.ours_to_use) why.push_back(refusal(g.reading.index, view, ours));
      return make_error(ErrorKind::gpu_unavailable, "no idle GPU for auto placement: " + join(why, "; "));
    }
    std::stable_sort(idle.begin(), idle.end(), [](const gpu::GpuStatus* a, const gpu::GpuStatus* b) {
      return a->free_mib().value_or(-1) > b->free_mib().value_or(-1);
    });
    // The single GPU with most free memory, else the fewest GPUs that together fit.
    for (size_t n = 1; n <= idle.size(); ++n) {
      std::vector<int> set;
      for (size_t i = 0; i < n; ++i) set.push_back(idle[i]->reading.index);
      std::sort(set.begin(), set.end());
      if (fits_or_why(set, view, need).empty()) {
        c.gpus = set;
        return c;
      }
    }
    if (force) {
      c.gpus = {idle[0]->reading.index};
      c.notes.push_back("--force: the model may not fit GPU " + std::to_string(c.gpus[0]));
      return c;
    }
    std::vector<int> all;
    for (const auto* g : idle) all.push_back(g->reading.index);
    std::sort(all.begin(), all.end());
    return make_error(ErrorKind::insufficient_memory,
                      "the model does not fit the idle GPUs: needs about " + std::to_string(need.total_mib(1)) +
                          " MiB; " + fits_or_why(all, view, need) + " (use --force to try anyway)");
  }

  std::vector<int> wanted = spec.indices;
  if (spec.kind == GpuSpec::Kind::all) {
    if (view.cpu_mode || view.gpus.empty())
      return make_error(ErrorKind::gpu_unavailable, "--gpu " + spec.text + ": no GPU detected" +
                                                        (view.cpu_reason.empty() ? "" : " (" + view.cpu_reason + ")"));
    if (none_given) return make_error(ErrorKind::gpu_unavailable, "--gpu " + spec.text + ": " + given_text(view));
    for (const auto& g : view.gpus)
      if (g.ours_to_use) wanted.push_back(g.reading.index);  // all the GPUs we were given
  }
  if (view.cpu_mode)
    return make_error(ErrorKind::gpu_unavailable, "--gpu " + spec.text + ": no GPU detected" +
                                                      (view.cpu_reason.empty() ? "" : " (" + view.cpu_reason + ")"));
  std::vector<std::string> why;
  for (int i : wanted)
    if (auto r = refusal(i, view, ours); !r.empty()) why.push_back(r);
  if (!why.empty()) return make_error(ErrorKind::gpu_unavailable, join(why, "; "));
  if (auto r = fits_or_why(wanted, view, need); !r.empty()) {
    if (!force) return make_error(ErrorKind::insufficient_memory, r + " (use --force to try anyway)");
    c.notes.push_back("--force: " + r);
  }
  c.gpus = wanted;
  return c;
}

int preferred_port(const config::Config& cfg, const std::vector<int>& gpus, size_t total_gpus) {
  auto mapped = [&](const std::string& key) -> std::optional<int> {
    const auto it = cfg.ports.find(key);
    return it == cfg.ports.end() ? std::nullopt : std::optional<int>(it->second);
  };
  if (gpus.empty()) return mapped("cpu").value_or(cfg.base_port + 100);
  if (gpus.size() > 1 && gpus.size() == total_gpus)
    if (auto p = mapped("both")) return *p;
  if (gpus.size() == 1)
    if (auto p = mapped("gpu" + std::to_string(gpus[0]))) return *p;
  return cfg.base_port + gpus[0];
}

std::string gpus_text(const std::vector<int>& gpus) {
  if (gpus.empty()) return "cpu";
  std::vector<std::string> parts;
  for (int g : gpus) parts.push_back(std::to_string(g));
  return join(parts, ",");
}

std::string where_text(const std::vector<int>& gpus) {
  return gpus.empty() ? "the CPU" : "GPU " + gpus_text(gpus);
}

namespace {

std::string ratio(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

bool has_flag(const std::vector<std::string>& args, std::initializer_list<const char*> names) {
  for (const auto& a : args)
    for (const char* n : names)
      if (a == n || starts_with(a, std::string(n) + "=")) return true;
  return false;
}

}  // namespace

Launch launch_for(const config::Config& cfg, const std::string& program, const std::string& model_name,
                  const std::string& model_path, const std::vector<int>& gpus, size_t total_gpus, int port,
                  int64_t context, const std::vector<std::string>& model_args,
                  const std::vector<std::string>& extra_args, const std::vector<int>& visible) {
  Launch l;
  l.argv = {program,
            "-m",
            model_path,
            "--host",
            "127.0.0.1",
            "--port",
            std::to_string(port),
            "-c",
            std::to_string(context),
            "--alias",
            model_name};
  // CUDA's default order (fastest first) can differ from nvidia-smi's.
  l.env.emplace_back("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
  std::vector<std::string> user = model_args;
  user.insert(user.end(), extra_args.begin(), extra_args.end());
  const bool user_ngl = has_flag(user, {"-ngl", "--gpu-layers", "--n-gpu-layers"});
  const bool user_ts = has_flag(user, {"-ts", "--tensor-split"});

  if (gpus.empty()) {
    l.env.emplace_back("CUDA_VISIBLE_DEVICES", "");  // else it takes ~520 MiB of GPU 0 even with -ngl 0
  } else if (cfg.placement == config::Placement::visible_devices) {
    l.env.emplace_back("CUDA_VISIBLE_DEVICES", gpus_text(gpus));
    if (!user_ngl) l.argv.insert(l.argv.end(), {"-ngl", "999"});
    if (gpus.size() > 1 && !user_ts) {
      std::vector<std::string> even(gpus.size(), "1");
      l.argv.insert(l.argv.end(), {"--tensor-split", join(even, ",")});
    }
  } else {
    // The original deployment: every GPU visible, the split picks the GPUs ("1,0", "0,1", "0.5,0.5").
    // Every GPU we were given, that is: the child numbers the visible ones 0.. in this order.
    std::vector<int> seen = visible;
    if (seen.empty()) {
      const size_t n =
          std::max<size_t>(total_gpus, static_cast<size_t>(*std::max_element(gpus.begin(), gpus.end()) + 1));
      for (size_t i = 0; i < n; ++i) seen.push_back(static_cast<int>(i));
    }
    l.env.emplace_back("CUDA_VISIBLE_DEVICES", gpus_text(seen));
    std::vector<std::string> split_parts;
    for (int i : seen) {
      const bool chosen = std::find(gpus.begin(), gpus.end(), i) != gpus.end();
      split_parts.push_back(chosen ? ratio(1.0 / static_cast<double>(gpus.size())) : "0");
    }
    if (!user_ngl) l.argv.insert(l.argv.end(), {"-ngl", "999"});
    if (!user_ts) l.argv.insert(l.argv.end(), {"--tensor-split", join(split_parts, ",")});
  }
  l.argv.insert(l.argv.end(), user.begin(), user.end());
  return l;
}

}  // namespace llamactl::placement
