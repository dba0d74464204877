#pragma once
// Moved to tests/support/wait.h; kept for integration/fake_server_test.cpp, which still names it.
#include "support/wait.h"
