#include "ui/watch.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "placement/placement.h"
#include "ui/render.h"
#include "ui/terminal.h"
#include "util/duration.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::ui {
namespace {

constexpr std::string_view kCut = "…";
constexpr std::string_view kGap = "·";
constexpr std::string_view kLevels[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
constexpr size_t kNameMin = 12;  // names shrink to this before fields are dropped
constexpr size_t kBarMax = 40;
constexpr size_t kLabel = 5;  // width of "GPU 0": instance lines line up with GPU names

// A piece of a line: plain text (never an escape) and its colour, painted last.
struct Seg {
  std::string text;
  Color color = Color::none;
};
using Segs = std::vector<Seg>;

// When the frame is too tall, rows go from the last level up, bottom first.
enum class Keep { always, bar, detail, process, spacer };

struct Row {
  Segs segs;
  Keep keep = Keep::always;
};

size_t width(const Segs& segs) {
  size_t w = 0;
  for (const auto& s : segs) w += display_width(s.text);
  return w;
}

std::string repeat(std::string_view glyph, size_t n) {
  std::string out;
  out.reserve(glyph.size() * n);
  for (size_t i = 0; i < n; ++i) out += glyph;
  return out;
}

// Byte offset of column `col` (plain text: one column per code point).
size_t byte_at(std::string_view s, size_t col) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    if (n++ == col) return i;
  }
  return s.size();
}

std::string cut_end(std::string_view s, size_t w) {
  if (display_width(s) <= w) return std::string(s);
  if (w == 0) return "";
  std::string_view keep = s.substr(0, byte_at(s, w - 1));
  while (!keep.empty() && keep.back() == ' ') keep.remove_suffix(1);  // "NVIDIA…", not "NVIDIA …"
  return std::string(keep) + std::string(kCut);
}

// "…/bin/python3": the start of a path goes first.
std::string cut_start(std::string_view s, size_t w) {
  const size_t have = display_width(s);
  if (have <= w) return std::string(s);
  if (w == 0) return "";
  std::string_view keep = s.substr(byte_at(s, have - (w - 1)));
  while (!keep.empty() && keep.front() == ' ') keep.remove_prefix(1);
  return std::string(kCut) + std::string(keep);
}

// The last resort: the line cut at `cols` with "…".
void cut_segs(Segs& segs, size_t cols) {
  if (width(segs) <= cols) return;
  Segs out;
  size_t left = cols == 0 ? 0 : cols - 1;
  for (auto& s : segs) {
    const size_t w = display_width(s.text);
    if (w > left) {
      s.text.resize(byte_at(s.text, left));
      out.push_back(std::move(s));
      break;
    }
    left -= w;
    out.push_back(std::move(s));
  }
  if (cols > 0) out.push_back({std::string(kCut)});
  segs = std::move(out);
}

enum class Cut { none, end, start };

// One item of a line of items separated by two spaces.
struct Field {
  std::string text;
  Color color = Color::none;
  int drop = 0;  // 0: kept; too wide: the highest rank goes first, 3 and up before names are cut
  Cut cut = Cut::none;
  size_t floor = kNameMin;  // a name shrinks to this before ranked fields go
};

size_t width(const std::string& indent, const std::vector<Field>& fields) {
  size_t w = display_width(indent);
  for (size_t i = 0; i < fields.size(); ++i) w += (i ? 2 : 0) + display_width(fields[i].text);
  return w;
}

// Shrinks names, first to last, each down to its floor (or to `floor` when given).
void shrink_names(const std::string& indent, std::vector<Field>& fields, size_t cols,
                  std::optional<size_t> floor = std::nullopt) {
  for (auto& f : fields) {
    const size_t w = width(indent, fields);
    if (w <= cols) return;
    const size_t have = display_width(f.text);
    const size_t least = floor.value_or(f.floor);
    if (f.cut == Cut::none || have <= least) continue;
    const size_t want = std::max(least, have - std::min(have, w - cols));
    f.text = f.cut == Cut::end ? cut_end(f.text, want) : cut_start(f.text, want);
  }
}

// Drops fields of rank `min_rank` or more, the highest first, until the line fits.
void drop_fields(const std::string& indent, std::vector<Field>& fields, size_t cols, int min_rank) {
  while (width(indent, fields) > cols) {
    size_t worst = fields.size();
    for (size_t i = 0; i < fields.size(); ++i)
      if (fields[i].drop >= min_rank && (worst == fields.size() || fields[i].drop >= fields[worst].drop)) worst = i;
    if (worst == fields.size()) return;
    fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(worst));
  }
}

// Fits a line of fields into `cols`: minor fields (rank 3 and up) go, then
// names shrink to their floor, then the other ranked fields go, then names
// shrink to 4 columns, then the line is cut.
Segs fit(const std::string& indent, std::vector<Field> fields, size_t cols) {
  drop_fields(indent, fields, cols, 3);
  shrink_names(indent, fields, cols);
  drop_fields(indent, fields, cols, 1);
  shrink_names(indent, fields, cols, 4);
  Segs s{{indent}};
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) s.push_back({"  "});
    s.push_back({fields[i].text, fields[i].color});
  }
  cut_segs(s, cols);
  return s;
}

std::string pad(std::string s, size_t w) {
  const size_t have = display_width(s);
  if (have < w) s.append(w - have, ' ');
  return s;
}

// ---- pieces of a GPU block ----

struct Geometry {
  size_t nums = 0;   // width of the "used / total MiB (p%)" column
  size_t bar = 0;    // cells inside the brackets; 0: no bar
  size_t spark = 0;  // 0: no sparkline
};

// "  [bar]  nums  util  p%  spark": the bar and the sparkline share what the
// numbers leave; below 8 cells each the sparkline goes, then the bar.
Geometry geometry(size_t cols, size_t nums, size_t max_samples) {
  Geometry g;
  g.nums = nums;
  const size_t fixed = 2 + nums + 2 + 9;  // indent, numbers, "util 100%"
  const size_t rest = cols > fixed ? cols - fixed : 0;
  if (rest >= (8 + 4) + (8 + 2)) {  // "[" bar "]  " and "  " spark
    g.bar = std::min(kBarMax, (rest - 6) / 2);
    g.spark = std::min(max_samples, rest - 6 - g.bar);
  } else if (rest >= 3 + 4) {
    g.bar = std::min(kBarMax, rest - 4);
  }
  return g;
}

std::string memory_cell(const gpu::GpuStatus& g, bool reading_ok) {
  return memory_text(reading_ok ? g.reading.memory_used_mib : std::nullopt, g.reading.memory_total_mib);
}

void append_bar(Segs& s, std::optional<int64_t> used, std::optional<int64_t> total, size_t cells) {
  s.push_back({"["});
  if (!used || !total || *total <= 0) {
    s.push_back({std::string(cells, ' ')});
  } else {
    const int64_t u = std::clamp<int64_t>(*used, 0, *total);
    const auto n = static_cast<int64_t>(cells);
    const auto fill = static_cast<size_t>((u * n * 2 + *total) / (2 * *total));
    const int64_t pct = u * 100 / *total;
    const Color c = pct >= 90 ? Color::red : pct >= 60 ? Color::yellow : Color::green;
    s.push_back({repeat("█", fill), c});
    s.push_back({repeat("░", cells - fill), Color::dim});
  }
  s.push_back({"]  "});
}

Segs memory_row(const gpu::GpuStatus& g, const WatchFrame& f, const WatchHistory& h, const Geometry& geo) {
  Segs s{{"  "}};
  if (geo.bar > 0)
    append_bar(s, f.reading_ok ? g.reading.memory_used_mib : std::nullopt, g.reading.memory_total_mib, geo.bar);
  s.push_back({pad(memory_cell(g, f.reading_ok), geo.nums)});
  const auto util = f.reading_ok ? g.reading.utilization_pct : std::nullopt;
  const std::string pct = util ? std::to_string(*util) + "%" : "n/a";
  s.push_back({"  util " + std::string(pct.size() < 4 ? 4 - pct.size() : 0, ' ') + pct});
  if (geo.spark > 0)
    if (const auto* series = h.used(g.reading.index); series && !series->empty())
      s.push_back({"  " + sparkline(*series, geo.spark, g.reading.memory_total_mib)});
  return s;
}

Field state_field(const gpu::GpuStatus& g, bool reading_ok) {
  if (!reading_ok) return {"no reading", Color::red};
  switch (g.state) {
    case gpu::GpuState::idle:
      return {"idle", Color::green};
    case gpu::GpuState::model_loaded:
      return {"ours: " + printable(g.model_name.value_or("?")), Color::blue, 0, Cut::end};
    case gpu::GpuState::occupied_by_others:
      return {"occupied by others", Color::yellow};
    case gpu::GpuState::unavailable:
      return {"unavailable" + (g.reading.error.empty() ? std::string() : " (" + printable(g.reading.error) + ")"),
              Color::red, 0, Cut::end};
    case gpu::GpuState::not_ours:
      return {"not ours to use", Color::dim};
  }
  return {"?"};
}

Color state_color(const std::string& state) {
  if (state == "running") return Color::green;
  if (state == "starting") return Color::yellow;
  return Color::red;
}

std::string reap_text(const runtime::InstanceView& i, int64_t now) {
  if (!i.expires_at_ms) return "never reaped";
  if (i.no_reaper) return "no serve runs to reap it";
  if (*i.expires_at_ms <= now) return "reap due";
  return "reaped in " + human_duration_s((*i.expires_at_ms - now) / 1000);
}

// Model, state, port, pid, uptime, time until reaped; for a dead record when
// it died and how. When narrow, uptime and pid go before the model name is
// cut; then the state and the time until reaped.
std::vector<Field> instance_fields(const runtime::InstanceView& i, int64_t now) {
  std::vector<Field> f{{printable(i.rec.model), Color::blue, 0, Cut::end}};
  if (i.state == "dead") {
    f.push_back({"pid " + std::to_string(i.rec.pid), Color::none, 2});
    if (i.rec.exit_code) f.push_back({"exit code " + std::to_string(*i.rec.exit_code), Color::none, 1});
    if (i.rec.died_at_ms)
      f.push_back({"died " + human_duration_s((now - *i.rec.died_at_ms) / 1000) + " ago", Color::none, 3});
    return f;
  }
  f.push_back({i.state, state_color(i.state), 2});
  f.push_back({"port " + std::to_string(i.rec.port)});
  f.push_back({"pid " + std::to_string(i.rec.pid), Color::none, 3});
  f.push_back({"up " + human_duration_s(i.uptime_s), Color::none, 4});
  f.push_back({reap_text(i, now), Color::none, 1});
  return f;
}

std::vector<Field> process_fields(const gpu::ProcessInfo& p) {
  std::vector<Field> f{{p.pid ? "pid " + std::to_string(*p.pid) : "pid ?"},
                       {p.name.empty() ? "(no name)" : printable(p.name), Color::none, 0, Cut::start},
                       {p.used_memory_mib ? std::to_string(*p.used_memory_mib) + " MiB" : "n/a"}};
  if (p.user) f.push_back({"user " + printable(*p.user), Color::none, 1});
  return f;
}

bool on_gpu(const runtime::InstanceView& i, int index) {
  return i.state != "dead" && std::find(i.rec.gpus.begin(), i.rec.gpus.end(), index) != i.rec.gpus.end();
}

void gpu_block(const gpu::GpuStatus& g, const WatchFrame& f, const WatchHistory& h, const Geometry& geo, size_t cols,
               std::vector<Row>& rows) {
  const int idx = g.reading.index;
  const std::string name = g.reading.name.empty() ? "?" : printable(g.reading.name);
  // The GPU's name gives way before the state ("ours: <model>"): machines mostly hold one kind of GPU.
  rows.push_back({fit(
      "",
      {{"GPU " + std::to_string(idx), Color::bold}, {name, Color::none, 0, Cut::end, 6}, state_field(g, f.reading_ok)},
      cols)});
  rows.push_back({memory_row(g, f, h, geo), Keep::bar});
  // The title names the model already ("ours: llama-7b").
  const bool titled = f.reading_ok && g.state == gpu::GpuState::model_loaded && g.model_name;
  for (const auto& i : f.view.instances) {
    if (!on_gpu(i, idx)) continue;
    auto fields = instance_fields(i, f.now_ms);
    if (titled && *g.model_name == i.rec.model) fields.erase(fields.begin());
    rows.push_back({fit("  ", std::move(fields), cols), Keep::detail});
  }
  // After a failed reading the process list is stale: not shown.
  if (!f.reading_ok) return;
  if (g.state != gpu::GpuState::occupied_by_others && g.state != gpu::GpuState::model_loaded) return;
  for (const auto& p : g.processes)
    if (!p.ours) rows.push_back({fit("  ", process_fields(p), cols), Keep::process});
}

// "CPU    tiny  running  port 8082 ...": instances that no GPU block shows.
Row instance_row(const runtime::InstanceView& i, int64_t now, size_t cols) {
  Field label{"CPU", Color::bold};
  if (i.state == "dead")
    label = {"dead", Color::red};
  else if (!i.rec.gpus.empty())
    label = {"GPU " + placement::gpus_text(i.rec.gpus), Color::bold};
  label.text = pad(label.text, kLabel);
  auto fields = instance_fields(i, now);
  fields.insert(fields.begin(), label);
  return {fit("", std::move(fields), cols)};
}

// ---- the frame ----

void header(const WatchFrame& f, std::vector<Row>& rows) {
  const auto& v = f.view.gpus;
  if (!f.reading_ok) {
    const std::string n = v.gpus.empty() ? "n/a" : std::to_string(v.gpus.size());
    rows.push_back({{{"Total GPUs: " + n, Color::bold}}});
    rows.push_back({{{"  reading failed: " + printable(f.reading_error.empty() ? "no reason given" : f.reading_error),
                      Color::red}}});
    return;
  }
  if (v.cpu_mode || v.gpus.empty()) {
    // The same words as `gpus`.
    const std::string text = render_gpus(v, Terminal(false));
    for (auto line : split_lines(text)) rows.push_back({{{printable(line)}}});
    return;
  }
  rows.push_back({{{"Total GPUs: " + std::to_string(v.gpus.size()), Color::bold}}});
}

void body(const WatchFrame& f, const WatchHistory& h, size_t cols, std::vector<Row>& rows) {
  const auto& gpus = f.view.gpus.gpus;
  size_t nums = 0;
  for (const auto& g : gpus) nums = std::max(nums, display_width(memory_cell(g, f.reading_ok)));
  const Geometry geo = geometry(cols, nums, h.max_samples());
  for (const auto& g : gpus) {
    rows.push_back({{}, Keep::spacer});
    gpu_block(g, f, h, geo, cols, rows);
  }
  auto shown = [&](const runtime::InstanceView& i) {
    return std::any_of(gpus.begin(), gpus.end(), [&](const gpu::GpuStatus& g) { return on_gpu(i, g.reading.index); });
  };
  bool first = true;
  for (bool dead : {false, true}) {
    for (const auto& i : f.view.instances) {
      if ((i.state == "dead") != dead || shown(i)) continue;
      if (std::exchange(first, false)) rows.push_back({{}, Keep::spacer});
      rows.push_back(instance_row(i, f.now_ms, cols));
    }
  }
  if (gpus.empty() && first) {
    rows.push_back({{}, Keep::spacer});
    rows.push_back({{{"No instances.", Color::dim}}});
  }
}

Segs footer(const WatchFrame& f, size_t cols) {
  const std::string at = (f.read_at_ms > 0 ? iso8601(f.read_at_ms).substr(11, 8) : "--:--:--") + " UTC";
  const std::string every = ", every " + format_duration_ms(f.interval_ms);
  const std::string keys = "q quit  r refresh";
  for (const std::string& left : {"reading at " + at + every, at + every, at})
    if (display_width(left) + 3 + keys.size() <= cols) return {{left + "   " + keys, Color::dim}};
  Segs s{{keys, Color::dim}};
  cut_segs(s, cols);
  return s;
}

// Drops rows until the frame fits (see render_watch); rows[0] is the first
// header line and rows.back() the footer.
std::vector<Row> limit(std::vector<Row> rows, size_t max_rows) {
  for (Keep level : {Keep::spacer, Keep::process, Keep::detail, Keep::bar})
    for (size_t i = rows.size(); i-- > 0 && rows.size() > max_rows;)
      if (rows[i].keep == level) rows.erase(rows.begin() + static_cast<std::ptrdiff_t>(i));
  if (rows.size() <= max_rows) return rows;
  if (max_rows == 1) return {rows.front()};
  std::vector<Row> out(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(max_rows - 1));
  const size_t middle = rows.size() - 2;  // between the first line and the footer
  const size_t kept = max_rows - 2;       // of those, the last one becomes the count
  if (kept > 0) out.back() = {{{"… " + std::to_string(middle - (kept - 1)) + " more lines", Color::dim}}};
  out.push_back(rows.back());
  return out;
}

}  // namespace

WatchHistory::WatchHistory(size_t max_samples) : max_(std::max<size_t>(1, max_samples)) {}

void WatchHistory::add(const gpu::GpuView& gpus) {
  // A GPU seen for the first time gets gaps for the readings before it, so
  // sample k of every series is the same reading.
  for (const auto& g : gpus.gpus) used_.try_emplace(g.reading.index, samples_, std::nullopt);
  for (auto& [idx, series] : used_) {
    const auto* g = gpus.find(idx);
    series.push_back(g && g->reading.error.empty() ? g->reading.memory_used_mib : std::nullopt);
    if (series.size() > max_) series.erase(series.begin());
  }
  samples_ = std::min(samples_ + 1, max_);
}

const std::vector<std::optional<int64_t>>* WatchHistory::used(int gpu_index) const {
  const auto it = used_.find(gpu_index);
  return it == used_.end() ? nullptr : &it->second;
}

std::string sparkline(const std::vector<std::optional<int64_t>>& samples, size_t width,
                      std::optional<int64_t> full_scale) {
  const size_t from = samples.size() - std::min(width, samples.size());
  int64_t scale = full_scale && *full_scale > 0 ? *full_scale : 0;
  if (scale == 0)
    for (size_t i = from; i < samples.size(); ++i) scale = std::max(scale, samples[i].value_or(0));
  std::string out;
  for (size_t i = from; i < samples.size(); ++i) {
    if (!samples[i]) {
      out += kGap;
      continue;
    }
    const int64_t level = scale > 0 ? std::clamp<int64_t>(*samples[i], 0, scale) * 8 / scale : 0;
    out += kLevels[std::min<int64_t>(level, 7)];
  }
  return out;
}

std::string render_watch(const WatchFrame& f, const WatchHistory& h, WatchSize size, bool color) {
  if (size.cols < 1 || size.rows < 1) return "";
  const auto cols = static_cast<size_t>(size.cols);
  std::vector<Row> rows;
  header(f, rows);
  body(f, h, cols, rows);
  rows.push_back({{}, Keep::spacer});
  rows.push_back({footer(f, cols)});
  const Terminal term(color);
  std::string out;
  for (auto& r : limit(std::move(rows), static_cast<size_t>(size.rows))) {
    cut_segs(r.segs, cols);
    for (const auto& s : r.segs)
      if (!s.text.empty()) out += term.paint(s.text, s.color);
    out += '\n';
  }
  return out;
}

std::string screen_update(const std::string& frame, WatchSize size) {
  std::string out = "\x1b[H";
  const auto lines = split_lines(frame);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\r\n";
    out += lines[i];
    if (static_cast<int64_t>(display_width(lines[i])) < size.cols) out += "\x1b[K";
  }
  if (static_cast<int64_t>(lines.size()) < size.rows) out += "\x1b[" + std::to_string(lines.size() + 1) + ";1H\x1b[J";
  return out;
}

}  // namespace llamactl::ui
