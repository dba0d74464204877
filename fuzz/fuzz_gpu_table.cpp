// libFuzzer target: the plain-table parser (and the form detection) on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gpu/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)llamactl::gpu::parse_table(text);
  (void)llamactl::gpu::parse_any(text);
  (void)llamactl::gpu::known_failure(text);
  return 0;
}
