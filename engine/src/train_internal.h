// Shared pieces of the training recipes (not a public header): config access
// with path-precise errors, example loading and batching, the data sampler,
// the transcript, metric reporting and the optimisation loop.
#pragma once

#include <nlohmann/json.hpp>

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "assay/engine.h"
#include "assay/engine_cuda.h"
#include "assay/status.h"
#include "assay/train.h"

namespace assay::train::detail {

using Json = nlohmann::json;

// ------------------------------------------------------------------ config

// A JSON object seen through a path ("" for the root, "/objective" below it).
// Getters leave `out` untouched when the field is absent and return an error
// "<source>: <path>/<key>: expected ..., got ..." when it is ill-typed or out
// of range. Every key read is remembered, so finish() can reject unknown keys
// (typos must not silently fall back to defaults).
class Cfg {
 public:
  Cfg(const Json* obj, std::string source, std::string path);

  bool has(const std::string& key) const;
  Status number(const std::string& key, double& out, double lo, double hi, bool lo_open = false);
  Status integer(const std::string& key, int64_t& out, int64_t lo, int64_t hi);
  Status integer(const std::string& key, int& out, int64_t lo, int64_t hi);
  Status boolean(const std::string& key, bool& out);
  Status string(const std::string& key, std::string& out, const std::vector<std::string>& allowed = {});
  // A string or a non-empty array of strings.
  Status strings(const std::string& key, std::vector<std::string>& out);
  Status required(const std::string& key);
  // A nested object; absent means an empty object.
  Result<Cfg> object(const std::string& key);
  // Error for a key that this recipe does not read.
  Status finish() const;
  std::string where(const std::string& key) const { return source_ + ": " + path_ + "/" + key; }
  const std::string& source() const { return source_; }
  Status error(const std::string& key, const std::string& expected) const;

 private:
  const Json* obj_;
  std::string source_, path_;
  std::set<std::string> used_;
  std::vector<std::unique_ptr<Json>> empties_;
};

// The fields every recipe shares.
struct CommonConfig {
  std::string source;           // the config's name in errors (file name)
  std::string out_dir;
  uint64_t seed = 1;             // model (and adapter) initialisation
  // Data order: every Sampler (shuffling, batch composition) is seeded from
  // it, so the order can vary with the init fixed and vice versa. Defaults
  // to `seed`, which keeps configs written before it byte-identical.
  uint64_t data_seed = 1;
  int threads = 1;
  std::string init;             // checkpoint directory; empty = random init from `model`
  engine::GPTConfig model{0, 128, 2, 4, 64};  // vocab_size 0 = the tokenizer's
  std::string tokenizer = "byte";  // "byte" or a tokenizer directory (random init only)
  int batch_size = 8;
  int seq_len = 128;            // tokens per sequence (T)
  int64_t steps = 100;
  double lr = 1e-3, lr_min = 0;
  int64_t warmup = 0;
  std::string schedule = "cosine";
  double weight_decay = 0.01, grad_clip = 1.0;
  int64_t log_every = 10, checkpoint_every = 0;  // 0: only the final checkpoint
  // "auto" (cuda:0 when a GPU is visible, else cpu), "cpu", "cuda" or "cuda:N".
  std::string device = "auto";
};

// Reads the common fields from the root; `init_required` for recipes that
// fine-tune an existing model (align, unlearn).
Status read_common(Cfg& root, CommonConfig& c, bool init_required);

// ------------------------------------------------------------------- data

// "a, b, c" for messages.
inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// One training sequence: [bos] prompt completion [eos]. Loss positions are
// the completion and the eos (prompt masked) unless the recipe trains on all.
struct Seq {
  std::string id;
  std::vector<int32_t> prompt, completion;
};

// A preference example: one prompt, two completions.
struct PrefSeq {
  std::string id;
  std::vector<int32_t> prompt, chosen, rejected;
};

// Text (.txt: split into chunks of `chunk_tokens`) or JSONL with one of
// {"text"}, {"question","answer"}, {"prompt","completion"},
// {"prompt","chosen",...} (chosen used as the completion) per line.
// Ids: the line's "id" when present, else "<file name>:<line>".
Result<std::vector<Seq>> load_sequences(const std::string& path, const engine::Tokenizer& tok,
                                        int chunk_tokens);
// Several files, concatenated in the given order.
Result<std::vector<Seq>> load_sequences(const std::vector<std::string>& paths,
                                        const engine::Tokenizer& tok, int chunk_tokens);
Result<std::vector<PrefSeq>> load_prefs(const std::string& path, const engine::Tokenizer& tok);

struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> x;    // [B, T] inputs
  std::vector<int> y;        // [B, T] targets, -1 on padding
  std::vector<float> mask;   // [B, T] 1 on loss positions
  int64_t tokens = 0;        // non-padding input tokens
};

// Builds a batch; T = the longest sequence (at most max_T). Over-long
// sequences lose prompt tokens from the left first, then completion tail.
Batch make_batch(const std::vector<const Seq*>& seqs, int max_T, int bos, int eos, bool mask_prompt);

// Deterministic epoch-wise shuffling: next(k) returns k indices; a new
// permutation starts when one is used up.
class Sampler {
 public:
  Sampler(std::size_t n, uint64_t seed);
  std::vector<std::size_t> next(int k);
  // Position for checkpoints: the permutation is a function of (seed,
  // epoch), so (epoch, pos) restores the data order exactly.
  int64_t epoch() const { return epoch_; }
  std::size_t pos() const { return pos_; }
  Status restore(int64_t epoch, std::size_t pos);

 private:
  void reshuffle();
  std::size_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::size_t pos_ = 0;
  std::vector<std::size_t> perm_;
};

// ------------------------------------------------------------ reporting

class Transcript {
 public:
  Status open(const std::string& path);
  // Opens `path` holding `lines` (earlier lines of a resumed run) and goes on
  // numbering from there.
  Status open_continuing(const std::string& path, const std::vector<std::string>& lines);
  int64_t lines() const { return order_; }
  Status flush();
  void record(int64_t step, const std::string& example_id, const std::string& split = "");
  Status close();

 private:
  std::ofstream f_;
  std::string path_;
  int64_t order_ = 0;
};

class Reporter {
 public:
  Reporter(const RunEnv& env, std::string recipe, int64_t total_steps);
  void metrics(int64_t step, const std::map<std::string, double>& m);
  void checkpoint(int64_t step, const std::string& path, const std::string& hash);
  void note(const std::string& line);

 private:
  void write_fd(const std::string& line);
  RunEnv env_;
  std::string recipe_;
  int64_t total_;
};

// ---------------------------------------------------------------- training

// What a recipe holds for the whole run.
struct Run {
  std::string recipe;
  CommonConfig cfg;
  std::string config_sha256;
  std::string out_dir;
  engine::GPT model;
  std::unique_ptr<engine::Tokenizer> tok;
  std::string parent_hash;  // init checkpoint hash, "" for random init
  std::map<std::string, std::string> meta_extra;  // recorded in every checkpoint
  Transcript transcript;
  std::unique_ptr<Reporter> reporter;
  // The trained model's device copy when running on CUDA (null on the CPU).
  // Parameters live there during training; `model` is refreshed from it
  // before each checkpoint.
  engine::cuda::Device device;
  std::unique_ptr<engine::cuda::CudaGPT> dev;
  std::vector<float> host_logits;  // policy_forward's copy on CUDA
  // Data samplers whose positions go into each checkpoint's
  // trainer_state.json (the recipe registers them before train_loop).
  std::vector<Sampler*> samplers;
  // The checkpoint this run resumes from (ASSAY_RESUME_FROM or --resume),
  // "" for a fresh start; resume_step is its step.
  std::string resume_from;
  int64_t resume_step = 0;
  Json resume_state;  // its trainer_state.json
  // Its metadata (config.json's "assay" block): recipes with state outside
  // the model (LoKU: adapter base, init) read what they need from it.
  engine::CheckpointMeta resume_meta;
};

// Exit code of `assay train` when it stopped on a preemption request
// (SIGUSR1 or the file named by ASSAY_PREEMPT_FILE) after writing a
// checkpoint (EX_TEMPFAIL: try again later).
inline constexpr int kPreemptedExitCode = 75;
// train_loop's error after such a stop starts with this text.
inline constexpr const char* kPreemptedMessage = "preempted";

// Loads the init checkpoint or builds a random model, creates the output
// directory, opens the transcript, and places the model on cfg.device
// (run.dev is set for a CUDA device).
Result<std::unique_ptr<Run>> start_run(const std::string& recipe, const CommonConfig& cfg,
                                       const std::string& config_text, const RunEnv& env);

// One step's result: the loss to report and extra metrics; gradients are in
// run.model.grads() (zeroed by the loop before the call).
struct StepOut {
  double loss = 0;
  int64_t tokens = 0;
  std::map<std::string, double> extra;
};
using StepFn = std::function<Result<StepOut>(int64_t step)>;
// Extra metrics computed only at log steps (e.g. holdout loss).
using LogFn = std::function<Result<std::map<std::string, double>>(int64_t step)>;

// Whether train_loop writes a metric line after `step` (1-based): every
// log_every steps, the first and the last.
inline bool is_log_step(const CommonConfig& c, int64_t step) {
  return step % c.log_every == 0 || step == 1 || step == c.steps;
}

// Runs cfg.steps steps: zero_grad, fn, clip, AdamW with the LR schedule,
// metrics, checkpoints; writes final/ and closes the transcript.
Result<RunSummary> train_loop(Run& run, const StepFn& fn, const LogFn& on_log = nullptr);

// ------------------------------------------------- checkpoints and resume
// The pieces of train_loop that a recipe with its own loop (LoKU) uses to
// checkpoint, stop on preemption and resume the same way.

// Preemption requests: SIGUSR1 (sent by `assay worker` to the run's process
// group) sets a flag; requested() also polls the file named by
// ASSAY_PREEMPT_FILE. The SIGUSR1 handler is installed for the object's
// lifetime (one watch at a time).
class PreemptWatch {
 public:
  PreemptWatch();
  ~PreemptWatch();
  PreemptWatch(const PreemptWatch&) = delete;
  PreemptWatch& operator=(const PreemptWatch&) = delete;
  bool requested() const;

 private:
  struct sigaction old_ {};
  bool installed_ = false;
  std::string file_;
};

// "ckpt-000042".
std::string step_dir(int64_t step);

// Files a recipe writes into a checkpoint directory beside the model (LoKU:
// adapter/), after the weights and before the checkpoint is announced.
using CheckpointExtra = std::function<Status(const std::string& dir)>;

// Beside the weights, what resuming needs: optimizer.bin (`opt`'s moments
// and step count, downloaded from run.dev when the run is on a CUDA device;
// none when opt is null) and trainer_state.json (step,
// positions of run.samplers, transcript length). Neither is hashed.
Status write_trainer_state(Run& run, const engine::AdamW* opt, int64_t step, const std::string& dir);

// Writes <out_dir>/<name> (model, `extra`, trainer state), makes it the
// parent of the next one and reports it; returns its hash.
Result<std::string> write_checkpoint(Run& run, RunSummary& sum, int64_t step, const std::string& name,
                                     const engine::AdamW* opt = nullptr,
                                     const CheckpointExtra& extra = nullptr);

// Restores `opt` (or run.dev's optimizer state on a CUDA device) and
// run.samplers from run.resume_state; returns the first step to run (1 for a
// fresh start).
Result<int64_t> restore_state(Run& run, engine::AdamW& opt);

// End of `step`: the periodic checkpoint (checkpoint_every) and, when a
// preemption was requested and the run is not done, a checkpoint (the
// periodic one if just written), the transcript closed and an Unavailable
// status starting with kPreemptedMessage, which the loop returns.
Status step_boundary(Run& run, RunSummary& sum, const PreemptWatch& preempt, int64_t step,
                     const engine::AdamW* opt, const CheckpointExtra& extra = nullptr);

// Forward pass of a batch; returns the logits view.
Result<std::span<const float>> forward(engine::GPT& m, const Batch& b);

// The trained model's forward and backward wherever it lives: on the CPU
// these are forward(run.model, b) and run.model.backward(dlogits); on CUDA the
// logits are copied to the host (run.host_logits) and dlogits uploaded, so
// host objectives work unchanged (correct, not fast: [B,T,V] crosses PCIe).
Result<std::span<const float>> policy_forward(Run& run, const Batch& b);
Status policy_backward(Run& run, const float* dlogits);

}  // namespace assay::train::detail

namespace assay::train::detail {

// The recipes; each reads its own fields from `root`, rejects unknown ones and
// runs. `text` is the config text (hashed into checkpoint metadata).
Result<RunSummary> recipe_lm(const std::string& recipe, Cfg& root, const std::string& text,
                             const RunEnv& env);
Result<RunSummary> recipe_distill(Cfg& root, const std::string& text, const RunEnv& env);
Result<RunSummary> recipe_align(Cfg& root, const std::string& text, const RunEnv& env);
Result<RunSummary> recipe_unlearn(Cfg& root, const std::string& text, const RunEnv& env);

// The batch of `idx` examples from `data`, recorded in the transcript.
Batch take_batch(Run& run, const std::vector<Seq>& data, const std::vector<std::size_t>& idx,
                 int64_t step, bool mask_prompt, const std::string& split = "");

// The learning-rate schedule a config asks for (lr, lr_min, warmup, steps, schedule).
engine::LrSchedule schedule_of(const CommonConfig& c);

// The unlearning recipes' /data {forget (required), retain, holdout}; the
// returned Cfg names fields in later errors.
Result<Cfg> read_unlearn_data(Cfg& root, std::string* forget, std::string* retain,
                              std::string* holdout);

}  // namespace assay::train::detail
