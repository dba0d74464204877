// libFuzzer target: keep_alive values come from config files and HTTP bodies.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "util/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = llamactl::parse_duration_ms(std::string_view(reinterpret_cast<const char*>(data), size));
  if (r.ok()) (void)llamactl::format_duration_ms(*r);
  return 0;
}
