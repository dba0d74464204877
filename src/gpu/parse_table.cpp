// The plain `nvidia-smi` table. Layouts differ by driver (390: no GI/CI,
// 450+: MIG M. row and GI/CI, 610: "KMD Version:" header) and by OS
// (Persistence-M vs Driver-Model), so cells are found by the '|' borders and
// tokens inside them, never by fixed columns.

#include <algorithm>

#include "gpu/parse.h"
#include "gpu/parse_detail.h"
#include "util/strings.h"

namespace llamactl::gpu {
namespace {

// "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:00:06.0 Off |   0 |" -> the cells between borders.
std::vector<std::string_view> cells(std::string_view line) {
  line = trim(line);
  if (!line.empty() && line.front() == '|') line.remove_prefix(1);
  if (!line.empty() && line.back() == '|') line.remove_suffix(1);
  return split(line, '|');
}

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    const size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool is_border(std::string_view line) {
  line = trim(line);
  return !line.empty() && line.front() == '+';
}
bool is_rule(std::string_view line) {  // "|=====+====|"
  line = trim(line);
  return starts_with(line, "|=");
}

// First row of a GPU block: index, name, then the Persistence-M or
// Driver-Model value; second cell starts with the bus id.
bool parse_gpu_first_row(std::string_view line, GpuReading& g) {
  const auto c = cells(line);
  if (c.size() < 2) return false;
  const auto t = tokens(c[0]);
  if (t.empty()) return false;
  const auto idx = parse_int(t[0]);
  if (!idx || *idx < 0) return false;
  g.index = static_cast<int>(*idx);
  size_t name_end = t.size();
  static constexpr std::string_view kModes[] = {"On", "Off", "WDDM", "TCC", "MCDM", "N/A"};
  if (t.size() >= 3 && std::find(std::begin(kModes), std::end(kModes), t.back()) != std::end(kModes)) {
    --name_end;
    // Windows tables show the driver model where Linux shows Persistence-M.
    if (t.back() == "WDDM" || t.back() == "TCC" || t.back() == "MCDM") g.driver_model = std::string(t.back());
  }
  if (name_end > 1) {
    const char* b = t[1].data();
    const char* e = t[name_end - 1].data() + t[name_end - 1].size();
    g.name = std::string(b, static_cast<size_t>(e - b));
  }
  const auto bus = tokens(c[1]);
  if (!bus.empty() && bus[0].find(':') != std::string_view::npos) g.bus_id = std::string(bus[0]);
  return true;
}

// Second row: "| N/A 31C P0 118W / 700W |  4111MiB /  81559MiB |  0%  Default |".
void parse_gpu_second_row(std::string_view line, GpuReading& g) {
  const auto c = cells(line);
  if (c.size() < 3) return;
  const auto mem = split(c[1], '/');
  if (mem.size() == 2) {
    g.memory_used_mib = parse_mib(mem[0]);
    g.memory_total_mib = parse_mib(mem[1]);
  }
  const auto util = tokens(c[2]);
  if (!util.empty()) g.utilization_pct = parse_percent(util[0]);
}

// "|    0   N/A  N/A             416      C   python3                                4102MiB |"
// "|    0      1032      C   python                                     10781MiB |" (390: no GI/CI)
bool parse_process_row(std::string_view line, bool has_gi_ci, GpuProcess& p) {
  const auto c = cells(line);
  if (c.empty()) return false;
  const std::string_view body = c[0];
  const auto t = tokens(body);
  const size_t pid_at = has_gi_ci ? 3 : 1;
  if (t.size() < pid_at + 3) return false;  // gpu [gi ci] pid type name... memory
  const auto gpu = parse_int(t[0]);
  if (!gpu) return false;
  p.gpu_index = static_cast<int>(*gpu);
  p.pid = parse_int(t[pid_at]);
  if (!p.pid && !is_unknown_token(t[pid_at])) return false;
  p.type = std::string(t[pid_at + 1]);
  const std::string_view mem = t.back();
  p.used_memory_mib = parse_mib(mem);
  if (!p.used_memory_mib && !is_unknown_token(mem)) return false;
  const char* b = t[pid_at + 2].data();
  const char* e = mem.data();
  p.name = std::string(trim(std::string_view(b, static_cast<size_t>(e - b))));
  return true;
}

enum class Section { preamble, gpus, other, process_header, processes };

}  // namespace

Result<GpuSnapshot> parse_table(std::string_view text) {
  GpuSnapshot snap;
  snap.processes_known = false;  // until a Processes section is seen
  std::vector<LostGpu> lost;
  Section section = Section::preamble;
  bool has_gi_ci = false, saw_gpu_header = false;
  GpuReading* current = nullptr;
  int block_row = 0, line_no = 0;

  for (std::string_view raw : split_lines(text)) {
    ++line_no;
    const std::string_view line = trim(raw);
    if (auto l = parse_lost_gpu_line(line)) {
      lost.push_back(*l);
      continue;
    }
    if (line.find("Processes:") != std::string_view::npos) {
      section = Section::process_header;
      snap.processes_known = true;
      has_gi_ci = false;
      continue;
    }
    if (line.find("MIG devices:") != std::string_view::npos) {
      section = Section::other;
      continue;
    }
    switch (section) {
      case Section::preamble:
        if (line.find("Bus-Id") != std::string_view::npos) saw_gpu_header = true;
        if (saw_gpu_header && is_rule(line)) {
          section = Section::gpus;
          block_row = 0;
        }
        break;
      case Section::gpus:
        if (is_border(line)) {
          block_row = 0;
          current = nullptr;
        } else if (line.empty() || line.front() != '|') {
          section = Section::other;  // blank line after the GPU blocks
        } else if (block_row == 0) {
          GpuReading g;
          if (parse_gpu_first_row(line, g)) {
            snap.gpus.push_back(std::move(g));
            current = &snap.gpus.back();
          } else {
            snap.warnings.push_back("nvidia-smi table line " + std::to_string(line_no) + " not understood");
          }
          block_row = 1;
        } else if (block_row == 1) {
          if (current) parse_gpu_second_row(line, *current);
          block_row = 2;
        }
        break;
      case Section::process_header:
        if (line.find(" GI ") != std::string_view::npos) has_gi_ci = true;
        if (is_rule(line)) section = Section::processes;
        break;
      case Section::processes: {
        if (is_border(line) || line.empty() || line.front() != '|') {
          if (!is_border(line)) section = Section::other;
          break;
        }
        if (line.find("No running processes found") != std::string_view::npos) break;
        GpuProcess p;
        if (parse_process_row(line, has_gi_ci, p))
          snap.processes.push_back(std::move(p));
        else
          snap.warnings.push_back("nvidia-smi process line " + std::to_string(line_no) + " not understood");
        break;
      }
      case Section::other:
        break;
    }
  }
  if (snap.gpus.empty() && lost.empty()) {
    if (!saw_gpu_header) return make_error(ErrorKind::parse, "no GPU table found in nvidia-smi output");
    return make_error(ErrorKind::parse, "nvidia-smi table has a header but no GPU rows");
  }
  add_lost_gpus(snap, lost);
  dedupe_gpus(snap);
  return snap;
}

}  // namespace llamactl::gpu
