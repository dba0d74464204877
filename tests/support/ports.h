#pragma once
// Loopback ports for the processes a test starts (all platforms).

#include <vector>

namespace llamactl::testing {

/// A base port B (20000 + 100 x k, k < `buckets`) with B .. B+`width`-1 and
/// B + each of `also` free on loopback, tried `attempts` times at random;
/// 45000 when none was found (the test then fails on the taken port, visibly).
int pick_base_port(int width, int buckets, int attempts, const std::vector<int>& also = {});

}  // namespace llamactl::testing
