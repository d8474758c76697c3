// See eval_key.h for the format and its invariants.
#include "assay/eval_key.h"

namespace assay {

std::string format_eval_key(const EvalKey& k) {
  std::string s = k.suite;
  if (!k.version.empty()) s += "@" + k.version;
  s += "/" + k.metric;
  if (!k.filter.empty() && k.filter != "none") s += "," + k.filter;
  if (k.stat == EvalKey::Stat::kStderr) s += ":stderr";
  if (k.stat == EvalKey::Stat::kN) s += ":n";
  return s;
}

bool valid_eval_suite_name(std::string_view part) {
  return !part.empty() && part.find_first_of("@/:,") == std::string_view::npos;
}

bool parse_eval_key(std::string_view key, EvalKey* out) {
  EvalKey k;
  // The statistic suffix: the last ':' (metric and filter hold none).
  const size_t colon = key.rfind(':');
  if (colon != std::string_view::npos) {
    const std::string_view stat = key.substr(colon + 1);
    if (stat == "stderr") k.stat = EvalKey::Stat::kStderr;
    else if (stat == "n") k.stat = EvalKey::Stat::kN;
    else return false;
    key = key.substr(0, colon);
  }
  // "<suite>[@<version>]" / "<metric>[,<filter>]", split at the first '/'
  // (suites and versions hold none).
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view head = key.substr(0, slash), tail = key.substr(slash + 1);
  const size_t at = head.find('@');
  k.suite = std::string(head.substr(0, at));
  k.version = at == std::string_view::npos ? kLegacyEvalVersion : std::string(head.substr(at + 1));
  const size_t comma = tail.find(',');
  k.metric = std::string(tail.substr(0, comma));
  k.filter = comma == std::string_view::npos ? "none" : std::string(tail.substr(comma + 1));
  if (!valid_eval_suite_name(k.suite) || k.version.empty() || k.metric.empty() ||
      k.metric.find('/') != std::string::npos || k.filter.empty() ||
      k.filter.find('/') != std::string::npos)
    return false;
  *out = std::move(k);
  return true;
}

}  // namespace assay
