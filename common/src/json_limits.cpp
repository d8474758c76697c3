#include "assay/json_limits.h"

#include <vector>

namespace assay {

using Json = nlohmann::json;

std::optional<size_t> json_depth_exceeded_at(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    }
  }
  return std::nullopt;
}

std::string json_text_position(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + " column " + std::to_string(col);
}

namespace {

std::string escape_pointer_token(const std::string& t) {
  std::string out;
  for (char c : t) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

// Builds the tree like nlohmann's own DOM parser, and stops at the first
// duplicate key or level past the limit. Containers on the stack are only
// ever appended to while they are on top, so the pointers stay valid.
class LimitedDom {
 public:
  explicit LimitedDom(int max_depth) : max_depth_(max_depth) {}

  bool null() { return put(Json(nullptr)); }
  bool boolean(bool v) { return put(Json(v)); }
  bool number_integer(Json::number_integer_t v) { return put(Json(v)); }
  bool number_unsigned(Json::number_unsigned_t v) { return put(Json(v)); }
  bool number_float(Json::number_float_t v, const Json::string_t&) { return put(Json(v)); }
  bool string(Json::string_t& v) { return put(Json(std::move(v))); }
  bool binary(Json::binary_t& v) { return put(Json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(Json::object()); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(Json::string_t& k) {
    if (stack_.back()->contains(k)) {
      problem_ = pointer() + "/" + escape_pointer_token(k) + ": duplicate key " + Json(k).dump(
          -1, ' ', false, Json::error_handler_t::replace);
      return false;
    }
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string& token,
                   const nlohmann::detail::exception& ex) {
    error_at_ = position;
    if (ex.id == 406) {  // out_of_range: number overflow; point at the number's start
      error_at_ = position >= token.size() ? position - token.size() + 1 : 1;
      problem_ = "expected a number within the range of a double, got " + token;
    } else {
      std::string w = ex.what();
      auto p = w.find("syntax error");
      problem_ = "not valid JSON: " + (p == std::string::npos ? w : w.substr(p));
    }
    return false;
  }

  Json root;
  std::string problem_;                // empty while all is well
  std::optional<size_t> error_at_;     // byte offset, for syntax errors
  bool too_deep = false;

 private:
  Json* place(Json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    Json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    Json& slot = (*top)[key_];
    slot = std::move(v);
    return &slot;
  }
  bool put(Json v) {
    place(std::move(v));
    return true;
  }
  bool open(Json v) {
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      too_deep = true;
      return false;
    }
    stack_.push_back(place(std::move(v)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }
  // JSON pointer of the container on top of the stack.
  std::string pointer() const {
    std::string out;
    for (size_t i = 1; i < stack_.size(); ++i) {
      const Json* parent = stack_[i - 1];
      if (parent->is_array()) {
        out += "/" + std::to_string(parent->size() - 1);
      } else {
        for (auto it = parent->begin(); it != parent->end(); ++it)
          if (&it.value() == stack_[i]) {
            out += "/" + escape_pointer_token(it.key());
            break;
          }
      }
    }
    return out;
  }

  int max_depth_;
  std::vector<Json*> stack_;
  std::string key_;
};

}  // namespace

Result<Json> parse_json(std::string_view text, std::string_view what, int max_depth) {
  LimitedDom dom(max_depth);
  bool ok = false;
  try {
    ok = Json::sax_parse(text, &dom, Json::input_format_t::json, /*strict=*/true);
  } catch (const std::exception& e) {  // the SAX interface reports errors; belt and braces
    return Status::Invalid(std::string(what) + ": not valid JSON: " + e.what());
  }
  if (ok) return std::move(dom.root);
  const std::string src(what);
  if (dom.too_deep) {
    auto at = json_depth_exceeded_at(text, max_depth);
    return Status::Invalid(src + ": " + json_text_position(text, at.value_or(0)) +
                           ": JSON nested deeper than the limit of " +
                           std::to_string(max_depth) + " levels");
  }
  if (dom.error_at_) {
    // nlohmann counts the position past the offending character.
    size_t at = *dom.error_at_ > 0 ? *dom.error_at_ - 1 : 0;
    return Status::Invalid(src + ": " + json_text_position(text, at) + ": " + dom.problem_);
  }
  return Status::Invalid(src + ": " + (dom.problem_.empty() ? "not valid JSON" : dom.problem_));
}

}  // namespace assay
