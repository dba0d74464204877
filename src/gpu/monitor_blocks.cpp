// The pure part of GpuMonitor: `nvidia-smi ... -lms N` lines -> one block
// per interval, in the form the one-shot queries print (see monitor.h).

#include <algorithm>

#include "gpu/monitor.h"
#include "util/strings.h"

namespace llamactl::gpu {
namespace {

using namespace std::chrono_literals;

// Before a stream's first line nvidia-smi initialises NVML (~25 ms on an
// H100; longer on a busy host with many GPUs): silence then is not yet "no process".
constexpr std::chrono::milliseconds kStartupAllowance = 250ms;

std::optional<int64_t> leading_index(std::string_view rest) {
  return parse_int(split(rest, ',')[0]);
}

}  // namespace

StampedLine split_timestamp(std::string_view line) {
  // nvidia-smi's timestamp field: "YYYY/MM/DD HH:MM:SS.mmm" (d: a digit), then ", ".
  static constexpr std::string_view kShape = "dddd/dd/dd dd:dd:dd.ddd";
  bool ok = line.size() > kShape.size() && line[kShape.size()] == ',';
  for (size_t i = 0; ok && i < kShape.size(); ++i)
    ok = kShape[i] == 'd' ? (line[i] >= '0' && line[i] <= '9') : line[i] == kShape[i];
  if (!ok) return {"", std::string(line)};
  return {std::string(line.substr(0, kShape.size())), std::string(trim(line.substr(kShape.size() + 1)))};
}

BlockAssembler::BlockAssembler(StreamKind kind, std::chrono::milliseconds interval, Clock::time_point started)
    : kind_(kind),
      // nvidia-smi writes one interval's lines at once; a gap of a quarter
      // interval after them means the block is whole.
      quiet_(std::clamp<std::chrono::milliseconds>(interval / 4, 10ms, 100ms)),
      empty_after_(2 * interval),
      last_line_at_(started + kStartupAllowance) {}

std::vector<std::string> BlockAssembler::add(std::string_view line, Clock::time_point now) {
  if (trim(line).empty()) return {};
  last_line_at_ = now;
  empty_sent_ = false;
  StampedLine l = split_timestamp(line);
  if (kind_ == StreamKind::apps) return add_app_row(std::move(l.rest), l.timestamp);
  // Lines without a timestamp ("GPU is lost") have no index either.
  const auto index = l.timestamp.empty() ? std::nullopt : leading_index(l.rest);
  return add_gpu_row(std::move(l.rest), index);
}

// GPU rows: each row may carry its own timestamp (one query per GPU), so
// timestamps do not delimit a round. Rows come in index order, so a row whose
// index is not above the previous one starts the next round. Waiting for that
// row would make every reading one interval late, so a block is also complete
// once it has as many lines as the previous one; should a GPU appear, its
// row (a higher index right after) reopens that block, which comes again.
std::vector<std::string> BlockAssembler::add_gpu_row(std::string rest, std::optional<int64_t> index) {
  std::vector<std::string> out;
  if (!open_.empty()) {
    if (index && open_index_ && *index <= *open_index_) out.push_back(complete());
  } else if (index && last_index_ && !last_.empty() && *index > *last_index_) {
    reopen_last();
  }
  if (open_.empty()) last_.clear();  // a new round: the last block is final
  open_.push_back(std::move(rest));
  if (index) open_index_ = index;
  if (expected_ > 0 && open_.size() >= expected_) out.push_back(complete());
  return out;
}

// Process rows: all rows of one interval share one timestamp, so a new
// timestamp starts the next block; a quiet gap completes it sooner (tick).
// A late row with the timestamp of the block just completed reopens it.
std::vector<std::string> BlockAssembler::add_app_row(std::string rest, const std::string& stamp) {
  std::vector<std::string> out;
  if (!open_.empty()) {
    if (!stamp.empty() && !open_stamp_.empty() && stamp != open_stamp_) out.push_back(complete());
  } else if (!stamp.empty() && !last_.empty() && stamp == last_stamp_) {
    reopen_last();
  }
  if (open_.empty()) last_.clear();
  if (open_stamp_.empty() && !stamp.empty()) {
    open_stamp_ = stamp;
    ++rounds_;
  }
  open_.push_back(std::move(rest));
  return out;
}

std::vector<std::string> BlockAssembler::tick(Clock::time_point now) {
  std::vector<std::string> out;
  if (!open_.empty()) {
    if (now - last_line_at_ >= quiet_) out.push_back(complete());
  } else if (kind_ == StreamKind::apps && !empty_sent_ && now - last_line_at_ >= empty_after_) {
    // nvidia-smi prints nothing at all for an interval without a process:
    // two intervals of silence mean the list is empty.
    empty_sent_ = true;
    last_.clear();
    out.emplace_back();
  }
  return out;
}

std::optional<std::string> BlockAssembler::finish() {
  if (open_.empty()) return std::nullopt;
  return complete();
}

BlockAssembler::Clock::time_point BlockAssembler::next_deadline() const {
  if (!open_.empty()) return last_line_at_ + quiet_;
  if (kind_ == StreamKind::apps && !empty_sent_) return last_line_at_ + empty_after_;
  return Clock::time_point::max();
}

void BlockAssembler::reopen_last() {
  open_ = std::move(last_);
  open_index_ = last_index_;
  open_stamp_ = last_stamp_;
  amending_ = true;
  last_.clear();
}

std::string BlockAssembler::complete() {
  std::string text;
  for (const auto& l : open_) text += l + "\n";
  if (kind_ == StreamKind::gpus) {
    if (!amending_) ++rounds_;
    expected_ = open_.size();
  }
  last_ = std::move(open_);
  last_index_ = open_index_;
  last_stamp_ = open_stamp_;
  open_.clear();
  open_index_.reset();
  open_stamp_.clear();
  amending_ = false;
  return text;
}

}  // namespace llamactl::gpu
