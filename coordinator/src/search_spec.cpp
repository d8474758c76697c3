// Parsing the adaptive-search keys of a sweep document (assay/search.h).
// Every error names the document, the JSON pointer, the expectation and the
// value found.
#include <cmath>
#include <string>

#include "assay/search.h"

namespace assay::coordinator {
namespace {

using Json = nlohmann::json;
using Dim = schemas::Dimension;

constexpr double kMaxInt = 9007199254740991.0;  // 2^53 - 1

struct Ctx {
  std::string_view source;
  Status err(const std::string& ptr, const std::string& expected, const Json& got) const {
    return Status::Invalid(std::string(source) + ": " + ptr + ": expected " + expected +
                           ", got " + got.dump());
  }
};

// An integer-valued JSON number in [lo, hi].
Result<int64_t> read_int(const Ctx& c, const Json& obj, const char* key, const std::string& ptr,
                         int64_t lo, int64_t hi) {
  // const operator[] on a missing key is undefined: look it up.
  auto it = obj.find(key);
  const Json v = it == obj.end() ? Json() : *it;
  const std::string want = "an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
  if (!v.is_number()) return c.err(ptr + "/" + key, want, v);
  double d = v.get<double>();
  if (!(std::floor(d) == d) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
    return c.err(ptr + "/" + key, want, v);
  return static_cast<int64_t>(d);
}

Result<Mode> read_mode(const Ctx& c, const Json& v, const std::string& ptr) {
  if (v.is_string() && v.get<std::string>() == "min") return Mode::kMin;
  if (v.is_string() && v.get<std::string>() == "max") return Mode::kMax;
  return c.err(ptr, "\"min\" or \"max\"", v);
}

Result<Objective> read_objective(const Ctx& c, const Json& o, const std::string& ptr) {
  if (!o.is_object()) return c.err(ptr, "an object {\"metric\": ..., \"mode\": ...}", o);
  for (auto it = o.begin(); it != o.end(); ++it)
    if (it.key() != "metric" && it.key() != "mode")
      return c.err(ptr + "/" + it.key(), "no such key (objective keys: metric, mode)", it.value());
  Objective ob;
  if (!o.contains("metric") || !o["metric"].is_string() || o["metric"].get<std::string>().empty())
    return c.err(ptr + "/metric", "a non-empty metric name", o.value("metric", Json()));
  ob.metric = o["metric"].get<std::string>();
  if (!o.contains("mode")) return c.err(ptr + "/mode", "\"min\" or \"max\"", Json());
  ASSAY_ASSIGN_OR_RETURN(ob.mode, read_mode(c, o["mode"], ptr + "/mode"));
  return ob;
}

Result<std::vector<Objective>> read_objectives(const Ctx& c, const Json& arr,
                                               const std::string& ptr) {
  if (!arr.is_array() || arr.empty() || arr.size() > 8)
    return c.err(ptr, "an array of 1..8 objectives", arr);
  std::vector<Objective> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    ASSAY_ASSIGN_OR_RETURN(Objective o, read_objective(c, arr[i], ptr + "/" + std::to_string(i)));
    for (const auto& prev : out)
      if (prev.metric == o.metric)
        return c.err(ptr + "/" + std::to_string(i) + "/metric", "a metric not listed before",
                     o.metric);
    out.push_back(std::move(o));
  }
  return out;
}

Status read_asha(const Ctx& c, const Json& s, AshaConfig* a) {
  const std::string p = "/search";
  ASSAY_ASSIGN_OR_RETURN(a->min_step, read_int(c, s, "min_step", p, 1, int64_t(kMaxInt)));
  ASSAY_ASSIGN_OR_RETURN(a->max_step, read_int(c, s, "max_step", p, 1, int64_t(kMaxInt)));
  if (a->max_step < a->min_step)
    return c.err(p + "/max_step", "an integer >= min_step (" + std::to_string(a->min_step) + ")",
                 s["max_step"]);
  if (s.contains("reduction_factor")) {
    ASSAY_ASSIGN_OR_RETURN(int64_t eta, read_int(c, s, "reduction_factor", p, 2, 1000));
    a->reduction_factor = static_cast<int>(eta);
  }
  // Rungs of bracket 0: the number of brackets may not exceed it.
  int64_t n_rungs = static_cast<int64_t>(rung_steps(*a, 0).size());
  if (s.contains("brackets")) {
    ASSAY_ASSIGN_OR_RETURN(int64_t b, read_int(c, s, "brackets", p, 1, 1000));
    if (b > n_rungs)
      return c.err(p + "/brackets",
                   "at most the number of rungs (" + std::to_string(n_rungs) +
                       ": min_step * reduction_factor^k <= max_step)",
                   s["brackets"]);
    a->brackets = static_cast<int>(b);
  }
  return Status::Ok();
}

Status check_space(const Ctx& c, const SearchSpec& spec) {
  if (spec.space.empty()) return c.err("/space", "at least one dimension to search", Json::object());
  for (const auto& [name, d] : spec.space) {
    const std::string ptr = "/space/" + name;
    if (d.kind == Dim::Kind::kGrid && spec.sampler == Sampler::kTpe)
      return c.err(ptr + "/type", "uniform, loguniform, int or choice with sampler tpe", "grid");
    if ((d.kind == Dim::Kind::kChoice || d.kind == Dim::Kind::kGrid) && d.values.empty())
      return c.err(ptr + "/values", "a non-empty array", Json::array());
    if (d.kind == Dim::Kind::kUniform &&
        !(std::isfinite(d.low) && std::isfinite(d.high) && std::isfinite(d.high - d.low) &&
          d.low < d.high))
      return c.err(ptr, "finite bounds low < high", Json{d.low, d.high});
    if (d.kind == Dim::Kind::kLogUniform &&
        !(d.low > 0 && std::isfinite(d.high) && d.low < d.high))
      return c.err(ptr, "finite bounds 0 < low < high", Json{d.low, d.high});
    if (d.kind == Dim::Kind::kInt &&
        !(std::fabs(d.low) <= kMaxInt && std::fabs(d.high) <= kMaxInt &&
          std::ceil(d.low) <= std::floor(d.high)))
      return c.err(ptr, "integer bounds low <= high within +-(2^53-1)", Json{d.low, d.high});
  }
  return Status::Ok();
}

Status read_tpe(const Ctx& c, const Json& t, TpeConfig* out) {
  const std::string p = "/tpe";
  if (!t.is_object()) return c.err(p, "an object", t);
  for (auto it = t.begin(); it != t.end(); ++it) {
    const std::string& k = it.key();
    if (k == "n_startup_trials") {
      ASSAY_ASSIGN_OR_RETURN(int64_t v, read_int(c, t, "n_startup_trials", p, 0, 100000));
      out->n_startup_trials = static_cast<int>(v);
    } else if (k == "n_ei_candidates") {
      ASSAY_ASSIGN_OR_RETURN(int64_t v, read_int(c, t, "n_ei_candidates", p, 1, 10000));
      out->n_ei_candidates = static_cast<int>(v);
    } else if (k == "prior_weight") {
      const Json& v = it.value();
      if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
        return c.err(p + "/prior_weight", "a finite number > 0", v);
      out->prior_weight = v.get<double>();
    } else {
      return c.err(p + "/" + k, "no such key (n_startup_trials, n_ei_candidates, prior_weight)",
                   it.value());
    }
  }
  return Status::Ok();
}

// The "search" object: type, objective(s) and the ASHA settings.
Status read_search_object(const Ctx& c, const Json& doc, SearchSpec* spec) {
  const Json& s = doc["search"];
  if (!s.is_object()) return c.err("/search", "an object", s);
  static const char* kKeys[] = {"type", "metric", "mode", "objectives", "min_step", "max_step",
                                "reduction_factor", "brackets"};
  for (auto it = s.begin(); it != s.end(); ++it) {
    bool known = false;
    for (const char* k : kKeys) known = known || it.key() == k;
    if (!known)
      return c.err("/search/" + it.key(),
                   "no such key (type, metric, mode, objectives, min_step, max_step, "
                   "reduction_factor, brackets)",
                   it.value());
  }
  const Json type = s.value("type", Json());
  if (type != "asha" && type != "none") return c.err("/search/type", "\"asha\" or \"none\"", type);
  if (s.contains("objectives") && doc.contains("objectives"))
    return c.err("/search/objectives", "objectives in one place only (also given at /objectives)",
                 s["objectives"]);
  if (s.contains("objectives") && (s.contains("metric") || s.contains("mode")))
    return c.err("/search/objectives", "either metric and mode, or objectives, not both",
                 s["objectives"]);
  if (s.contains("objectives")) {
    ASSAY_ASSIGN_OR_RETURN(spec->objectives,
                           read_objectives(c, s["objectives"], "/search/objectives"));
  } else if (s.contains("metric") || s.contains("mode")) {
    Json o = Json::object();
    if (s.contains("metric")) o["metric"] = s["metric"];
    o["mode"] = s.value("mode", Json("min"));
    ASSAY_ASSIGN_OR_RETURN(Objective ob, read_objective(c, o, "/search"));
    spec->objectives = {ob};
  }
  if (type == "asha") {
    AshaConfig a;
    ASSAY_RETURN_IF_ERROR(read_asha(c, s, &a));
    spec->asha = a;
  } else {
    for (const char* k : {"min_step", "max_step", "reduction_factor", "brackets"})
      if (s.contains(k)) return c.err(std::string("/search/") + k, "no ASHA key with type none",
                                      s[k]);
  }
  return Status::Ok();
}

}  // namespace

bool has_search(const Json& doc) {
  if (!doc.is_object()) return false;
  for (const char* k : {"search", "sampler", "objectives", "max_concurrent", "tpe"})
    if (doc.contains(k)) return true;
  return false;
}

Result<SearchSpec> parse_search_spec(const Json& doc,
                                     const std::map<std::string, schemas::Dimension>& space,
                                     std::string_view source) {
  Ctx c{source};
  if (!doc.is_object()) return c.err("", "a sweep object", doc);
  SearchSpec spec;
  spec.space = space;
  if (doc.contains("search")) ASSAY_RETURN_IF_ERROR(read_search_object(c, doc, &spec));
  if (doc.contains("objectives")) {
    ASSAY_ASSIGN_OR_RETURN(spec.objectives, read_objectives(c, doc["objectives"], "/objectives"));
  }
  if (spec.asha && spec.objectives.empty())
    return c.err("/search/metric", "a metric (with mode), or objectives, for ASHA", Json());
  if (spec.asha) spec.asha->objectives = spec.objectives;

  if (doc.contains("sampler")) {
    const Json& v = doc["sampler"];
    if (v == "random") spec.sampler = Sampler::kRandom;
    else if (v == "tpe") spec.sampler = Sampler::kTpe;
    else return c.err("/sampler", "\"random\" or \"tpe\"", v);
  }
  if (spec.sampler == Sampler::kTpe && spec.objectives.empty())
    return c.err("/search", "a metric or objectives for the tpe sampler to optimise",
                 doc.value("search", Json()));
  if (doc.contains("samples")) {
    ASSAY_ASSIGN_OR_RETURN(int64_t n, read_int(c, doc, "samples", "", 1, 100000));
    spec.samples = static_cast<int>(n);
  }
  if (doc.contains("max_concurrent")) {
    ASSAY_ASSIGN_OR_RETURN(int64_t n, read_int(c, doc, "max_concurrent", "", 0, 100000));
    spec.max_concurrent = static_cast<int>(n);
  }
  if (doc.contains("seed")) {
    ASSAY_ASSIGN_OR_RETURN(int64_t s, read_int(c, doc, "seed", "", 0, int64_t(kMaxInt)));
    spec.seed = static_cast<uint64_t>(s);
  }
  if (doc.contains("tpe")) ASSAY_RETURN_IF_ERROR(read_tpe(c, doc["tpe"], &spec.tpe));
  ASSAY_RETURN_IF_ERROR(check_space(c, spec));
  return spec;
}

}  // namespace assay::coordinator
