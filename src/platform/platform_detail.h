#pragma once
// Between platform_common.cpp and the per-OS files; not for other code.

#include <cstdint>

namespace llamactl::platform {

/// Closes the OS handle behind a FileLock (fd or HANDLE), which releases the lock.
void close_lock_handle(intptr_t handle);

}  // namespace llamactl::platform
