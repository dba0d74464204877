#pragma once
// The web page's files (web/ in the source tree), compiled into the binary
// by cmake/embed_web.cmake: serve answers /ui from memory, offline, with no
// file read at run time.

#include <span>
#include <string_view>

namespace llamactl::serve {

struct WebAsset {
  std::string_view name;  // the file name under web/ ("index.html", "app.js")
  std::string_view body;
};

/// Every file of the page (generated).
std::span<const WebAsset> web_assets();
/// The file named `name` (the path after "/ui/"; "" is index.html); nullptr
/// when there is none. Never a path: names with '/' or '..' find nothing.
const WebAsset* find_web_asset(std::string_view name);
/// The Content-Type for a file name, by its extension. Pure.
std::string_view web_content_type(std::string_view name);

}  // namespace llamactl::serve
