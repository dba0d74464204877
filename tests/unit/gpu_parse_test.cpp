// Parsers against every captured nvidia-smi output in fixtures/nvidia-smi,
// plus hand-made edge cases. One table row per file; odd expectations say why.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "gpu/parse.h"
#include "gpu/probe.h"
#include "platform/platform.h"
#include "util/strings.h"

using namespace llamactl;
using namespace llamactl::gpu;

namespace {

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(LLAMACTL_FIXTURES) + "/nvidia-smi/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "## name" sections of the H100 capture files.
std::string section(const std::string& text, const std::string& name) {
  std::string out;
  bool in = false;
  for (auto line : split_lines(text)) {
    if (starts_with(line, "## ")) {
      in = line.substr(3) == name;
      continue;
    }
    if (in) out += std::string(line) + "\n";
  }
  return out;
}

struct Row {
  const char* file;
  int gpus;  // -1: not a supported form, must fall back to CPU mode with a reason
  int procs;
  std::optional<int64_t> used0;  // memory.used of the first GPU
  std::optional<int64_t> total0;
  std::optional<int> util0;
};

// Short names in test listings (gtest would print the bytes of the struct).
void PrintTo(const Row& row, std::ostream* os) {
  *os << row.file;
}

const Row kRows[] = {
    {"h100-580-plain-busy.txt", 1, 1, 4111, 81559, 0},
    {"h100-580-plain-idle.txt", 1, 0, 0, 81559, 0},  // an idle H100 reads 0 MiB
    {"handmade-crlf-h100-plain-busy.txt", 1, 1, 4111, 81559, 0},
    {"gpud-525.125.06-fan-err-table.txt", 1, 0, 2021, 23028, 0},  // ERR! fan, truncated: no Processes section
    {"gpud-8xh100-550.90.07-idle-table.txt", 8, 0, 1, 81559, 0},
    {"linux-h100-mig-590.48.01-table-load.txt", 1, 3, 11125, 81559, std::nullopt},  // MIG: GPU-Util N/A
    {"linux-l40s-595.80-table-load.txt", 1, 2, 1235, 46068, 9},
    {"linux-rtx2080s-610.57.04-table-load.txt", 1, 4, 815, 8192, 8},    // 610 "KMD Version:" header; G processes count
    {"linux-rtx4080s-595.71.05-table-load.txt", 1, 7, 1474, 16376, 7},  // G and C+G desktop processes too
    {"nvidia-htop-2gpu-440.82-docker-no-processes-table.txt", 2, 0, 10916, 11175, 59},
    {"nvidia-htop-2gpu-450.57-table.txt", 2, 6, 749, 7981, 2},
    {"nvidia-htop-2gpu-450.57-long-pids-table.txt", 2, 6, 749, 7981, 2},
    // The capture repeats GPU 7's block (hand-edited upstream): kept once.
    {"nvidia-htop-8gpu-390.25-table.txt", 8, 13, 10807, 11178, 98},
    {"win-rtx2080s-591.86-wddm-table-load.txt", 1, 12, 1296, 8192, 7},
    {"win-rtx2080s-610.62-wddm-table-load.txt", 1, 21, 1366, 8192, 7},
    {"linux-h100-mig-590.48.01-query-gpu-load.csv", 1, 0, 11125, 81559, std::nullopt},
    {"win-rtx2080s-610.62-wddm-query-gpu-load.csv", 1, 0, 1366, 8192, 7},
    {"netdata-tesla-p100-query-gpu.csv", 1, 0, 0, 16383, 0},  // no total column: used + free + reserved
    {"handmade-seed-2gpu.csv", 2, 0, 1, 24564, 0},
    {"handmade-1gpu.csv", 1, 0, 0, 81559, 0},
    {"handmade-4gpu-mixed.csv", 4, 4, 2, 81920, 0},
    {"handmade-crlf-4gpu-mixed.csv", 4, 4, 2, 81920, 0},
    {"handmade-8gpu-na.csv", 8, 0, 1, 81559, 0},
    {"handmade-lost-gpu.csv", 3, 0, 5, 40960, 0},
    {"handmade-insufficient-permissions.csv", 1, 1, 20480, 81559, std::nullopt},
    // Compute-apps alone lists no GPU: CPU mode ("no GPU listed").
    {"linux-h100-mig-590.48.01-compute-apps-load.csv", -1, 0, {}, {}, {}},
    {"linux-rtx2080s-610.57.04-compute-apps-idle.csv", -1, 0, {}, {}, {}},
    {"linux-rtx4080s-595.71.05-compute-apps-load.csv", -1, 0, {}, {}, {}},
    {"win-rtx2080s-591.86-wddm-compute-apps-load.csv", -1, 0, {}, {}, {}},
    {"win-rtx2080s-610.62-wddm-compute-apps-load.csv", -1, 0, {}, {}, {}},
    // Forms llamactl does not read (XML, -q, -L, timings) must not turn into GPUs.
    {"gpud-8xrtx4090-535.154.05-q.txt", -1, 0, {}, {}, {}},
    {"win-rtx2080s-610.62-wddm-q-load.txt", -1, 0, {}, {}, {}},
    {"linux-h100-mig-590.48.01-list.txt", -1, 0, {}, {}, {}},
    {"h100-580-timing.txt", -1, 0, {}, {}, {}},
    {"netdata-a100-sxm4-510.47.03-mig.xml", -1, 0, {}, {}, {}},
    {"netdata-rtx2080-win-516.59-wddm.xml", -1, 0, {}, {}, {}},
    {"telegraf-a100-sxm4-535.54.03-mig.xml", -1, 0, {}, {}, {}},
    {"telegraf-dual-a5000-590.44.01-llama-server.xml", -1, 0, {}, {}, {}},
    {"telegraf-rtx3080-536.40-commas-in-names.xml", -1, 0, {}, {}, {}},
    {"telegraf-rtx4000-sff-ada-595.84-v13.xml", -1, 0, {}, {}, {}},
    {"handmade-empty.csv", -1, 0, {}, {}, {}},
    {"handmade-truncated.csv", -1, 0, {}, {}, {}},
    {"handmade-truncated-table.txt", -1, 0, {}, {}, {}},
};

}  // namespace

TEST(GpuParse, EveryFixtureFileHasARow) {
  // A new fixture must get an expectation here.
  std::set<std::string> listed;
  for (const auto& r : kRows) listed.insert(r.file);
  listed.insert("h100-580-queries-busy.txt");  // sectioned: tested by the Sections tests
  listed.insert("h100-580-queries-idle.txt");
  for (const auto& e : std::filesystem::directory_iterator(std::string(LLAMACTL_FIXTURES) + "/nvidia-smi")) {
    const auto name = e.path().filename().string();
    if (ends_with(name, ".md")) continue;
    EXPECT_TRUE(listed.count(name)) << name << " has no expectation in kRows";
  }
}

// The demo fixture the packages ship (fixtures/two-idle-gpus.txt, made from
// h100-580-plain-idle.txt): two GPUs, both empty, nothing running.
TEST(GpuParse, DemoFixtureHasTwoIdleGpus) {
  std::ifstream in(std::string(LLAMACTL_FIXTURES) + "/two-idle-gpus.txt", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const ProbeResult r = result_from_text(ss.str(), "two-idle-gpus.txt");
  ASSERT_FALSE(r.cpu_mode) << r.reason;
  ASSERT_EQ(r.snapshot.gpus.size(), 2u);
  EXPECT_TRUE(r.snapshot.processes.empty());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r.snapshot.gpus[i].index, static_cast<int>(i));
    EXPECT_EQ(r.snapshot.gpus[i].memory_used_mib, 0);
    EXPECT_EQ(r.snapshot.gpus[i].memory_total_mib, 81559);
  }
  EXPECT_EQ(r.snapshot.gpus[1].bus_id, "00000000:00:07.0");
}

class FixtureTable : public ::testing::TestWithParam<Row> {};

TEST_P(FixtureTable, ParsesAsExpected) {
  const Row& row = GetParam();
  const std::string text = fixture(row.file);
  const ProbeResult r = result_from_text(text, row.file);
  if (row.gpus < 0) {
    EXPECT_TRUE(r.cpu_mode) << row.file;
    EXPECT_FALSE(r.reason.empty()) << row.file;
    return;
  }
  ASSERT_FALSE(r.cpu_mode) << row.file << ": " << r.reason;
  ASSERT_EQ(static_cast<int>(r.snapshot.gpus.size()), row.gpus) << row.file;
  EXPECT_EQ(static_cast<int>(r.snapshot.processes.size()), row.procs) << row.file;
  const auto& g0 = r.snapshot.gpus.front();
  EXPECT_EQ(g0.index, 0) << row.file;
  EXPECT_EQ(g0.memory_used_mib, row.used0) << row.file;
  EXPECT_EQ(g0.memory_total_mib, row.total0) << row.file;
  EXPECT_EQ(g0.utilization_pct, row.util0) << row.file;
  for (size_t i = 1; i < r.snapshot.gpus.size(); ++i)
    EXPECT_LT(r.snapshot.gpus[i - 1].index, r.snapshot.gpus[i].index) << row.file;
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, FixtureTable, ::testing::ValuesIn(kRows), [](const auto& info) {
  std::string n = info.param.file;
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

TEST(GpuParse, H100QuerySectionsFromTheRealCapture) {
  const std::string busy = fixture("h100-580-queries-busy.txt");
  auto gpus = parse_csv(section(busy, "query-gpu busy"));
  ASSERT_TRUE(gpus.ok());
  ASSERT_EQ(gpus->gpus.size(), 1u);
  EXPECT_EQ(gpus->gpus[0].uuid, "GPU-af5e1943-4a06-ce7c-d399-cd0bad640fe9");
  EXPECT_EQ(gpus->gpus[0].name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpus->gpus[0].memory_used_mib, 4111);

  auto apps = parse_csv(section(busy, "compute-apps busy"));
  ASSERT_TRUE(apps.ok());
  ASSERT_EQ(apps->processes.size(), 1u);
  EXPECT_EQ(apps->processes[0].pid, 416);
  EXPECT_EQ(apps->processes[0].name, "python3");
  EXPECT_EQ(apps->processes[0].used_memory_mib, 4102);

  // With header and units ("4102 MiB"), selected by column name.
  auto headed = parse_csv(section(busy, "compute-apps busy header"));
  ASSERT_TRUE(headed.ok());
  ASSERT_EQ(headed->processes.size(), 1u);
  EXPECT_EQ(headed->processes[0].used_memory_mib, 4102);
  EXPECT_EQ(headed->processes[0].gpu_uuid, "GPU-af5e1943-4a06-ce7c-d399-cd0bad640fe9");
}

TEST(GpuParse, H100IdleSectionsAndErrorTexts) {
  const std::string idle = fixture("h100-580-queries-idle.txt");
  // Header with units, extra columns in another order: picked by name.
  auto headed = parse_csv(section(idle, "query-gpu csv"));
  ASSERT_TRUE(headed.ok());
  ASSERT_EQ(headed->gpus.size(), 1u);
  EXPECT_EQ(headed->gpus[0].memory_used_mib, 0);
  EXPECT_EQ(headed->gpus[0].memory_total_mib, 81559);
  EXPECT_EQ(headed->gpus[0].utilization_pct, 0);
  EXPECT_EQ(headed->gpus[0].bus_id, "00000000:00:06.0");
  auto plain = parse_csv(section(idle, "query-gpu csv noheader nounits"));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->gpus[0].uuid, "GPU-af5e1943-4a06-ce7c-d399-cd0bad640fe9");
  // The capture's own error outputs are failures, not GPUs.
  EXPECT_EQ(known_failure(section(idle, "bad gpu id")), "no NVIDIA GPU found (\"No devices were found\")");
  EXPECT_TRUE(result_from_text(section(idle, "bad field"), "t").cpu_mode);
  EXPECT_FALSE(
      known_failure("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161")
          .empty());
  EXPECT_FALSE(known_failure("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.").empty());
  EXPECT_TRUE(known_failure("0, GPU-1, x, 1, 2, 3").empty());
}

TEST(GpuParse, WindowsPathsWithSpacesAndParenthesesSurvive) {
  auto r = parse_csv(fixture("win-rtx2080s-610.62-wddm-compute-apps-load.csv"));
  ASSERT_TRUE(r.ok());
  bool found = false;
  for (const auto& p : r->processes) {
    EXPECT_FALSE(p.used_memory_mib.has_value()) << "WDDM per-process memory is [N/A], never 0";
    if (p.name == "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe") found = true;
  }
  EXPECT_TRUE(found);
}

TEST(GpuParse, NamesWithCommasParsedOutsideIn) {
  auto r = parse_csv(fixture("handmade-4gpu-mixed.csv"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->processes.size(), 4u);
  EXPECT_EQ(r->processes[3].name, "python3 -m vllm, serve, --port 8000");
  EXPECT_EQ(r->processes[3].pid, 1204);
  EXPECT_EQ(r->processes[3].used_memory_mib, 2990);
  EXPECT_EQ(r->gpu_of(r->processes[1]), 2);
}

TEST(GpuParse, NotAvailableValuesAreUnknownNotZero) {
  auto r = parse_csv(fixture("handmade-8gpu-na.csv"));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->gpus[5].memory_used_mib.has_value());
  EXPECT_EQ(r->gpus[5].memory_total_mib, 81559);
  EXPECT_FALSE(r->gpus[6].utilization_pct.has_value());
}

TEST(GpuParse, LostGpuSpoilsOnlyItself) {
  auto r = parse_csv(fixture("handmade-lost-gpu.csv"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->gpus.size(), 3u);
  EXPECT_EQ(r->gpus[1].index, 1);  // the gap between the reported GPUs
  EXPECT_EQ(r->gpus[1].error, "GPU is lost");
  EXPECT_EQ(r->gpus[1].bus_id, "0000:02:00.0");
  EXPECT_EQ(r->gpus[2].memory_used_mib, 5);
}

TEST(GpuParse, NewerLostLineNamesTheIndex) {
  auto r = parse_csv(
      "Unable to determine the device handle for GPU0: 0000:24:00.0: GPU is lost.  Reboot the system to recover this "
      "GPU\n"
      "1, GPU-2, NVIDIA A100, 3, 40960, 0\n");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->gpus.size(), 2u);
  EXPECT_EQ(r->gpus[0].index, 0);
  EXPECT_EQ(r->gpus[0].bus_id, "0000:24:00.0");
  EXPECT_EQ(r->gpus[1].index, 1);
}

TEST(GpuParse, TableProcessesWithGiCiAndTypes) {
  auto r = parse_table(fixture("win-rtx2080s-610.62-wddm-table-load.txt"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->gpus[0].name, "NVIDIA GeForce RTX 2080 ...");  // the table truncates names
  EXPECT_EQ(r->processes[0].pid, 2140);
  EXPECT_EQ(r->processes[0].type, "C+G");
  EXPECT_EQ(r->processes[0].name, "C:\\Windows\\System32\\dwm.exe");
  EXPECT_FALSE(r->processes[0].used_memory_mib.has_value());

  auto mig = parse_table(fixture("linux-h100-mig-590.48.01-table-load.txt"));
  ASSERT_TRUE(mig.ok());
  EXPECT_EQ(mig->processes[2].name, "./gpu_burn");
  EXPECT_EQ(mig->processes[2].used_memory_mib, 7484);
  EXPECT_EQ(mig->processes[2].pid, 21198);

  auto old = parse_table(fixture("nvidia-htop-8gpu-390.25-table.txt"));
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->processes[3].name, "...ware/MATLAB/matlab94/bin/glnxa64/MATLAB");
  EXPECT_EQ(old->processes[3].gpu_index, 3);
  EXPECT_EQ(old->processes[3].used_memory_mib, 389);

  auto longpid = parse_table(fixture("nvidia-htop-2gpu-450.57-long-pids-table.txt"));
  ASSERT_TRUE(longpid.ok());
  EXPECT_EQ(longpid->processes[1].pid, 1111021);
}

TEST(GpuParse, DockerTableHasProcessesSectionButNoRows) {
  auto r = parse_table(fixture("nvidia-htop-2gpu-440.82-docker-no-processes-table.txt"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->processes_known);
  EXPECT_TRUE(r->processes.empty());
  EXPECT_EQ(r->gpus[1].memory_used_mib, 149);
}

TEST(GpuParse, GarbageAndEmpty) {
  EXPECT_FALSE(parse_csv("%%% this is not csv %%%\n").ok());
  EXPECT_FALSE(parse_table("+----+\n| nothing |\n").ok());
  auto empty = parse_csv("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->gpus.empty());
  // A good row survives a bad one next to it.
  auto mixed = parse_csv("0, GPU-1, NVIDIA A100, 3, 40960, 0\n??? junk\n");
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(mixed->gpus.size(), 1u);
  EXPECT_EQ(mixed->warnings.size(), 1u);
}

TEST(GpuParse, DriverModelFromTablesAndCsv) {
  // Windows tables show the driver model where Linux tables show Persistence-M ("On"/"Off").
  EXPECT_EQ(parse_table(fixture("win-rtx2080s-610.62-wddm-table-load.txt"))->gpus[0].driver_model, "WDDM");
  EXPECT_EQ(parse_table(fixture("win-rtx2080s-591.86-wddm-table-load.txt"))->gpus[0].driver_model, "WDDM");
  EXPECT_EQ(parse_table(fixture("linux-rtx4080s-595.71.05-table-load.txt"))->gpus[0].driver_model, "");
  EXPECT_EQ(parse_table(fixture("h100-580-plain-busy.txt"))->gpus[0].driver_model, "");
  // The wide CSV picks driver_model.current by its header.
  EXPECT_EQ(parse_csv(fixture("win-rtx2080s-610.62-wddm-query-gpu-load.csv"))->gpus[0].driver_model, "WDDM");
  EXPECT_EQ(parse_csv(fixture("linux-h100-mig-590.48.01-query-gpu-load.csv"))->gpus[0].driver_model, "");  // [N/A]
  EXPECT_EQ(parse_csv(fixture("netdata-tesla-p100-query-gpu.csv"))->gpus[0].driver_model, "");  // not asked for
}

TEST(GpuParse, OwnQueryWithOrWithoutTheDriverModelColumn) {
  auto r = parse_csv(
      "0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 797, 8192, 0, WDDM\n"
      "1, GPU-t, Tesla V100-PCIE-16GB, 5, 16384, 0, TCC\n"
      "2, GPU-l, NVIDIA H100 80GB HBM3, 1, 81559, 0, [N/A]\n"            // Linux: always [N/A]
      "3, GPU-m, NVIDIA H100 80GB HBM3, 11125, 81559, [N/A], [N/A]\n");  // MIG: utilization [N/A] too
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->gpus.size(), 4u);
  EXPECT_TRUE(r->warnings.empty());
  EXPECT_EQ(r->gpus[0].driver_model, "WDDM");
  EXPECT_EQ(r->gpus[0].memory_used_mib, 797);
  EXPECT_EQ(r->gpus[0].utilization_pct, 0);
  EXPECT_EQ(r->gpus[1].driver_model, "TCC");
  EXPECT_EQ(r->gpus[2].driver_model, "");  // unknown, not a model
  EXPECT_EQ(r->gpus[2].memory_total_mib, 81559);
  EXPECT_FALSE(r->gpus[3].utilization_pct.has_value());
  EXPECT_EQ(r->gpus[3].memory_used_mib, 11125);
  // Six columns, as older mocks and saved outputs print them, still read; MIG's [N/A] utilization
  // there is the last cell of a six-column row, not a driver model.
  auto six = parse_csv("0, GPU-a, NVIDIA H100 80GB HBM3, 11125, 81559, [N/A]\n1, GPU-b, RTX, 3, 100, 9\n");
  ASSERT_TRUE(six.ok());
  ASSERT_EQ(six->gpus.size(), 2u);
  EXPECT_EQ(six->gpus[0].memory_used_mib, 11125);
  EXPECT_EQ(six->gpus[0].driver_model, "");
  EXPECT_EQ(six->gpus[1].utilization_pct, 9);
  // The query llamactl runs asks for the seventh column.
  EXPECT_NE(std::string(kQueryGpuArg).find(",driver_model.current"), std::string::npos);
}

TEST(GpuParse, ProcessesKnownOnlyWhenSomethingListsThem) {
  // A saved --query-gpu output (headed) alone says nothing about processes: on a WDDM GPU
  // the process list would otherwise "prove" that nobody is there.
  const std::string gpus = fixture("win-rtx2080s-610.62-wddm-query-gpu-load.csv");
  EXPECT_FALSE(parse_csv(gpus)->processes_known);
  EXPECT_TRUE(parse_csv(gpus + fixture("win-rtx2080s-610.62-wddm-compute-apps-load.csv"))->processes_known);
  // Headed compute-apps with no rows: listed, and nobody there.
  EXPECT_TRUE(parse_csv(gpus + "pid, process_name, used_gpu_memory [MiB]\n")->processes_known);
  // Our own header-less query: compute-apps prints nothing when no process runs.
  EXPECT_TRUE(parse_csv("0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 797, 8192, 0, WDDM\n")->processes_known);
  // A real probe: the process query ran and printed nothing, whatever form the GPU query had.
  platform::CaptureResult ok_gpus{true, false, 0, gpus, "", ""}, no_procs{true, false, 0, "", "", ""};
  EXPECT_TRUE(result_from_runs(ok_gpus, no_procs, "nvidia-smi", std::chrono::seconds(5)).snapshot.processes_known);
  platform::CaptureResult failed{true, false, 2, "Field \"x\" is not a valid field to query.", "", ""};
  EXPECT_FALSE(result_from_runs(ok_gpus, failed, "nvidia-smi", std::chrono::seconds(5)).snapshot.processes_known);
}
