// libFuzzer target: the CSV parser must never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gpu/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = llamactl::gpu::parse_csv(text);
  if (r.ok()) {
    for (const auto& p : r->processes) (void)r->gpu_of(p);
  }
  return 0;
}
