// The optimisation loop shared by all recipes, run setup, transcript and
// metric reporting.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "assay/json_limits.h"
#include "assay/hash.h"
#include "train_internal.h"

namespace assay::train::detail {

namespace fs = std::filesystem;

// ------------------------------------------------------------ transcript

Status Transcript::open(const std::string& path) {
  path_ = path;
  f_.open(path, std::ios::binary | std::ios::trunc);
  if (!f_) return Status::IoError(path + ": cannot open transcript for writing");
  return Status::Ok();
}

void Transcript::record(int64_t step, const std::string& example_id, const std::string& split) {
  // nlohmann's object keeps keys sorted; write by hand to keep a readable order.
  f_ << "{\"step\":" << step << ",\"example_id\":" << Json(example_id).dump()
     << ",\"order\":" << order_++;
  if (!split.empty()) f_ << ",\"split\":" << Json(split).dump();
  f_ << "}\n";
}

Status Transcript::open_continuing(const std::string& path, const std::vector<std::string>& lines) {
  ASSAY_RETURN_IF_ERROR(open(path));
  for (const auto& l : lines) f_ << l << "\n";
  order_ = static_cast<int64_t>(lines.size());
  return flush();
}

Status Transcript::flush() {
  if (!f_.is_open()) return Status::Ok();  // closed: already flushed
  f_.flush();
  if (!f_) return Status::IoError(path_ + ": transcript write failed");
  return Status::Ok();
}

Status Transcript::close() {
  f_.flush();
  if (!f_) return Status::IoError(path_ + ": transcript write failed");
  f_.close();
  return Status::Ok();
}

// -------------------------------------------------------------- reporting

Reporter::Reporter(const RunEnv& env, std::string recipe, int64_t total)
    : env_(env), recipe_(std::move(recipe)), total_(total) {}

void Reporter::write_fd(const std::string& line) {
  if (env_.metrics_fd < 0) return;
  // One write per line (retrying short writes) so a reader never sees a torn line.
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(env_.metrics_fd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (env_.console) *env_.console << "[" << recipe_ << "] warning: metrics descriptor write failed\n";
      env_.metrics_fd = -1;  // the reader went away; keep training
      return;
    }
    off += static_cast<std::size_t>(n);
  }
}

namespace {
// JSON numbers cannot be NaN/inf: the protocol sends null for them.
Json num_or_null(double x) { return std::isfinite(x) ? Json(x) : Json(nullptr); }
}  // namespace

void Reporter::metrics(int64_t step, const std::map<std::string, double>& m) {
  Json metrics = Json::object();
  for (const auto& [k, v] : m) metrics[k] = num_or_null(v);
  write_fd(Json{{"step", step}, {"metrics", metrics}}.dump() + "\n");
  if (!env_.console) return;
  std::ostringstream s;
  s << "[" << recipe_ << "] step " << step << "/" << total_;
  auto put = [&](const char* k, int prec, bool sci = false) {
    auto it = m.find(k);
    if (it == m.end()) return;
    s << " | " << k << " " << (sci ? std::scientific : std::fixed) << std::setprecision(prec) << it->second;
  };
  put("loss", 4);
  put("lr", 2, true);
  put("grad_norm", 3);
  for (const auto& [k, v] : m)
    if (k != "loss" && k != "lr" && k != "grad_norm" && k != "tokens_per_s")
      s << " | " << k << " " << std::fixed << std::setprecision(4) << v;
  put("tokens_per_s", 0);
  *env_.console << s.str() << "\n" << std::flush;
}

void Reporter::checkpoint(int64_t step, const std::string& path, const std::string& hash) {
  write_fd(Json{{"checkpoint", path}, {"step", step}}.dump() + "\n");
  if (env_.console)
    *env_.console << "[" << recipe_ << "] checkpoint step " << step << " -> " << path << " ("
                  << hash.substr(0, 12) << ")\n" << std::flush;
}

void Reporter::note(const std::string& line) {
  if (env_.console) *env_.console << "[" << recipe_ << "] " << line << "\n" << std::flush;
}

// ------------------------------------------------------------------ setup

namespace {

// <ckpt>/trainer_state.json, checked: written by the same recipe, with the
// fields train_loop restores.
Result<Json> read_trainer_state(const std::string& dir, const std::string& recipe) {
  const std::string path = (fs::path(dir) / "trainer_state.json").string();
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("resume checkpoint " + path + ": cannot read (a checkpoint "
                                  "written before resume support cannot be resumed)");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto parsed = parse_json(text, path);
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  Json j = std::move(*parsed);
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer() ||
      !j.contains("samplers") || !j["samplers"].is_array() || !j.contains("transcript_lines") ||
      !j["transcript_lines"].is_number_integer())
    return Status::Corruption(path + ": expected an object with integer step, transcript_lines "
                              "and an array samplers");
  if (j.value("recipe", std::string()) != recipe)
    return Status::Invalid(path + ": /recipe: written by '" + j.value("recipe", std::string()) +
                           "', resuming '" + recipe + "'");
  return j;
}

// The first `n` lines of the transcript beside the checkpoint (the run's
// output directory), so that the resumed run's transcript continues it.
Result<std::vector<std::string>> earlier_transcript(const std::string& ckpt, int64_t n) {
  const std::string path = (fs::path(ckpt).parent_path() / "transcript.jsonl").string();
  std::vector<std::string> lines;
  if (n <= 0) return lines;
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("resume: transcript " + path + ": cannot read");
  std::string line;
  while (static_cast<int64_t>(lines.size()) < n && std::getline(f, line)) lines.push_back(line);
  if (static_cast<int64_t>(lines.size()) < n)
    return Status::Corruption("resume: transcript " + path + ": " + std::to_string(lines.size()) +
                              " lines, the checkpoint needs " + std::to_string(n));
  return lines;
}

// The init checkpoint (model, tokenizer, hash as parent) or a random model.
Result<engine::GPT> make_model(const CommonConfig& cfg, std::unique_ptr<engine::Tokenizer>& tok,
                               std::string& parent) {
  if (!cfg.init.empty()) {
    auto ck = engine::load_checkpoint(cfg.init, engine::Mode::kTrain);
    if (!ck.ok()) return ck.status().with_context("init checkpoint " + cfg.init);
    tok = std::move(ck->tokenizer);
    // Every recipe trains on [bos] + tokens (make_batch); the saved
    // checkpoint declares it so that evals and serving score the same way.
    tok->set_add_bos_token(true);
    parent = ck->hash;
    return std::move(ck->model);
  }
  if (cfg.tokenizer == "byte") {
    tok = engine::make_byte_tokenizer();
  } else {
    auto t = engine::load_tokenizer(cfg.tokenizer);
    if (!t.ok()) return t.status().with_context(cfg.source + ": /tokenizer");
    tok = std::move(*t);
  }
  tok->set_add_bos_token(true);  // see above: recipes train on [bos] + tokens
  engine::GPTConfig mc = cfg.model;
  if (mc.vocab_size == 0) mc.vocab_size = tok->vocab_size();
  if (mc.vocab_size < tok->vocab_size())
    return Status::Invalid(cfg.source + ": /model/vocab_size: must be >= the tokenizer's " +
                           std::to_string(tok->vocab_size()) + ", got " + std::to_string(mc.vocab_size));
  ASSAY_RETURN_IF_ERROR(mc.validate().with_context(cfg.source + ": /model"));
  return engine::GPT::init_random(mc, cfg.seed, engine::Mode::kTrain);
}

// Resolves cfg.device and uploads the model when it is a CUDA device.
Status place_model(Run& run) {
  const CommonConfig& c = run.cfg;
  auto dev = engine::cuda::resolve_device(c.device);
  if (!dev.ok()) return dev.status().with_context(c.source + ": /device (--device)");
  run.device = *dev;
  if (!run.device.is_cuda()) return Status::Ok();
  auto g = engine::cuda::CudaGPT::create(run.model, run.device.index, engine::Mode::kTrain);
  if (!g.ok()) return g.status().with_context("device " + run.device.str());
  run.dev = std::make_unique<engine::cuda::CudaGPT>(std::move(*g));
  run.meta_extra["device"] = run.device.str();
  auto name = engine::cuda::device_name(run.device.index);
  run.reporter->note("device " + run.device.str() + (name.ok() ? " " + *name : std::string()) +
                     " (fp32, TF32 matmuls)");
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Run>> start_run(const std::string& recipe, const CommonConfig& cfg,
                                       const std::string& config_text, const RunEnv& env) {
  engine::set_num_threads(cfg.threads);
  std::string out_dir = env.output_dir.empty() ? cfg.out_dir : env.output_dir;
  if (out_dir.empty())
    return Status::Invalid(cfg.source + ": /out_dir: required when ASSAY_OUTPUT_DIR is not set");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Status::IoError(out_dir + ": cannot create output directory: " + ec.message());

  std::unique_ptr<engine::Tokenizer> tok;
  std::string parent;
  ASSAY_ASSIGN_OR_RETURN(engine::GPT model, make_model(cfg, tok, parent));
  // The init checkpoint's hash, recorded as "init" in every checkpoint of
  // the run, resumed or not (parent moves on to the resume checkpoint).
  const std::string init_hash = parent;
  // Resume (ASSAY_RESUME_FROM, `assay train --resume DIR`): the checkpoint's
  // weights replace the initial ones; optimizer, samplers and step follow in
  // train_loop; the transcript continues below.
  std::string resume_from;
  Json resume_state;
  engine::CheckpointMeta resume_meta;
  std::vector<std::string> transcript_lines;
  if (const char* r = std::getenv("ASSAY_RESUME_FROM"); r && *r) {
    resume_from = r;
    ASSAY_ASSIGN_OR_RETURN(resume_state, read_trainer_state(resume_from, recipe));
    auto ck = engine::load_checkpoint(resume_from, engine::Mode::kTrain);
    if (!ck.ok()) return ck.status().with_context("resume checkpoint " + resume_from);
    if (ck->model.num_params() != model.num_params())
      return Status::Invalid("resume checkpoint " + resume_from + ": holds " +
                             std::to_string(ck->model.num_params()) + " parameters, the config's model " +
                             std::to_string(model.num_params()));
    model = std::move(ck->model);
    parent = ck->hash;
    resume_meta = std::move(ck->meta);
    ASSAY_ASSIGN_OR_RETURN(transcript_lines,
                           earlier_transcript(resume_from, resume_state["transcript_lines"].get<int64_t>()));
  }
  if (cfg.seq_len > model.config().n_positions)
    return Status::Invalid(cfg.source + ": /seq_len: must be <= the model's n_positions (" +
                           std::to_string(model.config().n_positions) + "), got " + std::to_string(cfg.seq_len));

  auto run = std::make_unique<Run>(Run{recipe, cfg, sha256_hex(config_text), out_dir, std::move(model),
                                       std::move(tok), parent, {}, {}, nullptr});
  run->meta_extra["recipe"] = recipe;
  run->meta_extra["config_sha256"] = run->config_sha256;
  run->meta_extra["seed"] = std::to_string(cfg.seed);
  run->meta_extra["data_seed"] = std::to_string(cfg.data_seed);
  run->meta_extra["threads"] = std::to_string(cfg.threads);
  if (!cfg.init.empty()) run->meta_extra["init"] = init_hash;
  {
    std::ofstream cf(fs::path(out_dir) / "train_config.json", std::ios::binary | std::ios::trunc);
    cf << config_text;
    if (!cf) return Status::IoError(out_dir + "/train_config.json: write failed");
  }
  const std::string transcript_path = (fs::path(out_dir) / "transcript.jsonl").string();
  if (resume_from.empty()) {
    ASSAY_RETURN_IF_ERROR(run->transcript.open(transcript_path));
  } else {
    ASSAY_RETURN_IF_ERROR(run->transcript.open_continuing(transcript_path, transcript_lines));
    run->resume_from = resume_from;
    run->resume_step = resume_state["step"].get<int64_t>();
    run->resume_state = resume_state;
    run->resume_meta = std::move(resume_meta);
  }
  run->reporter = std::make_unique<Reporter>(env, recipe, cfg.steps);
  ASSAY_RETURN_IF_ERROR(place_model(*run));
  return run;
}

Result<std::span<const float>> policy_forward(Run& run, const Batch& b) {
  if (!run.dev) return forward(run.model, b);
  ASSAY_RETURN_IF_ERROR(run.dev->forward(b.x.data(), b.B, b.T));
  run.host_logits.resize(static_cast<std::size_t>(b.B) * b.T * run.model.config().vocab_size);
  ASSAY_RETURN_IF_ERROR(run.dev->copy_logits(run.host_logits));
  return std::span<const float>(run.host_logits);
}

Status policy_backward(Run& run, const float* dlogits) {
  if (!run.dev) return run.model.backward(dlogits);
  return run.dev->backward_from_host(dlogits);
}

// ------------------------------------------------------------------- loop

// The config's learning-rate schedule (also the LoKU loop's).
engine::LrSchedule schedule_of(const CommonConfig& c) {
  engine::LrSchedule s;
  s.lr_max = static_cast<float>(c.lr);
  s.lr_min = static_cast<float>(c.lr_min);
  s.warmup = c.warmup;
  s.total = c.steps;
  s.decay = c.schedule == "linear"     ? engine::LrSchedule::Decay::kLinear
            : c.schedule == "constant" ? engine::LrSchedule::Decay::kConstant
                                       : engine::LrSchedule::Decay::kCosine;
  return s;
}

std::string step_dir(int64_t step) {
  std::ostringstream s;
  s << "ckpt-" << std::setw(6) << std::setfill('0') << step;
  return s.str();
}

namespace {

// optimizer.bin of the run's optimizer. On a CUDA device the moments and
// step count live on the device (CudaGPT::adamw_step, with opt's config) and
// are downloaded into the file AdamW writes: both hold them in param_layout()
// order, so a checkpoint resumes on either device.
Status save_optimizer(const Run& run, const engine::AdamW& opt, const std::string& path) {
  if (!run.dev) return opt.save(path);
  const std::size_t n = run.dev->num_params();
  std::vector<float> m(n), v(n);
  ASSAY_RETURN_IF_ERROR(run.dev->download_adam_state(m, v).with_context("optimizer state " + path));
  return engine::save_adamw_state(path, opt.config(), run.dev->adamw_t(), m, v);
}

// The reverse: into `opt` on the CPU, onto the device model on CUDA (after
// the same checks AdamW::load makes).
Status load_optimizer(Run& run, engine::AdamW& opt, const std::string& path) {
  if (!run.dev) return opt.load(path);
  ASSAY_ASSIGN_OR_RETURN(engine::AdamWState st, engine::load_adamw_state(path, run.dev->num_params()));
  return run.dev->upload_adam_state(st.m, st.v, st.t).with_context("optimizer state " + path);
}

}  // namespace

Status write_trainer_state(Run& run, const engine::AdamW* opt, int64_t step, const std::string& dir) {
  if (opt) ASSAY_RETURN_IF_ERROR(save_optimizer(run, *opt, (fs::path(dir) / "optimizer.bin").string()));
  ASSAY_RETURN_IF_ERROR(run.transcript.flush());
  Json samplers = Json::array();
  for (const Sampler* sp : run.samplers) samplers.push_back({sp->epoch(), sp->pos()});
  Json st = {{"format", 1}, {"recipe", run.recipe}, {"step", step}, {"samplers", samplers},
             {"transcript_lines", run.transcript.lines()}, {"optimizer", opt != nullptr},
             {"config_sha256", run.config_sha256}};
  const std::string path = (fs::path(dir) / "trainer_state.json").string();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << st.dump(1) << "\n";
  if (!f) return Status::IoError(path + ": write failed");
  return Status::Ok();
}

Result<std::string> write_checkpoint(Run& run, RunSummary& sum, int64_t step, const std::string& name,
                                     const engine::AdamW* opt, const CheckpointExtra& extra) {
  std::error_code ec;
  const fs::path abs = fs::absolute(fs::path(run.out_dir) / name, ec);
  const std::string dir = ec ? (fs::path(run.out_dir) / name).string() : abs.lexically_normal().string();
  if (run.dev) ASSAY_RETURN_IF_ERROR(run.dev->download_params(run.model).with_context("checkpoint " + dir));
  engine::CheckpointMeta meta{step, run.parent_hash, run.meta_extra};
  auto h = engine::save_checkpoint(dir, run.model, *run.tok, meta);
  if (!h.ok()) return h.status().with_context("checkpoint " + dir);
  if (extra) ASSAY_RETURN_IF_ERROR(extra(dir).with_context("checkpoint " + dir));
  // Written before the checkpoint is announced: a reported checkpoint can
  // always be resumed from.
  ASSAY_RETURN_IF_ERROR(write_trainer_state(run, opt, step, dir).with_context("checkpoint " + dir));
  run.parent_hash = *h;
  sum.checkpoints.push_back(dir);
  run.reporter->checkpoint(step, dir, *h);
  return *h;
}

namespace {
// Set by SIGUSR1; either request stops training at the next step boundary.
volatile std::sig_atomic_t g_preempt_signal = 0;
void on_preempt_signal(int) { g_preempt_signal = 1; }
}  // namespace

PreemptWatch::PreemptWatch() {
  g_preempt_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_preempt_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  installed_ = sigaction(SIGUSR1, &sa, &old_) == 0;
  if (const char* f = std::getenv("ASSAY_PREEMPT_FILE"); f && *f) file_ = f;
}

PreemptWatch::~PreemptWatch() {
  if (installed_) sigaction(SIGUSR1, &old_, nullptr);
}

bool PreemptWatch::requested() const {
  if (g_preempt_signal) return true;
  std::error_code ec;
  return !file_.empty() && fs::exists(file_, ec);
}

Result<int64_t> restore_state(Run& run, engine::AdamW& opt) {
  if (run.resume_from.empty()) return int64_t{1};
  const Json& st = run.resume_state;
  const std::string where = run.resume_from + "/trainer_state.json";
  if (!st.value("optimizer", false))
    return Status::NotFound(where + ": /optimizer: the checkpoint has no optimizer state");
  // The weights are on the device already: start_run loads the checkpoint's
  // into run.model before place_model uploads it.
  ASSAY_RETURN_IF_ERROR(load_optimizer(run, opt, (fs::path(run.resume_from) / "optimizer.bin").string())
                            .with_context("resume"));
  const Json& sp = st["samplers"];
  if (sp.size() != run.samplers.size())
    return Status::Invalid(where + ": /samplers: " + std::to_string(sp.size()) +
                           " saved, the recipe has " + std::to_string(run.samplers.size()));
  for (std::size_t i = 0; i < sp.size(); ++i) {
    if (!sp[i].is_array() || sp[i].size() != 2 || !sp[i][0].is_number_integer() ||
        !sp[i][1].is_number_unsigned())
      return Status::Corruption(where + ": /samplers/" + std::to_string(i) +
                                ": expected [epoch, position]");
    ASSAY_RETURN_IF_ERROR(run.samplers[i]->restore(sp[i][0].get<int64_t>(), sp[i][1].get<std::size_t>())
                              .with_context(where));
  }
  if (run.resume_step >= run.cfg.steps)
    return Status::Invalid(where + ": /step: " + std::to_string(run.resume_step) +
                           " is not below the config's steps (" + std::to_string(run.cfg.steps) + ")");
  run.reporter->note("resuming from " + run.resume_from + " at step " +
                     std::to_string(run.resume_step));
  return run.resume_step + 1;
}

Status step_boundary(Run& run, RunSummary& sum, const PreemptWatch& preempt, int64_t step,
                     const engine::AdamW* opt, const CheckpointExtra& extra) {
  const CommonConfig& c = run.cfg;
  const bool periodic = c.checkpoint_every > 0 && step % c.checkpoint_every == 0;
  if (periodic && step != c.steps)
    ASSAY_RETURN_IF_ERROR(write_checkpoint(run, sum, step, step_dir(step), opt, extra).status());
  // A preemption request stops at this step boundary with a checkpoint
  // (the one just written, if any), unless the run is done anyway.
  if (step == c.steps || !preempt.requested()) return Status::Ok();
  if (!periodic) ASSAY_RETURN_IF_ERROR(write_checkpoint(run, sum, step, step_dir(step), opt, extra).status());
  ASSAY_RETURN_IF_ERROR(run.transcript.close());
  return Status::Unavailable(std::string(kPreemptedMessage) + " at step " + std::to_string(step) +
                             ": checkpoint " + sum.checkpoints.back() +
                             " (resume with ASSAY_RESUME_FROM or --resume)");
}

Result<RunSummary> train_loop(Run& run, const StepFn& fn, const LogFn& on_log) {
  const CommonConfig& c = run.cfg;
  engine::AdamWConfig ac;
  ac.weight_decay = static_cast<float>(c.weight_decay);
  // On CUDA the optimizer state lives on the device (CudaGPT::adamw_step);
  // opt then holds only the config, and checkpoints download the state.
  engine::AdamW opt = run.dev ? engine::AdamW(ac, 0, {}) : engine::AdamW(ac, run.model);
  const engine::LrSchedule sched = schedule_of(c);
  RunSummary sum;
  sum.output_dir = run.out_dir;
  ASSAY_ASSIGN_OR_RETURN(const int64_t first_step, restore_state(run, opt));
  PreemptWatch preempt;
  run.reporter->note("model " + std::to_string(run.model.num_params()) + " parameters, " +
                     std::to_string(c.steps) + " steps, output " + run.out_dir);
  double window_tokens = 0;
  auto window_start = std::chrono::steady_clock::now();
  for (int64_t step = first_step; step <= c.steps; ++step) {
    if (run.dev) {
      ASSAY_RETURN_IF_ERROR(run.dev->zero_grad());
    } else {
      run.model.zero_grad();
    }
    auto out = fn(step);
    if (!out.ok()) return out.status().with_context("step " + std::to_string(step));
    if (!std::isfinite(out->loss))
      return Status::Internal("step " + std::to_string(step) + ": loss is not finite (" +
                              std::to_string(out->loss) + "); lower lr or check the data");
    float gnorm = 0;
    const float lr = sched.at(step - 1);
    if (run.dev) {
      ASSAY_ASSIGN_OR_RETURN(gnorm, run.dev->clip_grad_norm(static_cast<float>(c.grad_clip)));
      ASSAY_RETURN_IF_ERROR(run.dev->adamw_step(ac, lr));
    } else {
      gnorm = engine::clip_grad_norm(run.model.grads(), static_cast<float>(c.grad_clip));
      ASSAY_RETURN_IF_ERROR(opt.step(run.model, lr));
    }
    window_tokens += static_cast<double>(out->tokens);
    if (step == 1) sum.first_loss = out->loss;
    sum.last_loss = out->loss;
    sum.steps = step;
    if (is_log_step(c, step)) {
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      std::map<std::string, double> m = out->extra;
      m["loss"] = out->loss;
      m["lr"] = lr;
      m["grad_norm"] = gnorm;
      m["tokens_per_s"] = secs > 0 ? window_tokens / secs : 0.0;
      if (on_log) {
        auto more = on_log(step);
        if (!more.ok()) return more.status().with_context("step " + std::to_string(step));
        m.insert(more->begin(), more->end());
      }
      run.reporter->metrics(step, m);
      sum.last_metrics = m;
      window_tokens = 0;
      window_start = std::chrono::steady_clock::now();
    }
    ASSAY_RETURN_IF_ERROR(step_boundary(run, sum, preempt, step, &opt));
  }
  ASSAY_RETURN_IF_ERROR(run.transcript.close());
  ASSAY_ASSIGN_OR_RETURN(sum.final_hash, write_checkpoint(run, sum, c.steps, "final", &opt));
  return sum;
}

}  // namespace assay::train::detail
