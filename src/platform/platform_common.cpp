// The parts of platform.h that standard C++ does (nearly) the same way on every OS.

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "platform/platform.h"
#include "platform/platform_detail.h"

namespace llamactl::platform {

FileLock::FileLock(FileLock&& other) noexcept : handle_(other.handle_) {
  other.handle_ = -1;
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (handle_ != -1) close_lock_handle(handle_);
    handle_ = other.handle_;
    other.handle_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (handle_ != -1) close_lock_handle(handle_);
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::io, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path fs_path(const std::string& utf8) {
  return std::filesystem::path(std::u8string(utf8.begin(), utf8.end()));
}

std::string join_path(const std::string& dir, std::string name) {
#ifdef _WIN32
  std::replace(name.begin(), name.end(), '/', '\\');
  constexpr char sep = '\\';
#else
  constexpr char sep = '/';
#endif
  if (dir.empty()) return name;
  return dir.back() == sep || dir.back() == '/' ? dir + name : dir + sep + name;
}

std::string utf8_path(const std::filesystem::path& p) {
  const std::u8string s = p.u8string();
  return std::string(s.begin(), s.end());
}

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

void sleep_for(std::chrono::milliseconds d) {
  std::this_thread::sleep_for(d);
}

}  // namespace llamactl::platform
