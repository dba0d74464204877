#include "ui/table.h"

#include <algorithm>

#include "ui/terminal.h"

namespace llamactl::ui {

std::string TextTable::render(size_t indent) const {
  std::vector<size_t> width(headers_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], display_width(row[i]));
  };
  measure(headers_);
  for (const auto& r : rows_) measure(r);
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::string l(indent, ' ');
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      l += row[i];
      if (i + 1 < row.size()) l += std::string(width[i] - display_width(row[i]) + 2, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  if (!headers_.empty() && !headers_[0].empty()) line(headers_);
  for (const auto& r : rows_) line(r);
  return out;
}

}  // namespace llamactl::ui
