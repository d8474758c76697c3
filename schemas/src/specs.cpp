// Typed specs: validate against the embedded schema, then extract. Checks
// that JSON Schema cannot express (low < high, placeholders) follow, with the
// same error format.
#include "assay/specs.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "assay/json_limits.h"
#include "assay/validate.h"

namespace assay::schemas {
namespace {

std::map<std::string, std::string> string_map(const Json& doc, const char* key) {
  std::map<std::string, std::string> out;
  if (doc.contains(key))
    for (auto it = doc[key].begin(); it != doc[key].end(); ++it)
      out[it.key()] = it.value().get<std::string>();
  return out;
}

Resources read_resources(const Json& doc) {
  Resources r;
  if (!doc.contains("resources")) return r;
  const Json& j = doc["resources"];
  r.gpus = j.value("gpus", 0);
  r.gpu_mem_mb = j.value("gpu_mem_mb", int64_t(0));
  r.cpus = j.value("cpus", 1);
  return r;
}

Result<Dimension> read_dimension(const Json& j, const std::string& ptr, std::string_view source) {
  Dimension d;
  const std::string t = j["type"].get<std::string>();
  if (t == "grid" || t == "choice") {
    d.kind = t == "grid" ? Dimension::Kind::kGrid : Dimension::Kind::kChoice;
    for (const auto& v : j["values"]) d.values.push_back(v);
    return d;
  }
  d.kind = t == "uniform" ? Dimension::Kind::kUniform
           : t == "loguniform" ? Dimension::Kind::kLogUniform : Dimension::Kind::kInt;
  d.low = j["low"].get<double>();
  d.high = j["high"].get<double>();
  const bool ok = d.kind == Dimension::Kind::kInt ? d.low <= d.high : d.low < d.high;
  if (!ok)
    return Status::Invalid(std::string(source) + ": " + ptr + "/high: expected a number " +
                           (d.kind == Dimension::Kind::kInt ? ">= " : "> ") + "low (" +
                           Json(j["low"]).dump() + "), got " + j["high"].dump());
  // A draw is low + u * (high - low): an infinite span would draw inf or NaN.
  if (d.kind == Dimension::Kind::kUniform && !std::isfinite(d.high - d.low))
    return Status::Invalid(std::string(source) + ": " + ptr +
                           "/high: expected high - low to be a finite number, got low " +
                           j["low"].dump() + " and high " + j["high"].dump());
  return d;
}

// Every {name} in the command must be a dimension or "seed". One pass over
// the command: a name ends at its first non-identifier character, so text
// such as "{{{{...}" is not rescanned from every brace.
Status check_placeholders(const SweepSpec& s, std::string_view source) {
  const std::string& c = s.command;
  auto ident = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  for (size_t i = c.find('{'); i != std::string::npos; i = c.find('{', i + 1)) {
    size_t j = i + 1;
    while (j < c.size() && ident(c[j])) ++j;
    // Not a placeholder: no name, no closing brace right after it (a JSON
    // literal, say), or ${VAR}.
    if (j == i + 1 || j == c.size() || c[j] != '}') continue;
    if (i > 0 && c[i - 1] == '$') continue;
    const std::string name = c.substr(i + 1, j - i - 1);
    if (name != "seed" && !s.space.count(name)) {
      std::string known = "seed";
      for (const auto& [k, _] : s.space) known += ", " + k;
      return Status::Invalid(std::string(source) + ": /command: placeholder {" + name +
                             "} names no dimension of /space; expected one of " + known);
    }
  }
  return Status::Ok();
}

}  // namespace

std::string canonical_json(const Json& doc) { return doc.dump(); }  // object keys are sorted

Result<SweepSpec> parse_sweep_spec(const Json& doc, std::string_view source) {
  ASSAY_RETURN_IF_ERROR(validate_embedded("sweep.schema.json", doc, source));
  SweepSpec s;
  s.raw = doc;
  s.name = doc["name"].get<std::string>();
  s.command = doc["command"].get<std::string>();
  if (doc.contains("space"))
    for (auto it = doc["space"].begin(); it != doc["space"].end(); ++it) {
      ASSAY_ASSIGN_OR_RETURN(Dimension d, read_dimension(it.value(), "/space/" + it.key(), source));
      s.space[it.key()] = std::move(d);
    }
  s.samples = doc.value("samples", 1);
  s.seed = doc.value("seed", uint64_t(0));
  if (doc.contains("seeds"))
    for (const auto& v : doc["seeds"]) s.seeds.push_back(int64_t(v.get<double>()));
  s.resources = read_resources(doc);
  s.priority = doc.value("priority", 0);
  s.labels = string_map(doc, "labels");
  s.max_attempts = doc.value("max_attempts", 1);
  if (doc.contains("timeout")) s.timeout_s = doc["timeout"].get<double>();
  s.env = string_map(doc, "env");
  if (doc.contains("evals"))
    for (const auto& e : doc["evals"])
      s.evals.push_back({e["suite"].get<std::string>(), e.value("on", std::string("final")),
                         e.value("args", Json::object())});
  ASSAY_RETURN_IF_ERROR(check_placeholders(s, source));
  return s;
}

Result<RunSpec> parse_run_spec(const Json& doc, std::string_view source) {
  ASSAY_RETURN_IF_ERROR(validate_embedded("run.schema.json", doc, source));
  RunSpec r;
  r.raw = doc;
  r.name = doc.value("name", std::string());
  r.command = doc["command"].get<std::string>();
  r.params = doc.value("params", Json::object());
  r.resources = read_resources(doc);
  r.priority = doc.value("priority", 0);
  r.labels = string_map(doc, "labels");
  r.max_attempts = doc.value("max_attempts", 1);
  if (doc.contains("timeout")) r.timeout_s = doc["timeout"].get<double>();
  r.env = string_map(doc, "env");
  return r;
}

Result<SuiteSpec> parse_suite_spec(const Json& doc, std::string_view source) {
  ASSAY_RETURN_IF_ERROR(validate_embedded("suite.schema.json", doc, source));
  SuiteSpec s;
  s.raw = doc;
  s.name = doc["name"].get<std::string>();
  s.version = doc.value("version", std::string("1"));
  s.task = doc["task"].get<std::string>();
  s.data = string_map(doc, "data");
  if (doc.contains("prompt_template")) s.prompt_template = doc["prompt_template"].get<std::string>();
  s.num_fewshot = doc.value("num_fewshot", 0);
  s.fewshot_seed = doc.value("fewshot_seed", int64_t(1234));
  if (doc.contains("filters")) s.filters = doc["filters"].get<std::vector<std::string>>();
  if (doc.contains("metrics")) s.metrics = doc["metrics"].get<std::vector<std::string>>();
  if (doc.contains("limit")) s.limit = doc["limit"].get<int64_t>();
  s.max_gen_tokens = doc.value("max_gen_tokens", 256);
  if (doc.contains("stop")) s.stop = doc["stop"].get<std::vector<std::string>>();
  s.options = doc.value("options", Json::object());
  return s;
}

namespace {

// 0..2^53-1, the step range metric-line.schema.json allows.
bool nonneg_integer(const Json& v) {
  constexpr int64_t kMax = (int64_t{1} << 53) - 1;
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= uint64_t(kMax);
  if (v.is_number_integer()) return v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMax;
  if (v.is_number_float()) {
    double d = v.get<double>();
    return d >= 0 && d == std::floor(d) && d <= double(kMax);
  }
  return false;
}

// The common, valid shapes of a metric line, checked by hand: a worker
// parses every line a run writes, and the generic validator is several times
// slower. It accepts only what metric-line.schema.json accepts; anything
// else goes to the validator, which also words the error.
bool fast_metric_line(const Json& doc, MetricLine* m) {
  if (!doc.is_object() || !doc.contains("step") || !nonneg_integer(doc["step"])) return false;
  const bool ckpt = doc.contains("checkpoint");
  size_t known = 1 + (doc.contains("time") ? 1 : 0) + (ckpt ? 1 : 0) + (doc.contains("metrics") ? 1 : 0);
  if (known != doc.size() || ckpt == doc.contains("metrics")) return false;
  if (doc.contains("time") && !doc["time"].is_number()) return false;
  if (ckpt) {
    const Json& c = doc["checkpoint"];
    if (!c.is_string() || c.get_ref<const std::string&>().empty()) return false;
    m->checkpoint = c.get<std::string>();
  } else {
    const Json& ms = doc["metrics"];
    if (!ms.is_object() || ms.empty()) return false;
    for (auto it = ms.begin(); it != ms.end(); ++it) {
      // Key length limits count code points; plain ASCII keys are the fast case.
      const std::string& k = it.key();
      if (k.empty() || k.size() > 200 || !it.value().is_number()) return false;
      for (unsigned char ch : k)
        if (ch >= 0x7f || ch < 0x20) return false;
      m->metrics[k] = it.value().get<double>();
    }
  }
  m->step = int64_t(doc["step"].get<double>());
  if (doc.contains("time")) m->time = doc["time"].get<double>();
  return true;
}

// A metric name becomes a label in every client and a column of the
// database's runs_wide view: control characters (NUL above all) have no place
// there, and the coordinator refuses them.
Status check_metric_names(const Json& doc) {
  if (!doc.is_object() || !doc.contains("metrics") || !doc["metrics"].is_object())
    return Status::Ok();
  for (auto it = doc["metrics"].begin(); it != doc["metrics"].end(); ++it)
    for (unsigned char c : it.key())
      if (c < 0x20 || c == 0x7f)
        return Status::Invalid("metric line: /metrics: expected metric names without control "
                               "characters, got " +
                               Json(it.key()).dump(-1, ' ', false, Json::error_handler_t::replace));
  return Status::Ok();
}

}  // namespace

Result<MetricLine> parse_metric_line(std::string_view line) {
  ASSAY_ASSIGN_OR_RETURN(Json doc, parse_json(line, "metric line"));
  MetricLine m;
  if (fast_metric_line(doc, &m)) return m;
  ASSAY_RETURN_IF_ERROR(check_metric_names(doc));
  ASSAY_RETURN_IF_ERROR(validate_embedded("metric-line.schema.json", doc, "metric line"));
  m = MetricLine{};
  m.step = int64_t(doc["step"].get<double>());
  if (doc.contains("time")) m.time = doc["time"].get<double>();
  if (doc.contains("checkpoint")) {
    m.checkpoint = doc["checkpoint"].get<std::string>();
  } else {
    for (auto it = doc["metrics"].begin(); it != doc["metrics"].end(); ++it)
      m.metrics[it.key()] = it.value().get<double>();
  }
  return m;
}

Result<Json> load_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  // Errors name the file, the line and column, and the depth limit or the
  // duplicate key where that is the problem.
  return parse_json(ss.str(), path);
}

namespace {
std::string base_name(const std::string& path) {
  auto p = path.find_last_of('/');
  return p == std::string::npos ? path : path.substr(p + 1);
}
}  // namespace

Result<SweepSpec> load_sweep_spec(const std::string& path) {
  ASSAY_ASSIGN_OR_RETURN(Json doc, load_json_file(path));
  return parse_sweep_spec(doc, base_name(path));
}

Result<RunSpec> load_run_spec(const std::string& path) {
  ASSAY_ASSIGN_OR_RETURN(Json doc, load_json_file(path));
  return parse_run_spec(doc, base_name(path));
}

Result<SuiteSpec> load_suite_spec(const std::string& path) {
  ASSAY_ASSIGN_OR_RETURN(Json doc, load_json_file(path));
  return parse_suite_spec(doc, base_name(path));
}

}  // namespace assay::schemas
