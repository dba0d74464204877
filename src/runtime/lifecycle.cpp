// load and unload: the decisions under the state lock, the long waits
// outside it (a `starting` record keeps the GPU and port reserved).

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>

#include "runtime/runtime.h"
#include "state/replica.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::runtime {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

Result<ModelChoice> resolve_model(const std::string& wanted, const config::Config& cfg) {
  ModelChoice m;
  m.context = cfg.context;
  if (const auto* mc = cfg.find_model(wanted)) {
    m.name = mc->name;
    m.path = mc->path;
    m.gpu = mc->gpu;
    m.args = mc->args;
    m.embeddings = mc->embeddings;
    m.reranking = mc->reranking;
    m.parallel = mc->parallel;
    if (mc->context) m.context = *mc->context;
  } else if (ends_with(to_lower(wanted), ".gguf") || wanted.find_first_of("/\\") != std::string::npos) {
    m.path = wanted;
    m.name = platform::utf8_path(platform::fs_path(wanted).stem());
  } else {
    const auto near = nearest(wanted, cfg.model_names());
    return make_error(ErrorKind::model_not_found, "model '" + wanted + "' is not in the config" +
                                                      (cfg.source.empty() ? "" : " (" + cfg.source + ")") +
                                                      " and is not a path to a .gguf file" +
                                                      (near ? "; did you mean '" + *near + "'?" : ""));
  }
  std::error_code ec;
  const auto abs = fs::absolute(platform::fs_path(m.path), ec);
  if (!ec) m.path = platform::utf8_path(abs.lexically_normal());
  if (!fs::is_regular_file(platform::fs_path(m.path), ec))
    return make_error(ErrorKind::model_not_found, "model file not found: " + m.path);
  return m;
}

// `unload` that matched nothing: whether the name is a model at all, the
// nearest name, and what of ours runs instead.
Error nothing_to_unload(const UnloadRequest& req, const config::Config& cfg, const std::vector<state::Instance>& live) {
  std::vector<std::string> running, names;
  for (const auto& i : live) {
    running.push_back(i.model + " on " + placement::where_text(i.gpus));
    names.push_back(i.model);
  }
  const std::string runs = running.empty() ? " Nothing of ours runs." : " Running: " + join(running, ", ") + ".";
  if (!req.model) {
    const std::string gpu = req.gpu.value_or("?");
    return make_error(ErrorKind::model_not_found,
                      "nothing of ours runs on " + (iequals(gpu, "cpu") ? "the CPU" : "GPU " + gpu) + "." + runs);
  }
  const std::string& m = *req.model;
  const bool path = ends_with(to_lower(m), ".gguf") || m.find_first_of("/\\") != std::string::npos;
  if (path || cfg.find_model(m)) return make_error(ErrorKind::model_not_found, "'" + m + "' is not running." + runs);
  const auto configured = cfg.model_names();
  names.insert(names.end(), configured.begin(), configured.end());
  const auto near = nearest(m, names);
  return make_error(ErrorKind::model_not_found, "'" + m + "' is not a model: not in the config" +
                                                    (cfg.source.empty() ? "" : " (" + cfg.source + ")") +
                                                    " and not one of ours that runs" +
                                                    (near ? "; did you mean '" + *near + "'?" : ".") + runs);
}

// Whether the config chose the context (the model's `context` or the global
// one). A request's context is not counted: serve clamps Ollama's num_ctx to
// the trained context already, and restarts a model (for embeddings or
// reranking) with the context it ran with, the built-in default included.
bool context_chosen(const config::Config& cfg, const std::string& model) {
  const auto* mc = cfg.find_model(model);
  return (mc && mc->context) || cfg.context_set;
}

// A context above the one the model was trained with (its GGUF's
// <arch>.context_length) costs memory for tokens the model handles badly: a
// refusal naming both numbers, or a warning with --force or
// allow_context_over_trained. Only a chosen context is checked: the built-in
// default (4096) predates the check, and models trained with 2048 load with
// it as before.
Status check_trained_context(const ModelChoice& m, const gguf::Info& header, bool chosen, bool allowed,
                             std::vector<std::string>& notes) {
  if (!chosen || !header.context_length || m.context <= 0 || static_cast<uint64_t>(m.context) <= *header.context_length)
    return ok_status();
  const std::string what = "context " + std::to_string(m.context) + " is above the " +
                           std::to_string(*header.context_length) + " tokens '" + m.name + "' was trained with (" +
                           header.architecture + ".context_length)";
  if (allowed) {
    notes.push_back(what);
    return ok_status();
  }
  return make_error(ErrorKind::config,
                    what +
                        "; set a smaller context, or allow_context_over_trained = true in the config, or load "
                        "with --force");
}

// Spawning failed and the program is nowhere to be found: where we looked
// and how to get one, rather than the OS's "No such file or directory".
Error no_llama_server(const config::Config& cfg) {
  const bool named_path = cfg.llama_server.find_first_of("/\\") != std::string::npos;
  return make_error(ErrorKind::start_failed,
                    "llama-server not found: llama_server = '" + cfg.llama_server + "' (" +
                        (cfg.source.empty() ? "the default; no config file" : cfg.source) + ") " +
                        (named_path ? "is missing or not executable" : "is not on PATH") +
                        ". Build llama.cpp (https://github.com/ggml-org/llama.cpp) or take its release binaries, "
                        "then put llama-server on PATH or set llama_server = \"/path/to/llama-server\" in the config");
}

// A GPU reading older than this is taken again before a placement decision.
constexpr auto kFreshReading = std::chrono::milliseconds(250);

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool port_reserved(int port, const std::vector<state::Instance>& live) {
  return std::any_of(live.begin(), live.end(), [&](const state::Instance& i) { return i.port == port; });
}

// `load` of a model that already runs: fine where it runs, an error when
// the request names other GPUs.
Status check_same_placement(const std::string& name, const placement::GpuSpec& spec, bool gpu_given,
                            const state::Instance& existing) {
  using Kind = placement::GpuSpec::Kind;
  const bool other_list = spec.kind == Kind::list && spec.indices != existing.gpus;
  const bool cpu_vs_gpu = spec.kind == Kind::cpu && !existing.gpus.empty();
  if (!gpu_given || (!other_list && !cpu_vs_gpu)) return ok_status();
  return make_error(ErrorKind::gpu_unavailable,
                    "'" + name + "' already runs on " + placement::where_text(existing.gpus) + " (pid " +
                        std::to_string(existing.pid) + "); unload it before loading it on " +
                        (cpu_vs_gpu ? std::string("the CPU") : "GPU " + placement::gpus_text(spec.indices)));
}

// The requested port, or the preferred one moving on past ports that are
// taken (by anyone) or reserved by our other instances.
Result<int> choose_port(std::optional<int> wanted, int first, const std::vector<state::Instance>& live, ProcessOps& ops,
                        std::vector<std::string>& notes) {
  const auto free = [&](int p) { return !port_reserved(p, live) && ops.port_available(p); };
  if (wanted) {
    if (!free(*wanted))
      return make_error(ErrorKind::port_in_use, "port " + std::to_string(*wanted) + " is already in use");
    return *wanted;
  }
  for (int p = first; p < first + 100 && p <= 65535; ++p) {
    if (!free(p)) continue;
    if (p != first) notes.push_back("port " + std::to_string(first) + " is taken; using " + std::to_string(p));
    return p;
  }
  return make_error(ErrorKind::port_in_use,
                    "no free port in " + std::to_string(first) + "-" + std::to_string(first + 99));
}

// llama.h's LLAMA_POOLING_TYPE_RANK: the value of <arch>.pooling_type in a
// reranker's GGUF (a classification head on the graph).
constexpr uint32_t kPoolingRank = 4;

bool has_flag(const ModelChoice& m, const std::vector<std::string>& extra, std::string_view flag) {
  const auto match = [&](const std::string& a) { return a == flag || starts_with(a, std::string(flag) + "="); };
  return std::any_of(m.args.begin(), m.args.end(), match) || std::any_of(extra.begin(), extra.end(), match);
}

/// A reranker (its GGUF declares rank pooling), a model configured with
/// `reranking = true`, or one serve's rerank request asked for, runs with
/// --reranking: without it llama-server answers /v1/rerank with 501
/// "This server does not support reranking" (captured). The flag turns on
/// embeddings with rank pooling (llama.cpp common/arg.cpp). True when it is on.
bool add_reranking_args(ModelChoice& m, const gguf::Info& header, const std::vector<std::string>& extra) {
  if (has_flag(m, extra, "--reranking") || has_flag(m, extra, "--rerank")) return true;
  if (!m.reranking && header.pooling_type != kPoolingRank) return false;
  m.args.emplace_back("--reranking");
  return true;
}

/// A model that serves embeddings (configured, or serve's first request
/// for it was one) runs with --embeddings, and with --pooling mean when its
/// GGUF declares no pooling type: llama-server then answers /v1/embeddings
/// with 400 "Pooling type 'none' is not OAI compatible" (observed).
/// A reranking instance keeps its rank pooling: no --pooling mean then.
void add_embedding_args(ModelChoice& m, const gguf::Info& header, const std::vector<std::string>& extra,
                        bool reranking) {
  const auto has = [&](std::string_view flag) { return has_flag(m, extra, flag); };
  if (!m.embeddings && !has("--embeddings") && !has("--embedding")) return;
  if (!has("--embeddings") && !has("--embedding")) m.args.emplace_back("--embeddings");
  if (!header.pooling_type && !has("--pooling") && !reranking) {
    m.args.emplace_back("--pooling");
    m.args.emplace_back("mean");
  }
  // An embedding input is never split: it must fit one physical batch
  // (llama-server's default 512 tokens answers 500 to anything longer). A
  // model made for embeddings (it declares its pooling) gets a batch as large
  // as its context, up to 2048 (llama-server's default -b: the attention
  // buffers grow with the square of the batch, and the memory estimate does
  // not count them); a chat model keeps the defaults and their smaller memory.
  if (header.pooling_type && !has("-ub") && !has("--ubatch-size") && !has("-b") && !has("--batch-size")) {
    int64_t n = std::min<int64_t>(m.context, 2048);
    if (header.context_length && *header.context_length > 0)
      n = std::min<int64_t>(n, static_cast<int64_t>(*header.context_length));
    if (n > 512) m.args.insert(m.args.end(), {"--ubatch-size", std::to_string(n), "--batch-size", std::to_string(n)});
  }
}

}  // namespace

Result<LoadOutcome> Runtime::load(const LoadRequest& req) {
  const auto t0 = Clock::now();
  auto model = resolve_model(req.model, *config());
  if (!model) return model.error();
  if (req.context) model->context = *req.context;
  model->instance = req.instance.value_or(model->name);
  auto spec = placement::parse_gpu_spec(req.gpu.value_or(model->gpu.value_or("auto")));
  if (!spec) return spec.error();
  // The GPU reading (~25 ms per nvidia-smi call on an H100) runs while the
  // model header is read and the lock is taken; it is used only if still
  // fresh when the decision is made.
  auto early_probe = std::async(std::launch::async, [this] { return std::pair(probe_.read(), Clock::now()); });
  const auto header = gguf::read_file(model->path);
  if (!header) return header.error();
  if (model->parallel && !has_flag(*model, req.extra_args, "-np") && !has_flag(*model, req.extra_args, "--parallel"))
    model->args.insert(model->args.end(), {"-np", std::to_string(*model->parallel)});
  const bool reranking = add_reranking_args(*model, *header, req.extra_args);
  add_embedding_args(*model, *header, req.extra_args, reranking);
  std::error_code ec;
  const auto file_bytes = fs::file_size(platform::fs_path(model->path), ec);
  LoadOutcome out;
  out.estimate = placement::estimate(ec ? 0 : file_bytes, &*header, model->context);

  state::Instance inst;
  {
    auto lock = dir_.lock();
    if (!lock) return lock.error();
    state::StateFile st;
    if (auto rec = lock_and_reconcile(*lock, st, out.notes); !rec) return rec.error();
    if (st.find_dead(model->instance)) {
      // The model runs again: its death has been acted on.
      std::erase_if(st.instances, [&](const state::Instance& i) { return i.model == model->instance && i.dead(); });
      out.notes.push_back("cleared the dead record of '" + model->instance + "'");
    }
    if (auto* existing = st.find(model->instance)) {
      if (auto s = check_same_placement(model->instance, *spec, req.gpu.has_value(), *existing); !s) return s.error();
      // `load M --keep-alive D` on a running model changes its keep-alive (serve honours it).
      if (req.keep_alive_ms && existing->keep_alive_ms != *req.keep_alive_ms) {
        out.keep_alive_was = existing->keep_alive_ms;
        existing->keep_alive_ms = *req.keep_alive_ms;
        if (auto s = dir_.save(*lock, st); !s) return s.error();
      }
      inst = *existing;
      out.already_running = true;
    } else {
      // Checked only for a start: a model that runs already was let through once.
      if (auto s = check_trained_context(*model, *header, context_chosen(*config(), req.model),
                                         req.force || config()->allow_context_over_trained, out.notes);
          !s)
        return s.error();
      auto [probe, read_at] = early_probe.get();
      if (Clock::now() - read_at > kFreshReading) probe = probe_.read();  // the lock wait made it old
      log::debug("load {}: decision at {:.1f} ms (reading took {:.1f} ms)", model->name, ms_since(t0),
                 probe.elapsed_ms);
      auto started = place_and_start(*model, *spec, req, probe, st.live(), out);
      if (!started) return started.error();
      inst = std::move(*started);
      st.instances.push_back(inst);
      if (auto s = dir_.save(*lock, st); !s) {
        bool killed = false;
        stop(inst, std::chrono::seconds(2), killed);
        return s.error();
      }
      if (auto s = dir_.write_pidfile(*lock, inst); !s) out.notes.push_back(s.error().message);
    }
  }  // lock released: the health wait can take minutes

  log::debug("load {}: recorded at {:.1f} ms", inst.model, ms_since(t0));
  if (auto s = wait_healthy(inst, req); !s) {
    if (!out.already_running) {
      bool killed = false;
      stop(inst, std::chrono::seconds(5), killed);
      forget(inst);
    }
    return s.error();
  }
  out.ready_s = std::chrono::duration<double>(Clock::now() - t0).count();
  log::debug("load {}: healthy at {:.1f} ms", inst.model, ms_since(t0));
  // Also for an existing record: a loader killed during its health wait left it `starting`.
  if (auto s = mark_running(inst); !s) return s.error();
  out.instance = describe(inst, probe_.read(), 200);
  return out;
}

Result<std::vector<std::string>> Runtime::room_for(const LoadRequest& req, const std::vector<std::string>& candidates) {
  auto model = resolve_model(req.model, *config());
  if (!model) return model.error();
  if (req.context) model->context = *req.context;
  auto spec = placement::parse_gpu_spec(req.gpu.value_or(model->gpu.value_or("auto")));
  if (!spec) return spec.error();
  const auto header = gguf::read_file(model->path);
  if (!header) return header.error();
  std::error_code ec;
  const auto file_bytes = fs::file_size(platform::fs_path(model->path), ec);
  const auto need = placement::estimate(ec ? 0 : file_bytes, &*header, model->context);
  std::vector<std::string> notes;
  auto st = reconcile_state(notes);
  if (!st) return st.error();
  const auto live = st->live();
  const auto probe = probe_.read();
  const auto opts = classify_opts();
  // Whether the model would be placed with the instances of `gone` stopped.
  const auto fits = [&](const std::set<std::string>& gone) -> Status {
    std::vector<state::Instance> stopped, rest;
    for (const auto& i : live) (gone.count(i.model) ? stopped : rest).push_back(i);
    const auto reading = probe_without(probe, stopped);
    if (placement::choose_gpus(*spec, gpu::classify(reading, opts, ours_of(rest), nullptr), rest, need, false))
      return ok_status();
    // Again with user names, for the message.
    const auto named = gpu::classify(reading, opts, ours_of(rest), [this](int64_t pid) { return ops_.user_of(pid); });
    auto again = placement::choose_gpus(*spec, named, rest, need, false);
    if (again) return make_error(ErrorKind::gpu_unavailable, "the GPUs changed while they were read");
    return again.error();
  };
  if (fits({})) return std::vector<std::string>{};
  std::set<std::string> all(candidates.begin(), candidates.end());
  if (auto s = fits(all); !s)
    return make_error(s.error().kind, "waiting would not help: it does not fit even with serve's instances of " +
                                          join(candidates, ", ") + " stopped (" + s.error().message + ")");
  // The first candidates that make room, then without any that a later one made needless.
  std::vector<std::string> chosen;
  std::set<std::string> gone;
  for (const auto& c : candidates) {
    chosen.push_back(c);
    gone.insert(c);
    if (fits(gone)) break;
  }
  for (size_t i = chosen.size(); i-- > 0;) {
    auto fewer = gone;
    fewer.erase(chosen[i]);
    if (fits(fewer)) {
      gone = std::move(fewer);
      chosen.erase(chosen.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  return chosen;
}

Result<state::Instance> Runtime::place_and_start(const ModelChoice& model, const placement::GpuSpec& spec,
                                                 const LoadRequest& req, const gpu::ProbeResult& probe,
                                                 const std::vector<state::Instance>& live, LoadOutcome& out) {
  const auto cfg = config();
  const auto opts = classify_opts();
  const auto view = gpu::classify(probe, opts, ours_of(live), nullptr);
  for (const auto& w : view.warnings) out.notes.push_back(w);
  auto choice = placement::choose_gpus(spec, view, live, out.estimate, req.force);
  if (!choice) {
    // Name the other user's process: classify again with user names for the message.
    const auto named = gpu::classify(probe, opts, ours_of(live), [this](int64_t pid) { return ops_.user_of(pid); });
    auto again = placement::choose_gpus(spec, named, live, out.estimate, req.force);
    return again ? choice.error() : again.error();
  }
  if (req.gpu_only && choice->gpus.empty())
    return make_error(ErrorKind::gpu_unavailable,
                      "no GPU for '" + model.instance + "'" +
                          (choice->notes.empty() ? std::string() : " (" + join(choice->notes, "; ") + ")"));
  for (auto& n : choice->notes) out.notes.push_back(n);
  const auto port =
      choose_port(req.port, placement::preferred_port(*cfg, choice->gpus, view.gpus.size()), live, ops_, out.notes);
  if (!port) return port.error();

  const std::string program = platform::find_program(cfg->llama_server).value_or(cfg->llama_server);
  std::vector<int> given;  // the GPUs we were given: all that a tensor-split child may see
  for (const auto& g : view.gpus)
    if (g.ours_to_use) given.push_back(g.reading.index);
  std::sort(given.begin(), given.end());
  const auto launch = placement::launch_for(*cfg, program, model.name, model.path, choice->gpus, view.gpus.size(),
                                            *port, model.context, model.args, req.extra_args, given);
  const std::string& key = model.instance.empty() ? model.name : model.instance;
  const std::string log = dir_.log_path(key);
  // A fresh log per start (no fsync needed): its tail is what a failed load shows.
  // 0600 and never through a planted link: the log holds the model's paths and arguments.
  if (auto s =
          platform::write_private_file(log, "# llamactl " + iso8601(now_ms()) + ": " + join(launch.argv, " ") + "\n");
      !s)
    return make_error(ErrorKind::state, "cannot write log file: " + s.error().message);
  auto spawned = ops_.spawn({launch.argv, launch.env, {"LLAMA_ARG_", "AIP_"}, log});
  if (!spawned) return platform::find_program(cfg->llama_server) ? spawned.error() : no_llama_server(*cfg);

  state::Instance inst;
  inst.model = key;
  inst.path = model.path;
  inst.gpus = choice->gpus;
  inst.port = *port;
  inst.pid = spawned->pid;
  inst.start_time = spawned->start_time;
  inst.started_at_ms = inst.last_used_at_ms = now_ms();
  inst.keep_alive_ms = req.keep_alive_ms.value_or(-1);
  inst.log = log;
  inst.argv = launch.argv;
  inst.owner = platform::current_user();
  inst.state = "starting";
  inst.loaded_by = req.loaded_by;
  inst.estimate_mib = out.estimate.total_mib(std::max<size_t>(1, choice->gpus.size()));
  return inst;
}

Status Runtime::mark_running(state::Instance& inst) {
  auto lock = dir_.lock();
  if (!lock) return lock.error();
  std::vector<std::string> notes;
  auto st = dir_.load(*lock, notes);
  if (!st) return st.error();
  if (auto* rec = st->find(inst.model); rec && rec->pid == inst.pid) {
    rec->state = "running";
    rec->last_used_at_ms = now_ms();
    inst = *rec;
    return dir_.save(*lock, *st);
  }
  return ok_status();  // unloaded meanwhile by someone else: nothing to mark
}

Status Runtime::wait_healthy(const state::Instance& inst, const LoadRequest& req) {
  const auto start = Clock::now();
  const auto deadline = start + req.timeout;
  for (;;) {
    if (platform::interrupted())
      return make_error(ErrorKind::start_failed, "interrupted while waiting for '" + inst.model + "'");
    // Gone (or a zombie)? Reaping our own child gives its exit code; another
    // process's child (a second `load` waiting for the same model) has none.
    // Liveness first, then reap: reaping first raced with an exit in between.
    if (!ops_.alive(inst.pid, inst.start_time)) {
      // A multi-threaded child reads as a zombie a moment before waitpid reports it.
      auto code = ops_.try_reap(inst.pid);
      for (int i = 0; !code && i < 20; ++i) {
        platform::sleep_for(std::chrono::milliseconds(10));
        code = ops_.try_reap(inst.pid);
      }
      return make_error(ErrorKind::start_failed, "llama-server for '" + inst.model + "' exited" +
                                                     (code ? " with code " + std::to_string(*code) : std::string()) +
                                                     " before it became healthy; last lines of " + inst.log + ":\n" +
                                                     log_tail(inst.log, 20));
    }
    if (health_.health(inst.port, std::chrono::milliseconds(1000)) == 200) return ok_status();
    const auto now = Clock::now();
    if (now >= deadline)
      return make_error(ErrorKind::timeout, "'" + inst.model + "' did not become healthy within " +
                                                std::to_string(req.timeout.count() / 1000) + " s; last lines of " +
                                                inst.log + ":\n" + log_tail(inst.log, 20));
    if (req.progress) req.progress(inst.model, std::chrono::duration<double>(now - start).count());
    // A loopback probe is cheap: poll finely at first so a fast start is seen at once.
    platform::sleep_for(now - start < std::chrono::seconds(10) ? std::chrono::milliseconds(5)
                                                               : std::chrono::milliseconds(50));
  }
}

bool Runtime::stop(const state::Instance& inst, std::chrono::milliseconds timeout, bool& killed) {
  killed = false;
  // Never signal a pid that now belongs to someone else.
  if (!ops_.alive(inst.pid, inst.start_time)) {
    ops_.try_reap(inst.pid);
    return true;
  }
  // Nor one of another user, whatever a record says (a record can be forged).
  if (const auto owner = ops_.user_of(inst.pid); owner && *owner != ops_.me()) {
    log::warn("not stopping pid {} of '{}': it runs as {}, not as {}", inst.pid, inst.model, *owner, ops_.me());
    return false;
  }
  // No graceful signal could be delivered (e.g. a Windows process without our console): kill at once.
  if (!ops_.signal_group(inst.pid, platform::Signal::terminate)) timeout = std::chrono::milliseconds(0);
  const auto wait_gone = [&](std::chrono::milliseconds limit) {
    const auto until = Clock::now() + limit;
    for (;;) {
      ops_.try_reap(inst.pid);
      if (!ops_.alive(inst.pid, inst.start_time)) return true;
      if (Clock::now() >= until) return false;
      platform::sleep_for(std::chrono::milliseconds(10));
    }
  };
  if (wait_gone(timeout)) return true;
  // A real llama-server can stall in its graceful path: escalate.
  killed = true;
  ops_.signal_group(inst.pid, platform::Signal::kill);
  return wait_gone(std::chrono::seconds(5));
}

Status Runtime::edit_state(const std::function<Result<bool>(const state::Lock&, state::StateFile&)>& edit) {
  auto lock = dir_.lock();
  if (!lock) return lock.error();
  std::vector<std::string> warnings;
  auto st = dir_.load(*lock, warnings);
  if (!st) return st.error();
  for (const auto& w : warnings) log::warn("{}", w);
  auto changed = edit(*lock, *st);
  if (!changed) return changed.error();
  return *changed ? dir_.save(*lock, *st) : ok_status();
}

Status Runtime::restore_records(const std::vector<state::Instance>& ours) {
  if (ours.empty()) return ok_status();
  return edit_state([&](const state::Lock& lock, state::StateFile& st) -> Result<bool> {
    bool changed = false;
    for (const auto& rec : ours) {
      // A model that has a live record already (the same instance, or one that
      // a `llamactl load` started meanwhile) keeps it: one record per model.
      const bool taken = std::any_of(st.instances.begin(), st.instances.end(), [&](const state::Instance& i) {
        return !i.dead() && (i.model == rec.model || i.port == rec.port);
      });
      if (taken) {
        if (std::none_of(st.instances.begin(), st.instances.end(),
                         [&](const state::Instance& i) { return i.pid == rec.pid; }))
          log::warn("not putting back '{}' (pid {}): the state has a live record for it or its port", rec.model,
                    rec.pid);
        continue;
      }
      if (!ops_.alive(rec.pid, rec.start_time)) continue;
      st.instances.push_back(rec);
      if (auto s = dir_.write_pidfile(lock, rec); !s) return s.error();
      changed = true;
    }
    return changed;
  });
}

Status Runtime::record_use(const std::vector<std::tuple<std::string, int64_t, int64_t>>& uses) {
  if (uses.empty()) return ok_status();
  return edit_state([&](const state::Lock&, state::StateFile& st) -> Result<bool> {
    bool changed = false;
    for (const auto& [model, pid, at] : uses)
      if (auto* rec = st.find(model); rec && rec->pid == pid && rec->last_used_at_ms < at) {
        rec->last_used_at_ms = at;
        changed = true;
      }
    return changed;
  });
}

Status Runtime::set_keep_alive(const std::string& model, int64_t pid, int64_t keep_alive_ms) {
  return edit_state([&](const state::Lock&, state::StateFile& st) -> Result<bool> {
    auto* rec = st.find(model);
    if (!rec || rec->pid != pid || rec->keep_alive_ms == keep_alive_ms) return false;
    rec->keep_alive_ms = keep_alive_ms;
    return true;
  });
}

void Runtime::forget(const state::Instance& inst) {
  auto lock = dir_.lock();
  if (!lock) {
    log::warn("cannot remove '{}' from the state: {}", inst.model, lock.error().message);
    return;
  }
  std::vector<std::string> notes;
  auto st = dir_.load(*lock, notes);
  if (!st) return;
  auto& v = st->instances;
  v.erase(std::remove_if(v.begin(), v.end(),
                         [&](const state::Instance& i) { return i.model == inst.model && i.pid == inst.pid; }),
          v.end());
  if (auto s = dir_.save(*lock, *st); !s) log::warn("{}", s.error().message);
  (void)dir_.remove_pidfile(*lock, inst.model);
}

Result<UnloadOutcome> Runtime::unload(const UnloadRequest& req) {
  std::vector<state::Instance> targets;
  std::vector<std::string> notes;
  {
    auto lock = dir_.lock();
    if (!lock) return lock.error();
    state::StateFile st;
    auto rec = lock_and_reconcile(*lock, st, notes);
    if (!rec) return rec.error();
    std::optional<placement::GpuSpec> spec;
    if (req.gpu) {
      auto s = placement::parse_gpu_spec(*req.gpu);
      if (!s) return s.error();
      if (s->kind == placement::GpuSpec::Kind::auto_)
        return make_error(ErrorKind::usage, "unload --gpu takes 0, 1, 0,1, both or cpu, not '" + *req.gpu + "'");
      spec = *s;
    }
    std::string wanted;
    if (req.model) {
      const auto cfg = config();
      const auto* mc = cfg->find_model(*req.model);
      wanted = mc ? mc->name : *req.model;
      if (!mc && ends_with(to_lower(wanted), ".gguf")) wanted = platform::utf8_path(platform::fs_path(wanted).stem());
    }
    for (const auto& i : st.instances) {
      if (req.only_pid && i.pid != req.only_pid) continue;
      if (i.dead() && !req.all && !req.model) continue;  // --gpu: dead records hold no GPU
      bool match = req.all;
      // A model's replicas ("tiny#2") go with it.
      if (req.model) match = match || i.model == wanted || state::replica_base(i.model) == wanted;
      if (spec) {
        if (spec->kind == placement::GpuSpec::Kind::all)
          match = match || !i.gpus.empty();
        else if (spec->kind == placement::GpuSpec::Kind::cpu)
          match = match || i.gpus.empty();
        else
          for (int g : spec->indices) match = match || std::find(i.gpus.begin(), i.gpus.end(), g) != i.gpus.end();
      }
      if (match) targets.push_back(i);
    }
    if (targets.empty() && !req.all) {
      return nothing_to_unload(req, *config(), st.live());
    }
  }
  for (const auto& n : notes) log::warn("{}", n);

  UnloadOutcome out;
  const auto before = targets.empty() ? gpu::ProbeResult{} : probe_.read();
  for (const auto& t : targets) {
    Stopped s;
    s.rec = t;
    if (t.dead()) {
      s.was_dead = true;
      forget(t);
      out.stopped.push_back(s);
      continue;
    }
    s.freed_mib = describe(t, before, 0).memory_used_mib;
    s.still_running = !stop(t, req.timeout, s.killed);
    if (!s.still_running) forget(t);
    out.stopped.push_back(s);
  }
  const auto probe = probe_.read();
  auto lock = dir_.lock();
  std::vector<gpu::OurInstance> ours;
  if (lock) {
    std::vector<std::string> ignored;
    if (auto st = dir_.load(*lock, ignored)) ours = ours_of(st->live());
  }
  out.after = gpu::classify(probe, classify_opts(), ours, [this](int64_t pid) { return ops_.user_of(pid); });
  return out;
}

}  // namespace llamactl::runtime
