// assay train RECIPE --config FILE.json [--device D]: run a training recipe on the native engine.
// assay train merge --base CKPT --adapter DIR --out DIR: fold a PEFT LoRA adapter into a checkpoint.
#include <stdlib.h>

#include <csignal>
#include <iostream>
#include <memory>

#include "assay/lora.h"
#include "assay/train.h"
#include "registry.h"

namespace {

using assay::cli::set_exit_code;

// `assay train merge`: W + (lora_alpha/r)·(B·A)ᵀ into every targeted Conv1D
// weight, written as a plain checkpoint whose parent is the base.
CLI::App* add_train_merge(CLI::App& train) {
  auto* m = train.add_subcommand("merge", "Merge a PEFT LoRA adapter (adapter_config.json + "
                                          "adapter_model.safetensors) into its base checkpoint");
  auto base = std::make_shared<std::string>();
  auto adapter = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  m->add_option("--base", *base, "Base checkpoint directory (the adapter's base_model_name_or_path)")->required();
  m->add_option("--adapter", *adapter, "Adapter directory, e.g. <run>/final/adapter")->required();
  m->add_option("--out", *out, "Output checkpoint directory")->required();
  m->footer(
      "\nThe adapter must target Conv1D weights of the base (PEFT fan_in_fan_out layout, GPT-2).\n"
      "Example:\n"
      "  assay train merge --base demo/runs/facts/final --adapter demo/runs/unlearn_loku/final/adapter \\\n"
      "      --out demo/runs/unlearn_loku/merged\n");
  m->callback([base, adapter, out] {
    auto h = assay::engine::lora::merge_to_checkpoint(*base, *adapter, *out);
    if (!h.ok()) {
      std::cerr << "assay train merge: " << h.status().message() << "\n";
      return set_exit_code(1);
    }
    std::cout << "merged " << *adapter << " into " << *base << " -> " << *out << " (" << *h << ")\n";
    set_exit_code(0);
  });
  return m;
}

void add_train(CLI::App& app) {
  auto* t = app.add_subcommand("train", "Train a model: pretrain, sft, distill, align or unlearn");
  auto recipe = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto out_dir = std::make_shared<std::string>();
  auto sets = std::make_shared<std::vector<std::string>>();
  auto device = std::make_shared<std::string>();
  auto resume = std::make_shared<std::string>();
  // Not ->required(): `assay train merge` runs without them (checked in the callback).
  t->add_option("recipe", *recipe, "pretrain | sft | distill | align | unlearn (required)")
      ->check(CLI::IsMember(assay::train::recipe_names()));
  t->add_option("--config", *config, "Recipe config (JSON file; required)");
  t->add_option("--out-dir", *out_dir, "Output directory (overrides config out_dir and ASSAY_OUTPUT_DIR)");
  t->add_option("--set", *sets,
                "Override a config field before validation: dotted.key=value (value parsed as JSON,\n"
                "else a string); repeatable, e.g. --set objective.type=rkl --set lr=3e-4")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  t->add_option("--resume", *resume,
                "Resume from this checkpoint directory (ckpt-N/ of an earlier run of the same config): "
                "weights, AdamW state, step, LR schedule, data order and transcript; the same as "
                "env ASSAY_RESUME_FROM, which a worker sets for a requeued run");
  t->add_option("--device", *device,
                "auto (default: cuda:0 when a GPU is visible, else cpu) | cpu | cuda | cuda:N.\n"
                "Same as --set device=.... On CUDA, pretrain/sft and distill fkl/rkl losses run on the\n"
                "GPU; other objectives are computed on the host from copied logits");
  std::string help;
  for (const auto& r : assay::train::recipe_names()) {
    const std::string h = assay::train::recipe_config_help(r);
    // The common part is the same for every recipe: print it once.
    help += help.empty() ? h : h.substr(h.find("\n\n") + 1);
  }
  t->footer(
      "\nOutputs in the output directory: ckpt-<step>/ and final/ checkpoints (Hugging Face GPT-2\n"
      "layout; each names its parent), transcript.jsonl (the order examples were seen).\n"
      "With ASSAY_METRICS_FD set, metric and checkpoint lines go to that descriptor as JSON.\n\n" +
      help +
      "  method loku (LoRA unlearning, CPU only): loss = forget_weight * inverted hinge(forget)\n"
      "  + retain_weight * NLL(retain), only LoRA adapters trained; lora {r (8), alpha (2r),\n"
      "  targets [c_attn, c_proj, c_fc] (PEFT target_modules), init fila|default}. fila: Fisher-\n"
      "  weighted SVD init, residual base saved in <out>/base. Each checkpoint holds the merged\n"
      "  model plus adapter/ (PEFT adapter_config.json + adapter_model.safetensors).\n"
      "\nmerge: assay train merge --base CKPT --adapter DIR --out DIR writes W + (alpha/r)(BA)^T.\n"
      "\nExamples:\n"
      "  assay data gsm8k --n 200 --seed 1 --out data/gsm.jsonl\n"
      "  assay train pretrain --config examples/train/teacher.json\n"
      "  assay train distill --config examples/train/distill.json --set objective.type=rkl\n"
      "  assay train pretrain --config examples/train/teacher.json --device cuda:0\n"
      "  assay train unlearn --config examples/train/unlearn_loku.json\n"
      "  assay train merge --base demo/runs/facts/final --adapter demo/runs/unlearn_loku/final/adapter \\\n"
      "      --out demo/runs/unlearn_loku/merged\n");
  auto* merge = add_train_merge(*t);
  t->callback([merge, recipe, config, out_dir, sets, device, resume] {
    if (merge->parsed()) return;
    if (recipe->empty() || config->empty()) {
      std::cerr << "assay train: " << (recipe->empty() ? "RECIPE" : "--config")
                << " is required (run `assay train --help`)\n";
      return set_exit_code(1);
    }
    auto env = assay::train::env_from_process(&std::cout);
    if (!env.ok()) {
      std::cerr << "assay train: " << env.status().message() << "\n";
      return set_exit_code(1);
    }
    if (!out_dir->empty()) env->output_dir = *out_dir;
    // A metrics reader that goes away must not kill training: writes then fail
    // with EPIPE and the run carries on with console logging only.
    if (env->metrics_fd >= 0) std::signal(SIGPIPE, SIG_IGN);
    std::vector<std::string> overrides = *sets;
    if (!device->empty()) overrides.push_back("device=" + *device);
    // The engine reads the resume point from the environment (as under a worker).
    if (!resume->empty()) ::setenv("ASSAY_RESUME_FROM", resume->c_str(), 1);
    auto r = assay::train::run_recipe(*recipe, *config, *env, overrides);
    if (!r.ok()) {
      std::cerr << "assay train: " << r.status().message() << "\n";
      // Stopped on SIGUSR1 / ASSAY_PREEMPT_FILE after writing a checkpoint:
      // exit 75 (EX_TEMPFAIL; engine/src/train_internal.h kPreemptedExitCode).
      const bool preempted = r.status().code() == assay::Code::kUnavailable &&
                             r.status().message().find("preempted at step") != std::string::npos;
      return set_exit_code(preempted ? 75 : 1);
    }
    std::cout << "[" << *recipe << "] done: " << r->steps << " steps, loss " << r->first_loss << " -> "
              << r->last_loss << ", final checkpoint " << r->checkpoints.back() << "\n";
    set_exit_code(0);
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(45, add_train);
