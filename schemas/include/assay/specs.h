// Typed specs parsed from JSON documents, with path-precise errors.
//
// The JSON Schema files in schemas/*.schema.json describe the same documents
// for other tools; a test holds the two to the same verdict on a corpus.
// Errors read "<source>: <json pointer>: expected <what>, got <found>", e.g.
//   sweep.json: /space/lr/low: expected a number > 0, got -1
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay::schemas {

using Json = nlohmann::json;

struct Resources {
  int gpus = 0;             // whole GPUs, 0..8
  int64_t gpu_mem_mb = 0;   // free memory needed on each GPU
  int cpus = 1;             // CPU slots, 0..256
};

// When and what to evaluate after a run produces checkpoints.
struct EvalHook {
  std::string suite;        // suite name or path to a suite spec
  std::string on = "final"; // "final" | "every"
  Json args = Json::object();  // extra arguments passed to the eval run
};

// A search-space dimension.
struct Dimension {
  enum class Kind { kGrid, kChoice, kUniform, kLogUniform, kInt };
  Kind kind = Kind::kGrid;
  std::vector<Json> values;   // grid, choice: scalars
  double low = 0, high = 0;   // uniform, loguniform (low > 0), int (inclusive)
};

struct SweepSpec {
  std::string name;
  std::string command;                   // template with {param} placeholders
  std::map<std::string, Dimension> space;
  int samples = 1;                       // random draws per grid point
  uint64_t seed = 0;                     // seed of the random draws
  std::vector<int64_t> seeds;            // replicates: each run gets {seed}
  Resources resources;
  int priority = 0;
  std::map<std::string, std::string> labels;  // worker labels required
  int max_attempts = 1;
  std::optional<double> timeout_s;
  std::map<std::string, std::string> env;
  std::vector<EvalHook> evals;
  Json raw;                              // the document as given
};

struct RunSpec {
  std::string name;
  std::string command;
  Json params = Json::object();          // flat object of scalars
  Resources resources;
  int priority = 0;
  std::map<std::string, std::string> labels;
  int max_attempts = 1;
  std::optional<double> timeout_s;
  std::map<std::string, std::string> env;
  Json raw;
};

// One line of the run metric protocol (written to ASSAY_METRICS_FD).
struct MetricLine {
  int64_t step = 0;
  std::map<std::string, double> metrics;  // empty for a checkpoint line
  std::optional<std::string> checkpoint;  // path, for a checkpoint line
  std::optional<double> time;             // unix seconds, optional
};

struct SuiteSpec {
  std::string name;
  std::string version = "1";
  std::string task;                       // gsm8k | ood | provenance | unlearning
  std::map<std::string, std::string> data;  // role -> path (test, fewshot, id, ood, forget...)
  std::optional<std::string> prompt_template;
  int num_fewshot = 0;
  int64_t fewshot_seed = 1234;
  std::vector<std::string> filters;
  std::vector<std::string> metrics;
  std::optional<int64_t> limit;
  int max_gen_tokens = 256;
  std::vector<std::string> stop;
  Json options = Json::object();          // task-specific settings
  Json raw;
};

// `source` names the document in errors (usually its file name).
Result<SweepSpec> parse_sweep_spec(const Json& doc, std::string_view source);
Result<RunSpec> parse_run_spec(const Json& doc, std::string_view source);
Result<SuiteSpec> parse_suite_spec(const Json& doc, std::string_view source);
Result<MetricLine> parse_metric_line(std::string_view line);

// Reads and parses a JSON file; errors name the file and the line/column.
Result<Json> load_json_file(const std::string& path);
Result<SweepSpec> load_sweep_spec(const std::string& path);
Result<RunSpec> load_run_spec(const std::string& path);
Result<SuiteSpec> load_suite_spec(const std::string& path);

// Canonical text of a JSON document (sorted keys, no spaces), for hashing.
std::string canonical_json(const Json& doc);

}  // namespace assay::schemas
