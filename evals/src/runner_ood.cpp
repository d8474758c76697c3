// The ood runner: likelihood ratio of a finetuned model against its base on
// in-distribution and out-of-distribution texts.
#include "assay/engine.h"
#include "assay/evals_tasks.h"
#include "runner_internal.h"

namespace assay::evals {

namespace {

std::string ood_variant(const EvalContext& c) {
  if (!c.o.variant.empty()) return c.o.variant;
  const auto& o = c.spec.options;
  if (o.contains("variant") && o["variant"].is_string()) return o["variant"].get<std::string>();
  return OodSuiteOptions{}.variant;
}

}  // namespace

Status prepare_ood(EvalContext& c) {
  if (c.o.base.empty()) return Status::Invalid("--base CKPT (the model before finetuning) is required");
  const std::string variant = ood_variant(c);
  if (variant != "text" && variant != "qa")
    return Status::Invalid("--variant: expected text or qa, got \"" + variant + "\"");
  ASSAY_ASSIGN_OR_RETURN(c.inputs["base"], engine::checkpoint_hash(c.o.base));
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "id", data_path(c, c.o.id_file, "id")));
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "ood", data_path(c, c.o.ood_file, "ood")));
  c.inputs["variant"] = variant;
  c.inputs["limit"] = c.o.limit;
  c.task_config = {{"options", {{"variant", variant}}},
                   {"base", c.o.base},
                   {"data", {{"id", data_path(c, c.o.id_file, "id")},
                             {"ood", data_path(c, c.o.ood_file, "ood")}}}};
  return Status::Ok();
}

Result<TaskOutput> run_ood_task(EvalContext& c) {
  ASSAY_ASSIGN_OR_RETURN(auto id_items, load_items(c, data_path(c, c.o.id_file, "id"), "id"));
  ASSAY_ASSIGN_OR_RETURN(auto ood_items, load_items(c, data_path(c, c.o.ood_file, "ood"), "ood"));
  ASSAY_ASSIGN_OR_RETURN(auto base, load_native(c, c.o.base));
  ASSAY_ASSIGN_OR_RETURN(auto ft, main_backend(c));
  c.backend_desc = ft->describe() + " base=" + base->describe();
  OodSuiteOptions oo;
  oo.variant = ood_variant(c);
  TaskOutput out;
  ASSAY_ASSIGN_OR_RETURN(out.rows, run_ood_suite(*base, *ft, id_items, ood_items, oo, c.id.suite));
  return out;
}

}  // namespace assay::evals
