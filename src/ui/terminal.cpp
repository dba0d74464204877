#include "ui/terminal.h"

#include "platform/platform.h"

namespace llamactl::ui {

Terminal Terminal::for_stdout() {
  if (auto n = platform::env("NO_COLOR"); n && !n->empty()) return Terminal(false);  // no-color.org: always wins
  if (auto f = platform::env("CLICOLOR_FORCE"); f && !f->empty() && *f != "0") return Terminal(true);
  const auto term = platform::env("TERM").value_or("");
  return Terminal(platform::stdout_is_tty() && term != "dumb");
}

std::string Terminal::paint(std::string_view text, Color c) const {
  if (!color_ || c == Color::none) return std::string(text);
  const char* code = "";
  switch (c) {
    case Color::red:
      code = "\033[31m";
      break;
    case Color::green:
      code = "\033[32m";
      break;
    case Color::yellow:
      code = "\033[33m";
      break;
    case Color::blue:
      code = "\033[34m";
      break;
    case Color::dim:
      code = "\033[2m";
      break;
    case Color::bold:
      code = "\033[1m";
      break;
    case Color::none:
      break;
  }
  return std::string(code) + std::string(text) + "\033[0m";
}

size_t display_width(std::string_view s) {
  size_t n = 0;
  bool in_escape = false;
  for (unsigned char c : s) {
    if (in_escape) {
      if (c == 'm') in_escape = false;
      continue;
    }
    if (c == 0x1b) {
      in_escape = true;
      continue;
    }
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

}  // namespace llamactl::ui
