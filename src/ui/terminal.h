#pragma once
// Terminal manners in one place: colour only on a TTY, never with NO_COLOR,
// always with CLICOLOR_FORCE.

#include <string>
#include <string_view>

namespace llamactl::ui {

enum class Color { none, red, green, yellow, blue, dim, bold };

class Terminal {
 public:
  /// Decides colour for stdout from the environment.
  static Terminal for_stdout();
  explicit Terminal(bool color) : color_(color) {}
  bool color() const { return color_; }
  std::string paint(std::string_view text, Color c) const;

 private:
  bool color_;
};

/// Display width of UTF-8 text (code points; our output has no wide glyphs).
size_t display_width(std::string_view s);

}  // namespace llamactl::ui
