// Training recipes: pretrain, sft, distill, align, unlearn.
//
// A recipe reads a JSON config (validated with errors that name the file and
// the field, e.g. "config.json: /lr: expected a number > 0, got -1"), trains
// the native GPT engine on the device the config names ("device": auto, cpu,
// cuda or cuda:N; auto = cuda:0 when this build has CUDA and a GPU is
// visible), and produces in its output directory:
//   ckpt-<step>/  intermediate checkpoints (every checkpoint_every steps)
//   final/        the last checkpoint; each checkpoint's metadata names its
//                 parent (the previous checkpoint of the run, or the init)
//   transcript.jsonl  one line per training example in the order seen:
//                 {"step": s, "example_id": "...", "order": k[, "split": "..."]}
// Metrics follow the run metric protocol: with env ASSAY_METRICS_FD set, JSON
// lines {"step": s, "metrics": {...}} and {"checkpoint": path, "step": s} are
// written to that descriptor; a readable log always goes to the console.
// The output directory is env ASSAY_OUTPUT_DIR when set, else config out_dir.
//
// Determinism: for the same config (seed) and thread count the transcript and
// the checkpoint bytes are identical run to run.
//
// Config fields: recipe_config_help() (shown by `assay train --help`) and the
// examples in examples/train/.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::train {

// "pretrain", "sft", "distill", "align", "unlearn".
const std::vector<std::string>& recipe_names();

// Where a run reports; the defaults read the environment.
struct RunEnv {
  // Overrides config out_dir when non-empty (the CLI passes ASSAY_OUTPUT_DIR).
  std::string output_dir;
  // Metric protocol descriptor, -1 for none (the CLI passes ASSAY_METRICS_FD).
  int metrics_fd = -1;
  // Human-readable log; null for silence.
  std::ostream* console = nullptr;
};

// Reads ASSAY_OUTPUT_DIR and ASSAY_METRICS_FD. An unparsable ASSAY_METRICS_FD
// is an error naming the variable and value.
Result<RunEnv> env_from_process(std::ostream* console);

struct RunSummary {
  std::string output_dir;
  int64_t steps = 0;
  double first_loss = 0;             // loss at step 1
  double last_loss = 0;              // loss at the last step
  std::vector<std::string> checkpoints;  // directories, in order; the last is final/
  std::string final_hash;            // checkpoint hash of final/
  std::map<std::string, double> last_metrics;
};

// Runs `recipe` with the config in the JSON file `config_path`.
// `overrides` are "dotted.key=value" edits applied before validation (value
// parsed as JSON when it parses, else taken as a string), so that a sweep can
// vary fields from the command line: objective.type=rkl, lr=3e-4.
// The effective config is written to <output dir>/train_config.json.
Result<RunSummary> run_recipe(const std::string& recipe, const std::string& config_path,
                              const RunEnv& env, const std::vector<std::string>& overrides = {});
// Same, with the config as JSON text; `source` names it in errors.
Result<RunSummary> run_recipe_text(const std::string& recipe, const std::string& config_text,
                                   const std::string& source, const RunEnv& env,
                                   const std::vector<std::string>& overrides = {});

// A short description of the config fields of a recipe (for --help).
std::string recipe_config_help(const std::string& recipe);

}  // namespace assay::train
