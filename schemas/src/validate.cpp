// The schema-subset validator. Errors are collected, not thrown, so oneOf can
// choose the alternative that explains the document best.
#include "assay/validate.h"

#include <cmath>
#include <regex>
#include <set>

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

std::string show(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string escape_pointer_token(const std::string& t) {
  std::string out;
  for (char c : t) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
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

  Status check(const Json& s, const Json& v, const std::string& ptr,
               std::vector<ValidationError>* errs, int* weight);

 private:
  Result<const Json*> resolve(const std::string& ref);
  void add(std::vector<ValidationError>* errs, int* weight, const std::string& ptr,
           std::string msg, int w = 1) {
    errs->push_back({ptr, std::move(msg)});
    *weight += w;
  }
  Status check_object(const Json& s, const Json& v, const std::string& ptr,
                      std::vector<ValidationError>* errs, int* weight);
  Status check_one_of(const Json& s, const Json& v, const std::string& ptr,
                      std::vector<ValidationError>* errs, int* weight);

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

Status Validator::check(const Json& s, const Json& v, const std::string& ptr,
                        std::vector<ValidationError>* errs, int* weight) {
  if (s.is_boolean()) {
    if (!s.get<bool>()) add(errs, weight, ptr, "unexpected field");
    return Status::Ok();
  }
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!kKnownKeywords.count(it.key()))
      return Status::Internal("schema: unsupported keyword '" + it.key() + "'");
  if (s.contains("$ref")) {
    ASSAY_ASSIGN_OR_RETURN(const Json* target, resolve(s["$ref"].get<std::string>()));
    ASSAY_RETURN_IF_ERROR(check(*target, v, ptr, errs, weight));
  }
  if (s.contains("type")) {
    const Json& t = s["type"];
    bool ok = false;
    if (t.is_string()) ok = type_matches(t.get<std::string>(), v);
    else for (const auto& x : t) ok = ok || type_matches(x.get<std::string>(), v);
    if (!ok) {
      add(errs, weight, ptr, "expected " + describe_types(t) + ", got " + show(v));
      return Status::Ok();  // the remaining keywords would only repeat this
    }
  }
  if (s.contains("const") && v != s["const"])
    add(errs, weight, ptr, "expected " + s["const"].dump() + ", got " + show(v), 100);
  if (s.contains("enum")) {
    bool found = false;
    for (const auto& e : s["enum"]) found = found || e == v;
    if (!found) add(errs, weight, ptr, "expected " + describe_enum(s["enum"]) + ", got " + show(v), 100);
  }
  if (v.is_number()) {
    double d = v.get<double>();
    bool bad = (s.contains("minimum") && d < s["minimum"].get<double>()) ||
               (s.contains("maximum") && d > s["maximum"].get<double>()) ||
               (s.contains("exclusiveMinimum") && d <= s["exclusiveMinimum"].get<double>()) ||
               (s.contains("exclusiveMaximum") && d >= s["exclusiveMaximum"].get<double>());
    if (bad) add(errs, weight, ptr, "expected " + describe_bounds(s) + ", got " + show(v));
  }
  if (v.is_string()) {
    // Length in code points, as JSON Schema counts it.
    size_t n = 0;
    for (unsigned char c : v.get_ref<const std::string&>()) n += (c & 0xC0) != 0x80;
    if (s.contains("minLength") && n < s["minLength"].get<size_t>())
      add(errs, weight, ptr, s["minLength"].get<size_t>() == 1
              ? "expected a non-empty string, got " + show(v)
              : "expected a string of at least " + s["minLength"].dump() + " characters, got " + show(v));
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>())
      add(errs, weight, ptr, "expected a string of at most " + s["maxLength"].dump() +
                                 " characters, got " + std::to_string(n));
    if (s.contains("pattern") && v.get_ref<const std::string&>().size() > kMaxPatternInput) {
      // libstdc++'s std::regex recurses once per character matched: a long
      // enough string overflows the stack. No pattern in Assay's schemas is
      // meant for strings this long.
      add(errs, weight, ptr, "expected a string of at most " + std::to_string(kMaxPatternInput) +
                                 " bytes matching " + s["pattern"].dump() + ", got " +
                                 std::to_string(v.get_ref<const std::string&>().size()) + " bytes");
    } else if (s.contains("pattern")) {
      std::regex re(s["pattern"].get<std::string>(), std::regex::ECMAScript);
      if (!std::regex_search(v.get_ref<const std::string&>(), re))
        add(errs, weight, ptr, "expected a string matching " + s["pattern"].dump() + ", got " + show(v));
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>())
      add(errs, weight, ptr, "expected at least " + s["minItems"].dump() + " item(s), got " +
                                 std::to_string(v.size()));
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>())
      add(errs, weight, ptr, "expected at most " + s["maxItems"].dump() + " item(s), got " +
                                 std::to_string(v.size()));
    if (s.value("uniqueItems", false)) {
      for (size_t i = 0; i < v.size(); ++i)
        for (size_t j = i + 1; j < v.size(); ++j)
          if (v[i] == v[j])
            add(errs, weight, ptr + "/" + std::to_string(j),
                "expected unique items, got a repeat of item " + std::to_string(i) + " " + show(v[j]));
    }
    if (s.contains("items"))
      for (size_t i = 0; i < v.size(); ++i)
        ASSAY_RETURN_IF_ERROR(check(s["items"], v[i], ptr + "/" + std::to_string(i), errs, weight));
  }
  if (v.is_object()) ASSAY_RETURN_IF_ERROR(check_object(s, v, ptr, errs, weight));
  if (s.contains("oneOf")) ASSAY_RETURN_IF_ERROR(check_one_of(s, v, ptr, errs, weight));
  return Status::Ok();
}

Status Validator::check_object(const Json& s, const Json& v, const std::string& ptr,
                               std::vector<ValidationError>* errs, int* weight) {
  if (s.contains("required"))
    for (const auto& r : s["required"])
      if (!v.contains(r.get<std::string>()))
        add(errs, weight, ptr + "/" + escape_pointer_token(r.get<std::string>()),
            "required field is missing");
  if (s.contains("minProperties") && v.size() < s["minProperties"].get<size_t>())
    add(errs, weight, ptr, "expected at least " + s["minProperties"].dump() + " field(s), got " +
                               std::to_string(v.size()));
  const Json* props = s.contains("properties") ? &s["properties"] : nullptr;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string child = ptr + "/" + escape_pointer_token(it.key());
    if (s.contains("propertyNames"))
      ASSAY_RETURN_IF_ERROR(check(s["propertyNames"], Json(it.key()), child, errs, weight));
    if (props && props->contains(it.key())) {
      ASSAY_RETURN_IF_ERROR(check((*props)[it.key()], it.value(), child, errs, weight));
    } else if (s.contains("additionalProperties")) {
      const Json& ap = s["additionalProperties"];
      if (ap.is_boolean() && !ap.get<bool>()) {
        std::string known;
        if (props)
          for (auto p = props->begin(); p != props->end(); ++p) known += (known.empty() ? "" : ", ") + p.key();
        add(errs, weight, child, "unknown field" + (known.empty() ? "" : "; expected one of " + known));
      } else {
        ASSAY_RETURN_IF_ERROR(check(ap, it.value(), child, errs, weight));
      }
    }
  }
  return Status::Ok();
}

// Exactly one alternative must match. When none does, report the errors of
// the alternative with the least weight: a const/enum mismatch weighs 100,
// so the alternative whose discriminator matches explains the document.
Status Validator::check_one_of(const Json& s, const Json& v, const std::string& ptr,
                               std::vector<ValidationError>* errs, int* weight) {
  int matches = 0;
  std::vector<ValidationError> best;
  int best_w = -1;
  for (const auto& alt : s["oneOf"]) {
    std::vector<ValidationError> e;
    int w = 0;
    ASSAY_RETURN_IF_ERROR(check(alt, v, ptr, &e, &w));
    if (e.empty()) {
      ++matches;
    } else if (best_w < 0 || w < best_w) {
      best = std::move(e);
      best_w = w;
    }
  }
  if (matches == 1) return Status::Ok();
  if (matches > 1) {
    add(errs, weight, ptr, "matches more than one alternative; the document is ambiguous");
    return Status::Ok();
  }
  for (auto& e : best) errs->push_back(std::move(e));
  *weight += best_w;
  return Status::Ok();
}

}  // namespace

Result<std::vector<ValidationError>> validate(const Json& schema, const Json& doc) {
  Validator val(schema);
  std::vector<ValidationError> errs;
  int weight = 0;
  try {
    ASSAY_RETURN_IF_ERROR(val.check(schema, doc, "", &errs, &weight));
  } catch (const std::exception& e) {  // nlohmann type errors, std::regex_error
    return Status::Internal(std::string("schema: malformed: ") + e.what());
  }
  return errs;
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
  ASSAY_ASSIGN_OR_RETURN(auto errs, validate(it->second, doc));
  if (errs.empty()) return Status::Ok();
  const auto& e = errs.front();
  std::string msg = std::string(source) + ": " + (e.pointer.empty() ? "/" : e.pointer) + ": " + e.message;
  if (errs.size() > 1) msg += " (and " + std::to_string(errs.size() - 1) + " more)";
  return Status::Invalid(msg);
}

}  // namespace assay::schemas
