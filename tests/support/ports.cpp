#include "support/ports.h"

#include <random>

#include "platform/platform.h"

namespace llamactl::testing {

int pick_base_port(int width, int buckets, int attempts, const std::vector<int>& also) {
  std::random_device rd;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    const int base = 20000 + static_cast<int>(rd() % static_cast<unsigned>(buckets)) * 100;
    bool ok = true;
    for (int p = base; p < base + width && ok; ++p) ok = platform::port_available(p);
    for (int offset : also) ok = ok && platform::port_available(base + offset);
    if (ok) return base;
  }
  return 45000;
}

}  // namespace llamactl::testing
