#pragma once
// Moved to tests/support/temp_dir.h; kept for integration/fake_server_test.cpp, which still names it.
#include "support/temp_dir.h"
