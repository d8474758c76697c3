// The unlearning runner: forget/retain/holdout answer scores, membership
// inference, and forget quality against a retain-only model.
#include "assay/engine.h"
#include "assay/evals_tasks.h"
#include "runner_internal.h"

namespace assay::evals {

namespace {

struct Role {
  const char* name;
  std::string EvalOptions::*flag;
};
constexpr Role kRoles[] = {{"forget", &EvalOptions::forget},
                           {"retain", &EvalOptions::retain},
                           {"holdout", &EvalOptions::holdout}};

std::string role_path(const EvalContext& c, const Role& r) {
  return data_path(c, c.o.*(r.flag), r.name);
}

}  // namespace

Status prepare_unlearning(EvalContext& c) {
  nlohmann::json data = nlohmann::json::object();
  for (const Role& r : kRoles) {
    const std::string p = role_path(c, r);
    if (p.empty()) return Status::Invalid(std::string("--") + r.name + " FILE is required");
    ASSAY_RETURN_IF_ERROR(add_file_input(c, r.name, p));
    data[r.name] = p;
  }
  const std::string perturbed = data_path(c, c.o.perturbed, "perturbed");
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "perturbed", perturbed));
  if (!perturbed.empty()) data["perturbed"] = perturbed;
  if (!c.o.retain_model.empty()) {
    ASSAY_ASSIGN_OR_RETURN(c.inputs["retain_model"], engine::checkpoint_hash(c.o.retain_model));
  }
  const double min_k = option_double(c, "min_k", 0, UnlearningSuiteOptions{}.min_k);
  c.inputs["min_k"] = min_k;
  c.inputs["limit"] = c.o.limit;
  c.task_config = {{"options", {{"min_k", min_k}}}, {"data", data}};
  if (!c.o.retain_model.empty()) c.task_config["retain_model"] = c.o.retain_model;
  return Status::Ok();
}

Result<TaskOutput> run_unlearning_task(EvalContext& c) {
  std::vector<TextItem> sets[3];
  for (int i = 0; i < 3; ++i) {
    ASSAY_ASSIGN_OR_RETURN(sets[i], load_items(c, role_path(c, kRoles[i]), kRoles[i].name));
  }
  std::vector<PerturbedItem> perturbed;
  if (const std::string p = data_path(c, c.o.perturbed, "perturbed"); !p.empty()) {
    ASSAY_ASSIGN_OR_RETURN(perturbed, load_perturbed(p));
  }
  std::unique_ptr<NativeBackend> retain_model;
  if (!c.o.retain_model.empty()) {
    ASSAY_ASSIGN_OR_RETURN(retain_model, load_native(c, c.o.retain_model));
  }
  ASSAY_ASSIGN_OR_RETURN(auto model, main_backend(c));
  c.backend_desc = model->describe();
  UnlearningSuiteOptions uo;
  uo.min_k = c.inputs["min_k"].get<double>();
  ASSAY_ASSIGN_OR_RETURN(auto r, run_unlearning_suite(*model, retain_model.get(), sets[0], sets[1],
                                                      sets[2], perturbed, uo, c.id.suite));
  return TaskOutput{std::move(r.rows), nullptr};
}

}  // namespace assay::evals
