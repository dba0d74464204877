// CSV forms of nvidia-smi: --query-gpu and --query-compute-apps, with or
// without header/units, alone or concatenated.

#include <algorithm>

#include "gpu/parse.h"
#include "gpu/parse_detail.h"
#include "util/strings.h"

namespace llamactl::gpu {
namespace {

enum class Table { none, gpus, apps };

// Header cell "memory.used [MiB]" -> "memory.used".
std::string column_name(std::string_view cell) {
  cell = trim(cell);
  const size_t bracket = cell.find(" [");
  if (bracket != std::string_view::npos) cell = cell.substr(0, bracket);
  return to_lower(trim(cell));
}

// Field names are lowercase words with dots and underscores ("memory.used").
bool looks_like_field(const std::string& c) {
  if (c.empty()) return false;
  for (char ch : c)
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_')) return false;
  return true;
}

Table header_kind(const std::vector<std::string>& cols) {
  if (!std::all_of(cols.begin(), cols.end(), looks_like_field)) return Table::none;
  const auto has = [&](std::string_view c) { return std::find(cols.begin(), cols.end(), c) != cols.end(); };
  if (has("pid") && (has("process_name") || has("used_gpu_memory") || has("used_memory") || has("gpu_uuid")))
    return Table::apps;
  if (has("memory.used") || has("memory.total") || has("index") || has("utilization.gpu")) return Table::gpus;
  return Table::none;
}

// Header-less GPU rows are llamactl's own query (probe.h): seven columns, or
// the six it asked for before driver_model.current, as older mocks and saved
// outputs print them.
const std::vector<std::string> kDefaultGpuColumns = {
    "index", "uuid", "name", "memory.used", "memory.total", "utilization.gpu", "driver_model.current"};
const std::vector<std::string> kSixGpuColumns(kDefaultGpuColumns.begin(), kDefaultGpuColumns.end() - 1);
const std::vector<std::string> kDefaultAppColumns = {"gpu_uuid", "pid", "process_name", "used_gpu_memory"};

// "WDDM", "TCC", "MCDM" on Windows, "[N/A]" on Linux: the last cell of a
// seven-column row. A six-column row ends with utilization, a number.
const std::vector<std::string>& default_gpu_columns(std::string_view row) {
  const auto parts = split(row, ',');
  const std::string_view last = trim(parts.back());
  const bool model = is_unknown_token(last) || last == "WDDM" || last == "TCC" || last == "MCDM";
  return parts.size() >= kDefaultGpuColumns.size() && model ? kDefaultGpuColumns : kSixGpuColumns;
}

// Splits a row into exactly cols.size() cells. The cell at `wide` (a name)
// takes whatever extra commas the row has: fields left of it are counted
// from the left, fields right of it from the right ("outside in").
std::optional<std::vector<std::string_view>> cells_outside_in(std::string_view row, size_t ncols,
                                                              std::optional<size_t> wide) {
  std::vector<std::string_view> parts = split(row, ',');
  if (parts.size() == ncols) {
    for (auto& p : parts) p = trim(p);
    return parts;
  }
  if (parts.size() < ncols || !wide) return std::nullopt;
  const size_t left = *wide, right = ncols - *wide - 1;
  // Byte offsets: the wide cell starts after the left-th comma and ends
  // before the right-th comma from the end.
  size_t begin = 0;
  for (size_t i = 0; i < left; ++i) begin = row.find(',', begin) + 1;
  size_t end = row.size();
  for (size_t i = 0; i < right; ++i) end = row.rfind(',', end - 1);
  std::vector<std::string_view> out;
  for (size_t i = 0; i < left; ++i) out.push_back(trim(parts[i]));
  out.push_back(trim(row.substr(begin, end - begin)));
  for (size_t i = parts.size() - right; i < parts.size(); ++i) out.push_back(trim(parts[i]));
  return out;
}

std::optional<size_t> column_index(const std::vector<std::string>& cols,
                                   std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    const auto it = std::find(cols.begin(), cols.end(), n);
    if (it != cols.end()) return static_cast<size_t>(it - cols.begin());
  }
  return std::nullopt;
}

std::string_view cell(const std::vector<std::string_view>& cells, std::optional<size_t> i) {
  return i && *i < cells.size() ? cells[*i] : std::string_view{};
}

std::string known_or_empty(std::string_view s) {
  return is_unknown_token(s) ? std::string{} : std::string(s);
}

bool parse_gpu_row(std::string_view row, const std::vector<std::string>& cols, int ordinal, GpuReading& out) {
  const auto name_col = column_index(cols, {"name", "gpu_name"});
  const auto cells = cells_outside_in(row, cols.size(), name_col);
  if (!cells) return false;
  const auto idx_col = column_index(cols, {"index"});
  if (idx_col) {
    const auto idx = parse_int(cell(*cells, idx_col));
    if (!idx || *idx < 0 || *idx > 1023) return false;
    out.index = static_cast<int>(*idx);
  } else {
    out.index = ordinal;  // no index column (e.g. netdata's query): row order is nvidia-smi's order
  }
  out.uuid = known_or_empty(cell(*cells, column_index(cols, {"uuid", "gpu_uuid"})));
  out.name = known_or_empty(cell(*cells, name_col));
  out.bus_id = known_or_empty(cell(*cells, column_index(cols, {"pci.bus_id", "gpu_bus_id"})));
  out.memory_used_mib = parse_mib(cell(*cells, column_index(cols, {"memory.used"})));
  out.memory_total_mib = parse_mib(cell(*cells, column_index(cols, {"memory.total"})));
  if (!out.memory_total_mib && out.memory_used_mib) {
    // Some queries give free (+ reserved) instead of total.
    const auto free = parse_mib(cell(*cells, column_index(cols, {"memory.free"})));
    const auto reserved = parse_mib(cell(*cells, column_index(cols, {"memory.reserved"})));
    if (free) out.memory_total_mib = *out.memory_used_mib + *free + reserved.value_or(0);
  }
  out.utilization_pct = parse_percent(cell(*cells, column_index(cols, {"utilization.gpu"})));
  out.driver_model = known_or_empty(cell(*cells, column_index(cols, {"driver_model.current"})));
  // A row needs at least something that identifies a GPU and one reading column.
  return idx_col || !out.uuid.empty() || !out.name.empty();
}

bool parse_app_row(std::string_view row, const std::vector<std::string>& cols, GpuProcess& out) {
  const auto name_col = column_index(cols, {"process_name", "name"});
  const auto cells = cells_outside_in(row, cols.size(), name_col);
  if (!cells) return false;
  const auto pid_text = cell(*cells, column_index(cols, {"pid"}));
  out.pid = parse_int(pid_text);
  // "[Insufficient Permissions]" pid keeps the row (memory still counts); anything else must be a number.
  if (!out.pid && !is_unknown_token(pid_text)) return false;
  out.gpu_uuid = known_or_empty(cell(*cells, column_index(cols, {"gpu_uuid"})));
  out.name = std::string(cell(*cells, name_col));
  if (is_unknown_token(out.name) && !out.name.empty() && out.name.front() == '[') out.name.clear();
  const auto mem_text = cell(*cells, column_index(cols, {"used_gpu_memory", "used_memory"}));
  out.used_memory_mib = parse_mib(mem_text);
  if (!out.used_memory_mib && !is_unknown_token(mem_text)) return false;
  return true;
}

bool parse_row(std::string_view line, Table kind, const std::vector<std::string>& cols, int& gpu_ordinal,
               GpuSnapshot& snap) {
  if (kind == Table::gpus) {
    GpuReading g;
    if (!parse_gpu_row(line, cols, gpu_ordinal, g)) return false;
    ++gpu_ordinal;
    snap.gpus.push_back(std::move(g));
    return true;
  }
  GpuProcess p;
  if (!parse_app_row(line, cols, p)) return false;
  snap.processes.push_back(std::move(p));
  return true;
}

std::string quote_line(std::string_view line) {
  line = trim(line);
  std::string s(line.substr(0, 80));
  if (line.size() > 80) s += "...";
  return "'" + s + "'";
}

}  // namespace

Result<GpuSnapshot> parse_csv(std::string_view text) {
  GpuSnapshot snap;
  std::vector<LostGpu> lost;
  Table current = Table::none;
  std::vector<std::string> cols;
  int understood = 0, gpu_ordinal = 0, line_no = 0;
  bool gpu_header = false, apps_header = false;
  std::string first_bad;

  for (std::string_view raw : split_lines(text)) {
    ++line_no;
    const std::string_view line = trim(raw);
    if (line.empty()) continue;
    if (auto l = parse_lost_gpu_line(line)) {
      lost.push_back(*l);
      ++understood;
      continue;
    }
    // A header line switches the table the following rows belong to.
    std::vector<std::string> header;
    for (auto c : split(line, ',')) header.push_back(column_name(c));
    if (const Table kind = header_kind(header); kind != Table::none && !parse_int(split(line, ',')[0])) {
      current = kind;
      if (kind == Table::gpus)
        gpu_header = true;
      else
        apps_header = true;
      cols = std::move(header);
      ++understood;
      continue;
    }
    bool ok = false;
    if (current != Table::none) ok = parse_row(line, current, cols, gpu_ordinal, snap);
    if (!ok) {
      // No header (our own queries), or a header-less block after a headed one:
      // GPU rows start with an index, app rows with a uuid.
      const std::string_view first = trim(split(line, ',')[0]);
      if (parse_int(first))
        ok = parse_row(line, Table::gpus, default_gpu_columns(line), gpu_ordinal, snap);
      else if (starts_with(first, "GPU-") || starts_with(first, "MIG-"))
        ok = parse_row(line, Table::apps, kDefaultAppColumns, gpu_ordinal, snap);
    }
    if (ok) {
      ++understood;
    } else {
      if (first_bad.empty()) first_bad = quote_line(line);
      snap.warnings.push_back("nvidia-smi line " + std::to_string(line_no) + " not understood: " + quote_line(line));
    }
  }
  if (understood == 0 && !first_bad.empty())
    return make_error(ErrorKind::parse, "unrecognised nvidia-smi output: " + first_bad);
  // A saved --query-gpu output alone says nothing about processes. (Our own
  // header-less compute-apps query prints nothing when there are none.)
  if (gpu_header && !apps_header && snap.processes.empty()) snap.processes_known = false;
  add_lost_gpus(snap, lost);
  dedupe_gpus(snap);
  return snap;
}

}  // namespace llamactl::gpu
