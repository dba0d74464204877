#include "serve/openai.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <exception>

namespace llamactl::serve {

namespace {

using nlohmann::json;

/// SAX events of nlohmann::json, keeping only depth and the top-level "model".
class ModelScan {
 public:
  BodyModel out;

  bool null() { return scalar(); }
  bool boolean(bool /*value*/) { return scalar(); }
  bool number_integer(json::number_integer_t /*value*/) { return scalar(); }
  bool number_unsigned(json::number_unsigned_t /*value*/) { return scalar(); }
  bool number_float(json::number_float_t /*value*/, const json::string_t& /*text*/) { return scalar(); }
  bool binary(json::binary_t& /*value*/) { return scalar(); }
  bool string(json::string_t& value) {
    if (depth_ == 0) return false;  // a bare string is not an object: stop here
    if (depth_ == 1 && at_model_) out.model = std::move(value);
    at_model_ = false;
    return true;
  }
  bool start_object(std::size_t /*elements*/) {
    if (depth_ == 0) out.is_object = true;
    if (!scalar()) return false;
    ++depth_;
    return true;
  }
  bool key(json::string_t& name) {
    if (depth_ == 1) at_model_ = name == "model";
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*elements*/) {
    if (depth_ == 0) return false;  // an array is not an object
    scalar();
    ++depth_;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/, const std::exception& /*error*/) {
    return false;
  }

 private:
  /// A value that is not a string: at the top it is not an object; as
  /// "model" it is no model.
  bool scalar() {
    if (depth_ == 1 && at_model_) out.model.clear();
    at_model_ = false;
    return depth_ > 0 || out.is_object;
  }

  int depth_ = 0;
  bool at_model_ = false;
};

}  // namespace

BodyModel body_model(std::string_view body) {
  ModelScan scan;
  if (!json::sax_parse(body.begin(), body.end(), &scan)) return {};
  return scan.out;
}

}  // namespace llamactl::serve
