// The unit suite's main: GoogleTest's, after the platform's helper runs (on
// Windows the platform tests' graceful stop starts this executable as one).

#include <gtest/gtest.h>

#include "platform/platform.h"

int main(int argc, char** argv) {
  if (const auto helper = llamactl::platform::run_helper(argc, argv)) return *helper;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
