// config.json of a checkpoint directory (private to the engine).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "assay/engine.h"

namespace assay::engine {

// The config.json Assay writes: GPT-2 fields as transformers' GPT2Config
// names them, plus an "assay" block {format_version, step, parent, extra}.
nlohmann::json checkpoint_config_json(const GPTConfig& c, const Tokenizer& tok,
                                      const CheckpointMeta& meta);

// Reads config.json at `path` into cfg and meta. Refuses, naming the file and
// the field, every GPT2Config / PretrainedConfig setting (transformers 4.44)
// whose value would make GPT2LMHeadModel compute something the engine does
// not, and every field whose JSON type is not the one expected.
Status parse_checkpoint_config(const std::string& path, GPTConfig* cfg, CheckpointMeta* meta);

}  // namespace assay::engine
