// distill: a student learns from a frozen teacher checkpoint with one of the
// token-level divergences or batch-wise Sinkhorn, optionally plus CE on the
// data labels: loss = weight * D(teacher, student) + ce_weight * CE.
#include "assay/objectives.h"
#include "train_internal.h"

namespace assay::train::detail {

namespace {

struct DistillConfig {
  std::string teacher, type = "fkl";
  std::vector<std::string> train_path;
  obj::DistillOptions div;
  obj::SinkhornOptions sink;
  double weight = 1.0, ce_weight = 0.0;
  bool mask_prompt = true;
};

Status read_objective(Cfg& root, DistillConfig& d) {
  ASSAY_ASSIGN_OR_RETURN(Cfg o, root.object("objective"));
  ASSAY_RETURN_IF_ERROR(o.string("type", d.type, {"fkl", "rkl", "jsd", "tv", "skl", "srkl", "sinkhorn"}));
  const bool sinkhorn = d.type == "sinkhorn";
  if (sinkhorn) d.weight = 1.0;
  ASSAY_RETURN_IF_ERROR(o.number("weight", d.weight, 0, 1e9));
  if (sinkhorn) {
    ASSAY_RETURN_IF_ERROR(o.number("tau", d.sink.tau, 0, 1e3, true));
    ASSAY_RETURN_IF_ERROR(o.number("eps", d.sink.eps, 0, 1e3, true));
    ASSAY_RETURN_IF_ERROR(o.integer("n_iters", d.sink.n_iters, 1, 1000));
    std::string coupling = "sequence";
    ASSAY_RETURN_IF_ERROR(o.string("coupling", coupling, {"sequence", "batch"}));
    d.sink.coupling = coupling == "batch" ? obj::SinkhornCoupling::kBatch : obj::SinkhornCoupling::kSequence;
    d.sink.weight = d.weight;
  } else {
    d.div.div = obj::parse_divergence(d.type).value();
    ASSAY_RETURN_IF_ERROR(o.number("tau", d.div.tau, 0, 1e3, true));
    ASSAY_RETURN_IF_ERROR(o.number("beta", d.div.beta, 0, 1));
    ASSAY_RETURN_IF_ERROR(o.number("alpha", d.div.alpha, 0, 1, true));
    if (d.div.alpha >= 1) return o.error("alpha", "a number in (0, 1)");
  }
  return o.finish();
}

}  // namespace

Result<RunSummary> recipe_distill(Cfg& root, const std::string& text, const RunEnv& env) {
  CommonConfig c;
  DistillConfig d;
  ASSAY_RETURN_IF_ERROR(read_common(root, c, false));
  ASSAY_RETURN_IF_ERROR(root.required("teacher"));
  ASSAY_RETURN_IF_ERROR(root.string("teacher", d.teacher));
  ASSAY_RETURN_IF_ERROR(root.required("data"));
  ASSAY_ASSIGN_OR_RETURN(Cfg data, root.object("data"));
  ASSAY_RETURN_IF_ERROR(data.required("train"));
  ASSAY_RETURN_IF_ERROR(data.strings("train", d.train_path));
  ASSAY_RETURN_IF_ERROR(data.finish());
  ASSAY_RETURN_IF_ERROR(read_objective(root, d));
  ASSAY_RETURN_IF_ERROR(root.number("ce_weight", d.ce_weight, 0, 1e9));
  ASSAY_RETURN_IF_ERROR(root.boolean("mask_prompt", d.mask_prompt));
  ASSAY_RETURN_IF_ERROR(root.finish());

  auto teacher = engine::load_checkpoint(d.teacher, engine::Mode::kFrozen);
  if (!teacher.ok()) return teacher.status().with_context(c.source + ": /teacher: " + d.teacher);
  ASSAY_ASSIGN_OR_RETURN(auto run, start_run("distill", c, text, env));
  const int V = run->model.config().vocab_size;
  if (teacher->model.config().vocab_size != V || teacher->tokenizer->kind() != run->tok->kind())
    return Status::Invalid(c.source + ": /teacher: teacher vocabulary (" + teacher->tokenizer->kind() + ", " +
                           std::to_string(teacher->model.config().vocab_size) +
                           ") differs from the student's (" + run->tok->kind() + ", " + std::to_string(V) + ")");
  if (c.seq_len > teacher->model.config().n_positions)
    return Status::Invalid(c.source + ": /seq_len: must be <= the teacher's n_positions (" +
                           std::to_string(teacher->model.config().n_positions) + ")");
  run->meta_extra["teacher"] = teacher->hash;
  run->meta_extra["objective"] = d.type;
  ASSAY_ASSIGN_OR_RETURN(auto examples, load_sequences(d.train_path, *run->tok, c.seq_len));
  run->reporter->note(std::to_string(examples.size()) + " examples from " + join(d.train_path) + ", objective " +
                      d.type + ", teacher " + teacher->hash.substr(0, 12));
  Sampler sampler(examples.size(), c.data_seed);  // data order: data_seed, not the init seed
  run->samplers = {&sampler};  // its position goes into checkpoints (resume)
  std::vector<float> dlogits;
  engine::GPT& tmodel = teacher->model;

  // On CUDA the teacher is a frozen device copy. fkl/rkl run as device
  // kernels; the other objectives are computed on the host from copied
  // logits and their dlogits uploaded (correct, not fast).
  std::unique_ptr<engine::cuda::CudaGPT> dteacher;
  std::vector<float> hs, ht;  // host student / teacher logits (host-objective path)
  if (run->dev) {
    auto tg = engine::cuda::CudaGPT::create(tmodel, run->device.index, engine::Mode::kFrozen);
    if (!tg.ok()) return tg.status().with_context("teacher on device " + run->device.str());
    dteacher = std::make_unique<engine::cuda::CudaGPT>(std::move(*tg));
    if (d.type != "fkl" && d.type != "rkl")
      run->reporter->note("objective " + d.type + " runs on the host (device kernels: fkl, rkl)");
  }

  auto device_step = [&](const Batch& b) -> Result<StepOut> {
    static_assert(sizeof(int) == sizeof(int32_t));
    const auto* y = reinterpret_cast<const int32_t*>(b.y.data());
    ASSAY_RETURN_IF_ERROR(dteacher->forward(b.x.data(), b.B, b.T));
    ASSAY_RETURN_IF_ERROR(run->dev->forward(b.x.data(), b.B, b.T));
    StepOut out;
    double dist = 0, kl = 0, ce = 0;
    if (d.type == "fkl" || d.type == "rkl") {
      const auto kind = d.type == "fkl" ? engine::cuda::DistillKind::kForwardKL : engine::cuda::DistillKind::kReverseKL;
      ASSAY_ASSIGN_OR_RETURN(auto r, run->dev->distill_backward(dteacher->logits_device(), kind, d.div.tau, d.weight,
                                                                y, b.mask.data(), d.ce_weight));
      dist = d.weight * r.loss;
      kl = r.kl;
      ce = r.ce;
    } else {
      const obj::Logits z{nullptr, b.B, b.T, V};
      hs.resize(z.size());
      ht.resize(z.size());
      dlogits.resize(z.size());
      ASSAY_RETURN_IF_ERROR(run->dev->copy_logits(hs));
      ASSAY_RETURN_IF_ERROR(dteacher->copy_logits(ht));
      const obj::Logits zs{hs.data(), b.B, b.T, V};
      if (d.type == "sinkhorn") {
        ASSAY_ASSIGN_OR_RETURN(auto s, obj::sinkhorn(zs, ht.data(), b.mask, d.sink, {dlogits.data()}));
        dist = s.loss;
        ASSAY_ASSIGN_OR_RETURN(auto k, obj::distill(zs, ht.data(), b.mask, obj::DistillOptions{}, {}));
        kl = k.kl_to_teacher;
      } else {
        ASSAY_ASSIGN_OR_RETURN(auto r, obj::distill(zs, ht.data(), b.mask, d.div, {dlogits.data(), d.weight}));
        dist = d.weight * r.loss;
        kl = r.kl_to_teacher;
      }
      obj::GradSink ce_sink{d.ce_weight > 0 ? dlogits.data() : nullptr, d.ce_weight, true};
      ASSAY_ASSIGN_OR_RETURN(auto c2, obj::cross_entropy(zs, b.y, b.mask, ce_sink));
      ce = c2.loss;
      ASSAY_RETURN_IF_ERROR(run->dev->backward_from_host(dlogits.data()));
      out.loss = dist + d.ce_weight * ce;
      out.tokens = b.tokens;
      out.extra = {{"distill_loss", dist}, {"kl_to_teacher", kl}, {"ce", ce}};
      return out;
    }
    ASSAY_RETURN_IF_ERROR(run->dev->backward());
    out.loss = dist + d.ce_weight * ce;
    out.tokens = b.tokens;
    out.extra = {{"distill_loss", dist}, {"kl_to_teacher", kl}, {"ce", ce}};
    return out;
  };

  auto step_fn = [&](int64_t step) -> Result<StepOut> {
    Batch b = take_batch(*run, examples, sampler.next(c.batch_size), step, d.mask_prompt);
    if (run->dev) return device_step(b);
    ASSAY_ASSIGN_OR_RETURN(auto tlogits, forward(tmodel, b));
    ASSAY_ASSIGN_OR_RETURN(auto logits, forward(run->model, b));
    const obj::Logits z{logits.data(), b.B, b.T, V};
    dlogits.resize(z.size());
    StepOut out;
    double dist = 0, kl = 0;
    if (d.type == "sinkhorn") {
      ASSAY_ASSIGN_OR_RETURN(auto s, obj::sinkhorn(z, tlogits.data(), b.mask, d.sink, {dlogits.data()}));
      dist = s.loss;
      // KL to the teacher as a diagnostic comparable with the token objectives.
      obj::DistillOptions fkl;
      ASSAY_ASSIGN_OR_RETURN(auto k, obj::distill(z, tlogits.data(), b.mask, fkl, {}));
      kl = k.kl_to_teacher;
    } else {
      ASSAY_ASSIGN_OR_RETURN(auto r, obj::distill(z, tlogits.data(), b.mask, d.div, {dlogits.data(), d.weight}));
      dist = d.weight * r.loss;
      kl = r.kl_to_teacher;
    }
    obj::GradSink ce_sink{d.ce_weight > 0 ? dlogits.data() : nullptr, d.ce_weight, true};
    ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy(z, b.y, b.mask, ce_sink));
    ASSAY_RETURN_IF_ERROR(run->model.backward(dlogits.data()));
    out.loss = dist + d.ce_weight * ce.loss;
    out.tokens = b.tokens;
    out.extra = {{"distill_loss", dist}, {"kl_to_teacher", kl}, {"ce", ce.loss}};
    return out;
  };
  return train_loop(*run, step_fn);
}

}  // namespace assay::train::detail
