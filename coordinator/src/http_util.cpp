#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core_internal.h"

namespace assay::coordinator {

std::string percent_decode(const std::string& s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_as_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

Result<Target> parse_target(const std::string& target) {
  if (target.empty() || target[0] != '/')
    return Status::Invalid("request target must start with '/', got '" + target + "'");
  Target t;
  size_t q = target.find('?');
  t.path = target.substr(0, q);
  size_t pos = 0;
  while (pos <= t.path.size()) {
    size_t next = t.path.find('/', pos);
    if (next == std::string::npos) next = t.path.size();
    if (next > pos) t.segments.push_back(percent_decode(t.path.substr(pos, next - pos), false));
    pos = next + 1;
  }
  if (q != std::string::npos) {
    std::string qs = target.substr(q + 1);
    size_t p = 0;
    while (p <= qs.size()) {
      size_t amp = qs.find('&', p);
      if (amp == std::string::npos) amp = qs.size();
      std::string part = qs.substr(p, amp - p);
      if (!part.empty()) {
        size_t eq = part.find('=');
        std::string k = percent_decode(part.substr(0, eq), true);
        std::string v = eq == std::string::npos ? "" : percent_decode(part.substr(eq + 1), true);
        t.query[k] = v;
        t.query_list.emplace_back(k, v);
      }
      p = amp + 1;
    }
  }
  return t;
}

std::string dump_json(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Response json_response(int status, const Json& body) {
  Response r;
  r.status = status;
  r.body = dump_json(body);
  return r;
}

Response error_response(int status, const std::string& code, const std::string& message) {
  return json_response(status, Json{{"error", {{"code", code}, {"message", message}}}});
}

Response status_response(const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument: return error_response(400, "bad_request", st.message());
    case Code::kNotFound: return error_response(404, "not_found", st.message());
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return error_response(409, "invalid_state", st.message());
    case Code::kPermissionDenied: return error_response(403, "forbidden", st.message());
    case Code::kUnavailable: return error_response(503, "unavailable", st.message());
    default: return error_response(500, "internal", st.to_string());
  }
}

std::string describe(const Json& v) {
  std::string s = dump_json(v);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

namespace {
template <class T>
Result<T> missing(const char* key, std::optional<T> dflt, const char* what) {
  if (dflt) return *dflt;
  return Status::Invalid(std::string("field '") + key + "': required " + what + " is missing");
}
}  // namespace

Result<int64_t> get_int(const Json& obj, const char* key, std::optional<int64_t> dflt) {
  auto it = obj.find(key);
  if (it == obj.end() || (it->is_null() && dflt)) return missing<int64_t>(key, dflt, "integer");
  // An unsigned value past INT64_MAX would wrap to a negative number.
  if (it->is_number_unsigned() &&
      it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return Status::Invalid(std::string("field '") + key +
                           "': expected an integer in the 64-bit signed range, got " +
                           describe(*it));
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9e15)
      return static_cast<int64_t>(d);
  }
  return Status::Invalid(std::string("field '") + key + "': expected an integer, got " +
                         describe(*it));
}

Result<double> get_number(const Json& obj, const char* key, std::optional<double> dflt) {
  auto it = obj.find(key);
  if (it == obj.end() || (it->is_null() && dflt)) return missing<double>(key, dflt, "number");
  if (it->is_number()) return it->get<double>();
  return Status::Invalid(std::string("field '") + key + "': expected a number, got " +
                         describe(*it));
}

Result<std::string> get_string(const Json& obj, const char* key,
                               std::optional<std::string> dflt) {
  auto it = obj.find(key);
  if (it == obj.end() || (it->is_null() && dflt))
    return missing<std::string>(key, dflt, "string");
  if (it->is_string()) return it->get<std::string>();
  return Status::Invalid(std::string("field '") + key + "': expected a string, got " +
                         describe(*it));
}

Result<bool> get_bool(const Json& obj, const char* key, std::optional<bool> dflt) {
  auto it = obj.find(key);
  if (it == obj.end() || (it->is_null() && dflt)) return missing<bool>(key, dflt, "boolean");
  if (it->is_boolean()) return it->get<bool>();
  return Status::Invalid(std::string("field '") + key + "': expected true or false, got " +
                         describe(*it));
}

Result<int64_t> parse_int(const std::string& s, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || errno != 0 || *end != '\0')
    return Status::Invalid(what + ": expected an integer, got '" + s + "'");
  return static_cast<int64_t>(v);
}

Result<double> parse_double(const std::string& s, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || errno != 0 || *end != '\0' || !std::isfinite(v))
    return Status::Invalid(what + ": expected a number, got '" + s + "'");
  return v;
}

}  // namespace assay::coordinator
