// pretrain and sft: next-token cross-entropy on a text file or JSONL.
// pretrain counts every token; sft masks the prompt (question / prompt field).
#include "assay/objectives.h"
#include "train_internal.h"

namespace assay::train::detail {

Batch take_batch(Run& run, const std::vector<Seq>& data, const std::vector<std::size_t>& idx,
                 int64_t step, bool mask_prompt, const std::string& split) {
  std::vector<const Seq*> seqs;
  seqs.reserve(idx.size());
  for (std::size_t i : idx) {
    seqs.push_back(&data[i]);
    run.transcript.record(step, data[i].id, split);
  }
  return make_batch(seqs, run.cfg.seq_len, run.tok->bos_id(), run.tok->eos_id(), mask_prompt);
}

Result<RunSummary> recipe_lm(const std::string& recipe, Cfg& root, const std::string& text,
                             const RunEnv& env) {
  CommonConfig c;
  ASSAY_RETURN_IF_ERROR(read_common(root, c, /*init_required=*/false));
  ASSAY_RETURN_IF_ERROR(root.required("data"));
  ASSAY_ASSIGN_OR_RETURN(Cfg data, root.object("data"));
  std::vector<std::string> train_path;
  ASSAY_RETURN_IF_ERROR(data.required("train"));
  ASSAY_RETURN_IF_ERROR(data.strings("train", train_path));
  ASSAY_RETURN_IF_ERROR(data.finish());
  ASSAY_RETURN_IF_ERROR(root.finish());

  ASSAY_ASSIGN_OR_RETURN(auto run, start_run(recipe, c, text, env));
  ASSAY_ASSIGN_OR_RETURN(auto examples, load_sequences(train_path, *run->tok, c.seq_len));
  run->reporter->note(std::to_string(examples.size()) + " examples from " + join(train_path));
  const bool mask_prompt = recipe == "sft";
  Sampler sampler(examples.size(), c.data_seed);  // data order: data_seed, not the init seed
  run->samplers = {&sampler};  // its position goes into checkpoints (resume)
  std::vector<float> dlogits;

  auto step_fn = [&](int64_t step) -> Result<StepOut> {
    Batch b = take_batch(*run, examples, sampler.next(c.batch_size), step, mask_prompt);
    if (run->dev) {
      // Fused softmax + CE on the device: logits become dlogits in place.
      static_assert(sizeof(int) == sizeof(int32_t));
      const auto* y = reinterpret_cast<const int32_t*>(b.y.data());
      ASSAY_RETURN_IF_ERROR(run->dev->forward(b.x.data(), b.B, b.T));
      ASSAY_ASSIGN_OR_RETURN(auto ce, run->dev->cross_entropy_backward(y, b.mask.data()));
      ASSAY_RETURN_IF_ERROR(run->dev->backward());
      StepOut out;
      out.loss = ce.loss;
      out.tokens = b.tokens;
      return out;
    }
    ASSAY_ASSIGN_OR_RETURN(auto logits, forward(run->model, b));
    const obj::Logits z{logits.data(), b.B, b.T, run->model.config().vocab_size};
    dlogits.resize(z.size());
    ASSAY_ASSIGN_OR_RETURN(auto ce, obj::cross_entropy(z, b.y, b.mask, {dlogits.data()}));
    ASSAY_RETURN_IF_ERROR(run->model.backward(dlogits.data()));
    StepOut out;
    out.loss = ce.loss;
    out.tokens = b.tokens;
    return out;
  };
  return train_loop(*run, step_fn);
}

}  // namespace assay::train::detail
