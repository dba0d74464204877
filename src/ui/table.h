#pragma once
// Plain text table: left-aligned columns separated by two spaces, headers
// optional. Cells may carry colour escapes; widths ignore them.

#include <string>
#include <vector>

namespace llamactl::ui {

class TextTable {
 public:
  /// One header per column; an empty first header means no header line.
  explicit TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  /// Each line indented by `indent` spaces, ending in '\n'; no trailing spaces.
  std::string render(size_t indent = 0) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace llamactl::ui
