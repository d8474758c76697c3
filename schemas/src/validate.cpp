// The schema-subset validator. Errors are collected, not thrown, so oneOf can
// choose the alternative that explains the document best.
//
// Every check is linear (uniqueItems: n log n at worst, hashed) in the size of
// the document: a spec is checked on the coordinator's io thread, where a
// quadratic check over 5,000 repeated seeds once took seconds. To that end:
//   - uniqueItems hashes the items and reports each repeat once, against the
//     first occurrence, instead of comparing every pair;
//   - the JSON pointer of a value is a chain of frames on the stack, turned
//     into text only for an error that is kept, so a long key above many
//     values costs nothing per value;
//   - at most kMaxKeptErrors errors are kept with their text; the rest are
//     counted (and weighed, for oneOf);
//   - values shown in errors are printed only as far as the message shows;
//   - each "pattern" compiles once per thread.
#include "assay/validate.h"

#include <cmath>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <unordered_set>

#include "embedded.h"

namespace assay::schemas {
namespace {

using Json = nlohmann::json;

const std::set<std::string> kKnownKeywords = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required",
    "additionalProperties", "propertyNames", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "items",
    "minItems", "maxItems", "uniqueItems", "minProperties", "oneOf", "default", "examples"};

constexpr size_t kMaxPatternInput = 4096;  // bytes a "pattern" is tried on
constexpr size_t kMaxKeptErrors = 32;      // errors kept with their text, per check
constexpr size_t kShowBytes = 80;          // a value shown in an error, at most
constexpr size_t kMaxTokenBytes = 200;     // a pointer token shown in an error, at most

// `n` bytes of `s` or fewer, never ending inside a UTF-8 sequence (the
// message may be written into JSON, which must be valid UTF-8).
std::string utf8_prefix(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

std::string dump_string(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Json::dump() of `v`, stopped soon after `limit` bytes: the same text as a
// prefix of the full dump, at a cost bounded by `limit`, not by the size of v.
void dump_bounded(const Json& v, size_t limit, std::string* out) {
  if (out->size() > limit) return;
  if (v.is_array()) {
    *out += '[';
    size_t i = 0;
    for (const auto& x : v) {
      if (out->size() > limit) return;
      if (i++) *out += ',';
      dump_bounded(x, limit, out);
    }
    *out += ']';
  } else if (v.is_object()) {
    *out += '{';
    size_t i = 0;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (out->size() > limit) return;
      if (i++) *out += ',';
      *out += dump_string(utf8_prefix(it.key(), limit + 1));
      *out += ':';
      dump_bounded(it.value(), limit, out);
    }
    *out += '}';
  } else if (v.is_string()) {
    *out += dump_string(utf8_prefix(v.get_ref<const std::string&>(), limit + 1));
  } else {
    *out += v.dump();
  }
}

std::string show(const Json& v) {
  std::string s;
  dump_bounded(v, kShowBytes, &s);
  if (s.size() > kShowBytes) s = utf8_prefix(s, kShowBytes - 3) + "...";
  return s;
}

std::string escape_pointer_token(std::string_view t) {
  std::string out;
  const bool cut = t.size() > kMaxTokenBytes;
  const std::string shown = cut ? utf8_prefix(t, kMaxTokenBytes) : std::string(t);
  for (char c : shown) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  if (cut) out += "...(" + std::to_string(t.size()) + " bytes)";
  return out;
}

// Where a value sits in the document: a chain of frames on the caller's
// stack, turned into a JSON pointer ("/space/lr/values/3") only for errors
// that are kept. Tokens longer than kMaxTokenBytes are shortened.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;  // an object member, when !is_index
  size_t index = 0;
  bool is_index = false;

  Path child(std::string_view k) const { return Path{this, k, 0, false}; }
  Path item(size_t i) const { return Path{this, {}, i, true}; }

  std::string str() const {
    std::vector<const Path*> chain;
    for (const Path* p = this; p && p->parent; p = p->parent) chain.push_back(p);
    std::string out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it)
      out += "/" + ((*it)->is_index ? std::to_string((*it)->index) : escape_pointer_token((*it)->key));
    return out;
  }
};

// The errors of one check: the first kMaxKeptErrors with their text, all
// counted and weighed.
struct Errors {
  std::vector<ValidationError> kept;
  size_t count = 0;
  int64_t weight = 0;
};

// Hash and equality under which JSON Schema's uniqueItems compares items:
// 1 and 1.0 are equal (nlohmann's == agrees), so every number hashes as a
// double. Hash and compare are each linear in the size of the item.
size_t json_hash(const Json& v) {
  auto mix = [](size_t h, size_t x) { return h ^ (x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)); };
  switch (v.type()) {
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: {
      double d = v.get<double>();
      if (d == 0) d = 0;  // -0.0 == 0.0
      return std::hash<double>{}(d);
    }
    case Json::value_t::string: return std::hash<std::string>{}(v.get_ref<const std::string&>());
    case Json::value_t::boolean: return v.get<bool>() ? 1 : 2;
    case Json::value_t::null: return 3;
    case Json::value_t::array: {
      size_t h = 4;
      for (const auto& x : v) h = mix(h, json_hash(x));
      return h;
    }
    case Json::value_t::object: {
      size_t h = 5;
      for (auto it = v.begin(); it != v.end(); ++it)
        h = mix(mix(h, std::hash<std::string>{}(it.key())), json_hash(it.value()));
      return h;
    }
    default: return 6;
  }
}

struct ItemHash {
  size_t operator()(const Json* v) const { return json_hash(*v); }
};
struct ItemEq {
  bool operator()(const Json* a, const Json* b) const { return *a == *b; }
};

// Compiled once per pattern and thread: a spec has a pattern check per key.
const std::regex& compiled(const std::string& pattern) {
  thread_local std::map<std::string, std::regex> cache;
  auto it = cache.find(pattern);
  if (it == cache.end()) it = cache.emplace(pattern, std::regex(pattern, std::regex::ECMAScript)).first;
  return it->second;
}

std::string num(double d) {
  if (d == std::floor(d) && std::fabs(d) < 9.2e18) return std::to_string(int64_t(d));
  Json j = d;
  return j.dump();
}

bool is_integer(const Json& v) {
  if (v.is_number_integer()) return true;
  if (v.is_number_float()) {
    double d = v.get<double>();
    return std::isfinite(d) && d == std::floor(d);
  }
  return false;
}

bool type_matches(const std::string& t, const Json& v) {
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return is_integer(v);
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  return false;
}

std::string article(const std::string& t) {
  if (t == "integer" || t == "object" || t == "array") return "an " + t;
  if (t == "null") return "null";
  return "a " + t;
}

std::string describe_types(const Json& type) {
  if (type.is_string()) return article(type.get<std::string>());
  std::string out;
  for (size_t i = 0; i < type.size(); ++i) {
    if (i) out += (i + 1 == type.size()) ? " or " : ", ";
    out += article(type[i].get<std::string>());
  }
  return out;
}

// "a number > 0", "an integer in 0..8", "an integer >= 1".
std::string describe_bounds(const Json& s) {
  std::string base = s.contains("type") ? describe_types(s["type"]) : "a number";
  bool lo = s.contains("minimum"), hi = s.contains("maximum");
  if (lo && hi) return base + " in " + num(s["minimum"]) + ".." + num(s["maximum"]);
  std::string out = base;
  if (lo) out += " >= " + num(s["minimum"]);
  if (s.contains("exclusiveMinimum")) out += " > " + num(s["exclusiveMinimum"]);
  if (hi) out += std::string(lo || s.contains("exclusiveMinimum") ? " and" : "") + " <= " +
                 num(s["maximum"]);
  if (s.contains("exclusiveMaximum")) out += " < " + num(s["exclusiveMaximum"]);
  return out;
}

std::string describe_enum(const Json& e) {
  std::string out = "one of ";
  for (size_t i = 0; i < e.size(); ++i) out += (i ? ", " : "") + e[i].dump();
  return out;
}

class Validator {
 public:
  explicit Validator(const Json& root) : root_(root) {}

  Status check(const Json& s, const Json& v, const Path& at, Errors* errs);

 private:
  Result<const Json*> resolve(const std::string& ref);
  // Records an error; `msg` is only built for errors that are kept.
  template <typename Msg>
  void add(Errors* errs, const Path& at, Msg&& msg, int w = 1) {
    ++errs->count;
    errs->weight += w;
    if (errs->kept.size() < kMaxKeptErrors) errs->kept.push_back({at.str(), msg()});
  }
  void check_number(const Json& s, const Json& v, const Path& at, Errors* errs);
  void check_string(const Json& s, const Json& v, const Path& at, Errors* errs);
  Status check_array(const Json& s, const Json& v, const Path& at, Errors* errs);
  Status check_object(const Json& s, const Json& v, const Path& at, Errors* errs);
  Status check_one_of(const Json& s, const Json& v, const Path& at, Errors* errs);

  const Json& root_;
};

Result<const Json*> Validator::resolve(const std::string& ref) {
  const std::string prefix = "#/$defs/";
  if (ref.rfind(prefix, 0) != 0)
    return Status::Internal("schema: $ref '" + ref + "' is not a local #/$defs/ reference");
  const std::string name = ref.substr(prefix.size());
  if (!root_.contains("$defs") || !root_["$defs"].contains(name))
    return Status::Internal("schema: $ref '" + ref + "' names no definition");
  return &root_["$defs"][name];
}

Status Validator::check(const Json& s, const Json& v, const Path& at, Errors* errs) {
  if (s.is_boolean()) {
    if (!s.get<bool>()) add(errs, at, [] { return std::string("unexpected field"); });
    return Status::Ok();
  }
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!kKnownKeywords.count(it.key()))
      return Status::Internal("schema: unsupported keyword '" + it.key() + "'");
  if (s.contains("$ref")) {
    ASSAY_ASSIGN_OR_RETURN(const Json* target, resolve(s["$ref"].get<std::string>()));
    ASSAY_RETURN_IF_ERROR(check(*target, v, at, errs));
  }
  if (s.contains("type")) {
    const Json& t = s["type"];
    bool ok = false;
    if (t.is_string()) ok = type_matches(t.get<std::string>(), v);
    else for (const auto& x : t) ok = ok || type_matches(x.get<std::string>(), v);
    if (!ok) {
      add(errs, at, [&] { return "expected " + describe_types(t) + ", got " + show(v); });
      return Status::Ok();  // the remaining keywords would only repeat this
    }
  }
  if (s.contains("const") && v != s["const"])
    add(errs, at, [&] { return "expected " + s["const"].dump() + ", got " + show(v); }, 100);
  if (s.contains("enum")) {
    bool found = false;
    for (const auto& e : s["enum"]) found = found || e == v;
    if (!found)
      add(errs, at, [&] { return "expected " + describe_enum(s["enum"]) + ", got " + show(v); }, 100);
  }
  if (v.is_number()) check_number(s, v, at, errs);
  if (v.is_string()) check_string(s, v, at, errs);
  if (v.is_array()) ASSAY_RETURN_IF_ERROR(check_array(s, v, at, errs));
  if (v.is_object()) ASSAY_RETURN_IF_ERROR(check_object(s, v, at, errs));
  if (s.contains("oneOf")) ASSAY_RETURN_IF_ERROR(check_one_of(s, v, at, errs));
  return Status::Ok();
}

void Validator::check_number(const Json& s, const Json& v, const Path& at, Errors* errs) {
  double d = v.get<double>();
  bool bad = (s.contains("minimum") && d < s["minimum"].get<double>()) ||
             (s.contains("maximum") && d > s["maximum"].get<double>()) ||
             (s.contains("exclusiveMinimum") && d <= s["exclusiveMinimum"].get<double>()) ||
             (s.contains("exclusiveMaximum") && d >= s["exclusiveMaximum"].get<double>());
  if (bad) add(errs, at, [&] { return "expected " + describe_bounds(s) + ", got " + show(v); });
}

void Validator::check_string(const Json& s, const Json& v, const Path& at, Errors* errs) {
  const std::string& str = v.get_ref<const std::string&>();
  // Length in code points, as JSON Schema counts it.
  size_t n = 0;
  for (unsigned char c : str) n += (c & 0xC0) != 0x80;
  if (s.contains("minLength") && n < s["minLength"].get<size_t>())
    add(errs, at, [&] {
      return s["minLength"].get<size_t>() == 1
                 ? "expected a non-empty string, got " + show(v)
                 : "expected a string of at least " + s["minLength"].dump() + " characters, got " + show(v);
    });
  if (s.contains("maxLength") && n > s["maxLength"].get<size_t>())
    add(errs, at, [&] {
      return "expected a string of at most " + s["maxLength"].dump() + " characters, got " + std::to_string(n);
    });
  if (!s.contains("pattern")) return;
  if (str.size() > kMaxPatternInput) {
    // libstdc++'s std::regex recurses once per character matched: a long
    // enough string overflows the stack. No pattern in Assay's schemas is
    // meant for strings this long.
    add(errs, at, [&] {
      return "expected a string of at most " + std::to_string(kMaxPatternInput) + " bytes matching " +
             s["pattern"].dump() + ", got " + std::to_string(str.size()) + " bytes";
    });
  } else if (!std::regex_search(str, compiled(s["pattern"].get<std::string>()))) {
    add(errs, at, [&] { return "expected a string matching " + s["pattern"].dump() + ", got " + show(v); });
  }
}

Status Validator::check_array(const Json& s, const Json& v, const Path& at, Errors* errs) {
  if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>())
    add(errs, at, [&] {
      return "expected at least " + s["minItems"].dump() + " item(s), got " + std::to_string(v.size());
    });
  if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>())
    add(errs, at, [&] {
      return "expected at most " + s["maxItems"].dump() + " item(s), got " + std::to_string(v.size());
    });
  if (s.value("uniqueItems", false)) {
    // Each repeat is reported once, against the first item equal to it.
    std::unordered_set<const Json*, ItemHash, ItemEq> seen;
    seen.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      auto [first, inserted] = seen.insert(&v[i]);
      if (inserted) continue;
      const size_t j = static_cast<size_t>(*first - &v[0]);
      add(errs, at.item(i), [&] {
        return "expected unique items, got a repeat of item " + std::to_string(j) + " " + show(v[i]);
      });
    }
  }
  if (s.contains("items"))
    for (size_t i = 0; i < v.size(); ++i) ASSAY_RETURN_IF_ERROR(check(s["items"], v[i], at.item(i), errs));
  return Status::Ok();
}

Status Validator::check_object(const Json& s, const Json& v, const Path& at, Errors* errs) {
  if (s.contains("required"))
    for (const auto& r : s["required"])
      if (!v.contains(r.get<std::string>()))
        add(errs, at.child(r.get_ref<const std::string&>()), [] { return std::string("required field is missing"); });
  if (s.contains("minProperties") && v.size() < s["minProperties"].get<size_t>())
    add(errs, at, [&] {
      return "expected at least " + s["minProperties"].dump() + " field(s), got " + std::to_string(v.size());
    });
  const Json* props = s.contains("properties") ? &s["properties"] : nullptr;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const Path child = at.child(it.key());
    if (s.contains("propertyNames"))
      ASSAY_RETURN_IF_ERROR(check(s["propertyNames"], Json(it.key()), child, errs));
    if (props && props->contains(it.key())) {
      ASSAY_RETURN_IF_ERROR(check((*props)[it.key()], it.value(), child, errs));
    } else if (s.contains("additionalProperties")) {
      const Json& ap = s["additionalProperties"];
      if (ap.is_boolean() && !ap.get<bool>()) {
        add(errs, child, [&] {
          std::string known;
          if (props)
            for (auto p = props->begin(); p != props->end(); ++p) known += (known.empty() ? "" : ", ") + p.key();
          return "unknown field" + (known.empty() ? "" : "; expected one of " + known);
        });
      } else {
        ASSAY_RETURN_IF_ERROR(check(ap, it.value(), child, errs));
      }
    }
  }
  return Status::Ok();
}

// Exactly one alternative must match. When none does, report the errors of
// the alternative with the least weight: a const/enum mismatch weighs 100,
// so the alternative whose discriminator matches explains the document.
Status Validator::check_one_of(const Json& s, const Json& v, const Path& at, Errors* errs) {
  int matches = 0;
  Errors best;
  bool have_best = false;
  for (const auto& alt : s["oneOf"]) {
    Errors e;
    ASSAY_RETURN_IF_ERROR(check(alt, v, at, &e));
    if (e.count == 0) {
      ++matches;
    } else if (!have_best || e.weight < best.weight) {
      best = std::move(e);
      have_best = true;
    }
  }
  if (matches == 1) return Status::Ok();
  if (matches > 1) {
    add(errs, at, [] { return std::string("matches more than one alternative; the document is ambiguous"); });
    return Status::Ok();
  }
  for (auto& e : best.kept)
    if (errs->kept.size() < kMaxKeptErrors) errs->kept.push_back(std::move(e));
  errs->count += best.count;
  errs->weight += best.weight;
  return Status::Ok();
}

}  // namespace

Result<ValidationReport> validate(const Json& schema, const Json& doc) {
  Validator val(schema);
  Errors errs;
  try {
    ASSAY_RETURN_IF_ERROR(val.check(schema, doc, Path{}, &errs));
  } catch (const std::exception& e) {  // nlohmann type errors, std::regex_error
    return Status::Internal(std::string("schema: malformed: ") + e.what());
  }
  return ValidationReport{std::move(errs.kept), errs.count};
}

Result<std::string> embedded_schema_text(std::string_view name) {
  const auto& all = embedded_schemas();
  auto it = all.find(std::string(name));
  if (it == all.end()) {
    std::string known;
    for (const auto& [k, _] : all) known += (known.empty() ? "" : ", ") + k;
    return Status::NotFound("schema '" + std::string(name) + "': expected one of " + known);
  }
  return std::string(it->second);
}

Status validate_embedded(std::string_view schema_name, const Json& doc, std::string_view source) {
  // Parsed once per process; static initialisation is thread-safe.
  static const std::map<std::string, Json, std::less<>> cache = [] {
    std::map<std::string, Json, std::less<>> m;
    for (const auto& [name, text] : embedded_schemas())
      m.emplace(name, Json::parse(text, nullptr, false));
    return m;
  }();
  auto it = cache.find(schema_name);
  if (it == cache.end()) return embedded_schema_text(schema_name).status();
  if (it->second.is_discarded())
    return Status::Internal("schema " + std::string(schema_name) + ": not valid JSON");
  ASSAY_ASSIGN_OR_RETURN(auto report, validate(it->second, doc));
  if (report.total == 0) return Status::Ok();
  const auto& e = report.errors.front();
  std::string msg = std::string(source) + ": " + (e.pointer.empty() ? "/" : e.pointer) + ": " + e.message;
  if (report.total > 1) msg += " (and " + std::to_string(report.total - 1) + " more)";
  return Status::Invalid(msg);
}

}  // namespace assay::schemas
