// unlearn with method "loku" (Low-rank Knowledge Unlearning, Cha et al.,
// ICLR 2025): LoRA adapters on the init model's Conv1D weights, trained on
//   loss = forget_weight · IHL(forget batch) + retain_weight · NLL(retain batch)
// (IHL: obj::inverted_hinge; NLL: token mean over the answer), with only the
// adapters optimised (AdamW, weight decay on A and B). With lora.init "fila"
// the adapters start from the Fisher-weighted low-rank SVD of each target
// (LoraAdapters::fila_init) and the frozen base becomes the residual W_res,
// saved as <out>/base/; with "default" (PEFT's init, B = 0) the base is the
// init checkpoint itself. Every checkpoint directory holds the merged model
// (a plain checkpoint for evals) and adapter/ in the PEFT layout, whose
// base_model_name_or_path names the base checkpoint, plus optimizer.bin
// (AdamW over the adapter parameters) and trainer_state.json, so a run
// resumes (ASSAY_RESUME_FROM) or stops on a preemption request exactly as
// train_loop's recipes do. CPU only.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "assay/lora.h"
#include "assay/objectives.h"
#include "train_internal.h"

namespace assay::train::detail {

namespace {

namespace fs = std::filesystem;
namespace lora = engine::lora;

struct LokuConfig {
  std::string forget, retain, holdout;
  double forget_weight = 1, retain_weight = 1;
  int holdout_eval = 32;
  lora::LoraConfig lora;
  std::string init = "fila";
};

Status read_loku(Cfg& root, LokuConfig& u) {
  ASSAY_ASSIGN_OR_RETURN(Cfg data, read_unlearn_data(root, &u.forget, &u.retain, &u.holdout));
  std::string method;
  ASSAY_RETURN_IF_ERROR(root.string("method", method, {"loku"}));
  ASSAY_ASSIGN_OR_RETURN(Cfg o, root.object("objective"));
  ASSAY_RETURN_IF_ERROR(o.number("forget_weight", u.forget_weight, 0, 1e6));
  ASSAY_RETURN_IF_ERROR(o.number("retain_weight", u.retain_weight, 0, 1e6));
  ASSAY_RETURN_IF_ERROR(o.integer("holdout_eval", u.holdout_eval, 0, 1 << 20));
  if (o.has("beta") || o.has("delta"))
    return Status::Invalid(o.where(o.has("beta") ? "beta" : "delta") +
                           ": not used by method loku (inverted hinge loss has no temperature)");
  ASSAY_RETURN_IF_ERROR(o.finish());
  ASSAY_ASSIGN_OR_RETURN(Cfg l, root.object("lora"));
  ASSAY_RETURN_IF_ERROR(l.integer("r", u.lora.r, 1, 4096));
  u.lora.alpha = 2.0 * u.lora.r;  // the released LoKU scripts use alpha = 2r
  ASSAY_RETURN_IF_ERROR(l.number("alpha", u.lora.alpha, 0, 1e6, /*lo_open=*/true));
  ASSAY_RETURN_IF_ERROR(l.strings("targets", u.lora.targets));
  ASSAY_RETURN_IF_ERROR(l.string("init", u.init, {"fila", "default"}));
  ASSAY_RETURN_IF_ERROR(l.finish());
  if (u.retain_weight > 0 && u.retain.empty())
    return Status::Invalid(data.where("retain") +
                           ": required by method loku (or set /objective/retain_weight to 0)");
  return Status::Ok();
}

std::string abs_dir(const fs::path& p) {
  std::error_code ec;
  const fs::path a = fs::absolute(p, ec);
  return ec ? p.string() : a.lexically_normal().string();
}

// LoKU's importance measurement: one pass over the forget split in batches,
// each paired with the next retain batch; per batch the squared gradient of
// the token-mean NLL on the (unadapted) model, weighted by its token count.
Status measure_fisher(Run& run, const std::vector<Seq>& forget, const std::vector<Seq>& retain,
                      const lora::LoraAdapters& ad, std::vector<double>& imp_f, double& n_f,
                      std::vector<double>& imp_r, double& n_r) {
  const int V = run.model.config().vocab_size, bs = run.cfg.batch_size;
  const int bos = run.tok->bos_id(), eos = run.tok->eos_id();
  imp_f.assign(run.model.num_params(), 0.0);
  imp_r.assign(run.model.num_params(), 0.0);
  n_f = n_r = 0;
  std::vector<float> dlogits;
  auto one = [&](const std::vector<const Seq*>& seqs, std::vector<double>& imp, double& n) -> Status {
    Batch b = make_batch(seqs, run.cfg.seq_len, bos, eos, true);
    ASSAY_ASSIGN_OR_RETURN(auto logits, forward(run.model, b));
    const obj::Logits z{logits.data(), b.B, b.T, V};
    dlogits.resize(z.size());
    ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy(z, b.y, b.mask, {dlogits.data(), 1.0}));
    run.model.zero_grad();
    ASSAY_RETURN_IF_ERROR(run.model.backward(dlogits.data()));
    lora::accumulate_fisher(imp, run.model.grads(), ad.targets(), ce.n_tokens);
    n += ce.n_tokens;
    return Status::Ok();
  };
  const std::size_t B = static_cast<std::size_t>(bs);
  for (std::size_t at = 0; at < forget.size(); at += B) {
    std::vector<const Seq*> fseqs, rseqs;
    for (std::size_t i = at; i < std::min(forget.size(), at + B); ++i) fseqs.push_back(&forget[i]);
    ASSAY_RETURN_IF_ERROR(one(fseqs, imp_f, n_f));
    if (retain.empty()) continue;
    for (std::size_t i = 0; i < B; ++i) rseqs.push_back(&retain[(at + i) % retain.size()]);
    ASSAY_RETURN_IF_ERROR(one(rseqs, imp_r, n_r));
  }
  run.model.zero_grad();
  return Status::Ok();
}

// Resume: the adapters of <ckpt>/adapter on the frozen base the first
// attempt trained on — the init checkpoint ("default") or the FILA residual
// base named by the checkpoint's lora_base (Fisher is not recomputed: the
// base must be the same bits). Sets base_dir to the base used.
Result<lora::LoraAdapters> resume_adapters(const Run& run, const LokuConfig& u, const std::string& init,
                                           std::string& base_dir) {
  const std::string ck = run.resume_from;
  const auto& extra = run.resume_meta.extra;
  auto meta = [&](const char* k) {
    auto it = extra.find(k);
    return it == extra.end() ? std::string() : it->second;
  };
  const std::string where = "resume checkpoint " + ck + ": config.json /assay/extra/";
  if (meta("method") != "loku")
    return Status::Invalid(where + "method: expected 'loku' (a LoKU checkpoint), got '" + meta("method") + "'");
  if (meta("lora_init") != u.init)
    return Status::Invalid(where + "lora_init: written with '" + meta("lora_init") + "', the config has /lora/init '" +
                           u.init + "'");
  if (u.init == "fila") {
    base_dir = meta("lora_base");
    std::error_code ec;
    if (base_dir.empty() || !fs::exists(fs::path(base_dir) / engine::kModelFile, ec))
      return Status::NotFound(where + "lora_base: the FILA residual base '" + base_dir +
                              "' is missing (the first attempt writes it to <out_dir>/base; resuming "
                              "needs that exact base and does not recompute the Fisher)");
  } else {
    base_dir = abs_dir(init);
  }
  auto base = engine::load_checkpoint(base_dir, engine::Mode::kFrozen);
  if (!base.ok()) return base.status().with_context("resume " + ck + ": adapter base " + base_dir);
  // With "default" the base is the init: it must still be the checkpoint the
  // first attempt started from.
  if (u.init != "fila" && base->hash != meta("init"))
    return Status::Invalid(where + "init: the run started from checkpoint " + meta("init").substr(0, 12) +
                           ", but the config's /init " + base_dir + " is now " + base->hash.substr(0, 12));
  if (base->model.num_params() != run.model.num_params())
    return Status::Invalid("resume " + ck + ": adapter base " + base_dir + " holds " +
                           std::to_string(base->model.num_params()) + " parameters, the checkpoint " +
                           std::to_string(run.model.num_params()));
  const std::string adir = (fs::path(ck) / "adapter").string();
  auto file = lora::read_adapter(adir);
  if (!file.ok()) return file.status().with_context("resume " + ck);
  if (file->config.r != u.lora.r || file->config.alpha != u.lora.alpha || file->config.targets != u.lora.targets)
    return Status::Invalid("resume " + ck + ": adapter " + adir + " has r " + std::to_string(file->config.r) +
                           ", targets " + join(file->config.targets) + "; the config's /lora has r " +
                           std::to_string(u.lora.r) + ", targets " + join(u.lora.targets) +
                           " (or a different alpha)");
  auto ad = lora::load_adapter(base->model, *file);
  if (!ad.ok()) return ad.status().with_context("resume " + ck + ": adapter " + adir);
  return std::move(*ad);
}

}  // namespace

Result<RunSummary> recipe_unlearn_loku(Cfg& root, const std::string& text, const RunEnv& env) {
  CommonConfig c;
  LokuConfig u;
  ASSAY_RETURN_IF_ERROR(read_common(root, c, /*init_required=*/true));
  ASSAY_RETURN_IF_ERROR(read_loku(root, u));
  ASSAY_RETURN_IF_ERROR(root.finish());
  if (c.device != "auto" && c.device != "cpu")
    return Status::Invalid(root.where("device") + ": method loku trains LoRA adapters on the CPU engine only, got '" +
                                 c.device + "'; use --device cpu");
  c.device = "cpu";

  ASSAY_ASSIGN_OR_RETURN(auto run, start_run("unlearn", c, text, env));
  ASSAY_ASSIGN_OR_RETURN(auto forget, load_sequences(u.forget, *run->tok, c.seq_len));
  std::vector<Seq> retain, holdout;
  if (!u.retain.empty()) {
    ASSAY_ASSIGN_OR_RETURN(retain, load_sequences(u.retain, *run->tok, c.seq_len));
  }
  if (!u.holdout.empty()) {
    ASSAY_ASSIGN_OR_RETURN(holdout, load_sequences(u.holdout, *run->tok, c.seq_len));
  }
  if (forget.empty()) return Status::Invalid(u.forget + ": no forget examples");

  std::string base_dir = abs_dir(c.init);
  const bool resuming = !run->resume_from.empty();
  auto ad = resuming ? resume_adapters(*run, u, c.init, base_dir)
                     : lora::LoraAdapters::create(run->model, u.lora, c.seed);
  if (!ad.ok()) return resuming ? ad.status() : ad.status().with_context(c.source + ": /lora");
  if (resuming) run->reporter->note("resume: adapters of " + run->resume_from + "/adapter on base " + base_dir);
  if (u.init == "fila" && !resuming) {
    std::vector<double> imp_f, imp_r;
    double n_f = 0, n_r = 0;
    ASSAY_RETURN_IF_ERROR(measure_fisher(*run, forget, retain, *ad, imp_f, n_f, imp_r, n_r));
    ASSAY_RETURN_IF_ERROR(ad->fila_init(imp_f, n_f, imp_r, n_r));
    // The residual base is what the adapter applies to: saved once, frozen.
    ASSAY_ASSIGN_OR_RETURN(auto base_model, engine::GPT::from_params(run->model.config(), ad->base(), engine::Mode::kFrozen));
    base_dir = abs_dir(fs::path(run->out_dir) / "base");
    engine::CheckpointMeta bm{0, run->parent_hash, {{"recipe", "unlearn"}, {"method", "loku"}, {"fila_residual", "true"}}};
    auto h = engine::save_checkpoint(base_dir, base_model, *run->tok, bm);
    if (!h.ok()) return h.status().with_context("FILA residual base " + base_dir);
    run->reporter->note("FILA: Fisher over " + std::to_string((int64_t)n_f) + " forget and " +
                        std::to_string((int64_t)n_r) + " retain tokens; residual base -> " + base_dir);
  }
  ASSAY_RETURN_IF_ERROR(ad->apply(run->model));
  std::string targets;
  for (const auto& t : u.lora.targets) targets += (targets.empty() ? "" : ",") + t;
  run->meta_extra["method"] = "loku";
  run->meta_extra["lora_r"] = std::to_string(u.lora.r);
  {
    std::ostringstream s;
    s << u.lora.alpha;
    run->meta_extra["lora_alpha"] = s.str();
  }
  run->meta_extra["lora_targets"] = targets;
  run->meta_extra["lora_init"] = u.init;
  run->meta_extra["lora_base"] = base_dir;
  run->reporter->note("method loku: " + std::to_string(forget.size()) + " forget, " + std::to_string(retain.size()) +
                      " retain, " + std::to_string(holdout.size()) + " holdout examples; " +
                      std::to_string(ad->targets().size()) + " adapted matrices, " +
                      std::to_string(ad->params().size()) + " trainable parameters (r " +
                      std::to_string(u.lora.r) + ", alpha " + run->meta_extra["lora_alpha"] + ", init " + u.init + ")");

  const int V = run->model.config().vocab_size;
  const int bos = run->tok->bos_id(), eos = run->tok->eos_id();
  Sampler fs_(forget.size(), c.data_seed), rs(retain.empty() ? 1 : retain.size(), c.data_seed + 1);
  std::vector<float> dlogits;
  engine::AdamWConfig ac;
  ac.weight_decay = static_cast<float>(c.weight_decay);
  engine::AdamW opt(ac, ad->params().size(), {});
  const engine::LrSchedule sched = schedule_of(c);
  RunSummary sum;
  sum.output_dir = run->out_dir;
  run->samplers = {&fs_, &rs};
  ASSAY_ASSIGN_OR_RETURN(const int64_t first_step, restore_state(*run, opt));
  PreemptWatch preempt;
  // Every checkpoint also holds adapter/ (PEFT layout); resuming reads it.
  const CheckpointExtra adapter = [&](const std::string& dir) {
    return lora::save_adapter((fs::path(dir) / "adapter").string(), *ad, base_dir);
  };
  auto holdout_loss = [&]() -> Result<double> {
    const std::size_t n = std::min(holdout.size(), static_cast<std::size_t>(u.holdout_eval));
    double total = 0, tokens = 0;
    for (std::size_t at = 0; at < n; at += static_cast<std::size_t>(c.batch_size)) {
      std::vector<const Seq*> seqs;
      for (std::size_t i = at; i < std::min(n, at + static_cast<std::size_t>(c.batch_size)); ++i) seqs.push_back(&holdout[i]);
      Batch hb = make_batch(seqs, c.seq_len, bos, eos, true);
      ASSAY_ASSIGN_OR_RETURN(auto logits, forward(run->model, hb));
      ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy({logits.data(), hb.B, hb.T, V}, hb.y, hb.mask, {}));
      total += ce.loss * ce.n_tokens;
      tokens += ce.n_tokens;
    }
    return tokens > 0 ? total / tokens : 0.0;
  };

  run->reporter->note("model " + std::to_string(run->model.num_params()) + " parameters (frozen), " +
                      std::to_string(c.steps) + " steps, output " + run->out_dir);
  double window_tokens = 0;
  auto window_start = std::chrono::steady_clock::now();
  for (int64_t step = first_step; step <= c.steps; ++step) {
    const std::string at = "step " + std::to_string(step);
    std::map<std::string, double> m;
    run->model.zero_grad();
    Batch fb = take_batch(*run, forget, fs_.next(c.batch_size), step, true, "forget");
    ASSAY_ASSIGN_OR_RETURN(auto logits, forward(run->model, fb));
    obj::Logits z{logits.data(), fb.B, fb.T, V};
    dlogits.resize(z.size());
    ASSAY_ASSIGN_OR_RETURN(auto ihl, obj::inverted_hinge(z, fb.y, fb.mask, {dlogits.data(), u.forget_weight}));
    ASSAY_ASSIGN_OR_RETURN(auto fce, obj::cross_entropy(z, fb.y, fb.mask, {}));
    ASSAY_RETURN_IF_ERROR(run->model.backward(dlogits.data()).with_context(at));
    double loss = u.forget_weight * ihl.loss;
    int64_t tokens = fb.tokens;
    m["ihl"] = ihl.loss;
    m["forget_loss"] = fce.loss;
    if (u.retain_weight > 0) {
      Batch rb = take_batch(*run, retain, rs.next(c.batch_size), step, true, "retain");
      ASSAY_ASSIGN_OR_RETURN(logits, forward(run->model, rb));
      z = {logits.data(), rb.B, rb.T, V};
      dlogits.resize(z.size());
      ASSAY_ASSIGN_OR_RETURN(auto rce, obj::cross_entropy(z, rb.y, rb.mask, {dlogits.data(), u.retain_weight}));
      ASSAY_RETURN_IF_ERROR(run->model.backward(dlogits.data()).with_context(at));
      loss += u.retain_weight * rce.loss;
      tokens += rb.tokens;
      m["retain_loss"] = rce.loss;
    } else if (!retain.empty() && is_log_step(c, step)) {
      // Logged for every method: scored without gradient, after the forget
      // backward, so this forward cannot disturb it.
      // make_batch, not take_batch: an evaluation, so not in the transcript.
      std::vector<const Seq*> seqs;
      for (std::size_t i : rs.next(c.batch_size)) seqs.push_back(&retain[i]);
      Batch rb = make_batch(seqs, c.seq_len, bos, eos, true);
      ASSAY_ASSIGN_OR_RETURN(auto rlogits, forward(run->model, rb));
      ASSAY_ASSIGN_OR_RETURN(auto rce, obj::cross_entropy({rlogits.data(), rb.B, rb.T, V}, rb.y, rb.mask, {}));
      m["retain_loss"] = rce.loss;
    }
    if (!std::isfinite(loss))
      return Status::Internal(at + ": loss is not finite (" + std::to_string(loss) + "); lower lr or check the data");
    // Only the adapters learn: their share of the dense gradients, clipped
    // and stepped; then the model is rebuilt from the frozen base.
    ad->zero_grad();
    ASSAY_RETURN_IF_ERROR(ad->collect_grads(run->model).with_context(at));
    const float gnorm = engine::clip_grad_norm(ad->grads(), static_cast<float>(c.grad_clip));
    const float lr = sched.at(step - 1);
    ASSAY_RETURN_IF_ERROR(opt.step(ad->params(), ad->grads(), lr).with_context(at));
    ASSAY_RETURN_IF_ERROR(ad->apply(run->model).with_context(at));
    window_tokens += static_cast<double>(tokens);
    if (step == 1) sum.first_loss = loss;
    sum.last_loss = loss;
    sum.steps = step;
    if (step % c.log_every == 0 || step == 1 || step == c.steps) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      m["loss"] = loss;
      m["lr"] = lr;
      m["grad_norm"] = gnorm;
      m["tokens_per_s"] = secs > 0 ? window_tokens / secs : 0.0;
      if (!holdout.empty() && u.holdout_eval > 0) {
        ASSAY_ASSIGN_OR_RETURN(m["holdout_loss"], holdout_loss());
      }
      run->reporter->metrics(step, m);
      sum.last_metrics = m;
      window_tokens = 0;
      window_start = std::chrono::steady_clock::now();
    }
    ASSAY_RETURN_IF_ERROR(step_boundary(*run, sum, preempt, step, &opt, adapter));
  }
  ASSAY_RETURN_IF_ERROR(run->transcript.close());
  ASSAY_ASSIGN_OR_RETURN(sum.final_hash, write_checkpoint(*run, sum, c.steps, "final", &opt, adapter));
  return sum;
}

}  // namespace assay::train::detail
