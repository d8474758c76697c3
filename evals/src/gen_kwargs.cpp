// lm-eval's --gen_kwargs syntax (simple_parse_args_string / handle_arg_string
// semantics) mapped onto SamplingParams. See evals_backend.h.
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>

#include "assay/evals_backend.h"

namespace assay::evals {
namespace {

constexpr const char* kAccepted =
    "temperature, top_p, top_k, seed, do_sample, max_gen_toks, until";

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// handle_arg_string: quoted -> str; true/false -> bool; none -> None;
// [sign]digits -> int; what float() takes -> float; else the text.
GenKwargValue typed_value(const std::string& raw) {
  const std::string arg = strip(raw);
  if (arg.size() >= 2 && arg.front() == arg.back() && (arg.front() == '\'' || arg.front() == '"'))
    return arg.substr(1, arg.size() - 2);
  const std::string low = lower(arg);
  if (low == "true") return true;
  if (low == "false") return false;
  if (low == "none") return std::monostate{};
  const bool one_sign = !arg.empty() && (arg[0] == '+' || arg[0] == '-');
  if (all_digits(one_sign ? arg.substr(1) : arg)) {
    errno = 0;
    const long long v = std::strtoll(arg.c_str(), nullptr, 10);
    if (errno == 0) return static_cast<int64_t>(v);
  }
  // Python's float() reads decimals, exponents, inf and nan, but not hex.
  if (!arg.empty() && low.find('x') == std::string::npos) {
    char* end = nullptr;
    const double v = std::strtod(arg.c_str(), &end);
    if (end && *end == '\0') return v;
  }
  return arg;
}

std::string show(const GenKwargValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return "None";
  if (const bool* b = std::get_if<bool>(&v)) return *b ? "True" : "False";
  if (const int64_t* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const double* d = std::get_if<double>(&v)) return std::to_string(*d);
  return "\"" + std::get<std::string>(v) + "\"";
}

Status bad(const std::string& key, const GenKwargValue& v, const std::string& want) {
  return Status::Invalid("gen_kwargs: " + key + "=" + show(v) + ": expected " + want);
}

// A number (int or float, not bool).
std::optional<double> number(const GenKwargValue& v) {
  if (const int64_t* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const double* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

}  // namespace

Result<GenKwargs> parse_gen_kwargs(const std::string& text) {
  GenKwargs g;
  std::map<std::string, GenKwargValue> last;  // the last value of each key wins, as in a dict
  size_t start = 0;
  const std::string s = strip(text);
  while (start <= s.size() && !s.empty()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    const std::string piece = s.substr(start, comma - start);
    start = comma + 1;
    if (piece.empty()) continue;
    const size_t eq = piece.find('=');
    if (eq == std::string::npos)
      return Status::Invalid("gen_kwargs: \"" + piece + "\": expected key=value (accepted keys: " +
                             kAccepted + ")");
    const std::string key = strip(piece.substr(0, eq));
    const GenKwargValue value = typed_value(piece.substr(eq + 1));
    g.given.emplace_back(key, value);
    last[key] = value;
  }
  std::optional<bool> do_sample;
  bool temperature_given = false;
  for (const auto& [key, v] : last) {
    if (key == "temperature") {
      auto t = number(v);
      if (!t || !std::isfinite(*t) || *t < 0) return bad(key, v, "a number >= 0");
      g.sampling.temperature = *t;
      temperature_given = true;
    } else if (key == "top_p") {
      auto p = number(v);
      if (!p || !(*p > 0 && *p <= 1)) return bad(key, v, "a number in (0, 1]");
      g.sampling.top_p = *p;
    } else if (key == "top_k") {
      const int64_t* k = std::get_if<int64_t>(&v);
      if (!k || *k < 0 || *k > std::numeric_limits<int>::max()) return bad(key, v, "an integer >= 0");
      g.sampling.top_k = static_cast<int>(*k);
    } else if (key == "seed") {
      if (std::holds_alternative<std::monostate>(v)) continue;  // seed=None: no fixed seed
      const int64_t* k = std::get_if<int64_t>(&v);
      if (!k || *k < 0) return bad(key, v, "an integer >= 0 or None");
      g.sampling.seed = static_cast<uint64_t>(*k);
    } else if (key == "do_sample") {
      const bool* b = std::get_if<bool>(&v);
      if (!b) return bad(key, v, "True or False");
      do_sample = *b;
    } else if (key == "max_gen_toks") {
      const int64_t* k = std::get_if<int64_t>(&v);
      if (!k || *k < 1 || *k > std::numeric_limits<int>::max()) return bad(key, v, "an integer >= 1");
      g.max_gen_toks = static_cast<int>(*k);
    } else if (key == "until") {
      const std::string* u = std::get_if<std::string>(&v);
      if (!u || u->empty()) return bad(key, v, "a non-empty stop string");
      g.until = std::vector<std::string>{*u};
    } else {
      return Status::Invalid("gen_kwargs: unknown key \"" + key + "\" (accepted: " + kAccepted + ")");
    }
  }
  if (do_sample == false) {
    g.sampling.temperature = 0;  // greedy, as transformers ignores temperature then
  } else if (do_sample == true) {
    if (!temperature_given) g.sampling.temperature = 1.0;
    if (g.sampling.temperature == 0)
      return Status::Invalid("gen_kwargs: do_sample=True needs temperature > 0, got temperature=0");
  }
  return g;
}

}  // namespace assay::evals
