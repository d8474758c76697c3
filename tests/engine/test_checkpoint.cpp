// Checkpoint directories: round trip, hash, HF-style input, rejections and
// an independent numpy GPT-2 forward as a reference (skips without numpy).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <stdlib.h>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "assay/engine.h"
#include "hf_python.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {

// The directory of the running test (CheckpointTest::SetUp): a fresh one under
// the system temp folder, removed with everything in it when the test ends.
fs::path g_test_root;

// An empty directory `name` inside the running test's own directory.
fs::path test_dir(const std::string& name) {
  const fs::path p = g_test_root / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

const GPTConfig kCfg{257, 16, 2, 2, 16};

std::vector<int32_t> sample_tokens() {
  std::vector<int32_t> t(2 * 12);
  for (size_t i = 0; i < t.size(); i++) t[i] = (int32_t)((i * 37 + 5) % 257);
  return t;
}

std::vector<float> logits_of(GPT& m, const std::vector<int32_t>& tok) {
  auto r = m.forward(tok.data(), 2, 12);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return {r->begin(), r->end()};
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

void write_json(const fs::path& p, const nlohmann::json& j) {
  std::ofstream f(p);
  f << j.dump(2);
}

// Re-saves `src`'s tensors into dst/model.safetensors after applying `edit`.
void rewrite_tensors(
    const fs::path& src, const fs::path& dst,
    const std::function<void(std::vector<std::pair<TensorRef, std::vector<float>>>&)>& edit) {
  auto st = SafeTensors::read((src / kModelFile).string());
  ASSERT_TRUE(st.ok());
  std::vector<std::pair<TensorRef, std::vector<float>>> ts;
  for (const auto& info : st->tensors())
    ts.push_back({{info.name, info.shape, nullptr}, *st->to_f32(info.name)});
  edit(ts);
  std::vector<TensorRef> refs;
  for (auto& [ref, data] : ts) refs.push_back({ref.name, ref.shape, data.data()});
  ASSERT_TRUE(write_safetensors((dst / kModelFile).string(), refs).ok());
}

}  // namespace

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "assay_ckpt_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << tmpl;
    g_test_root = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(g_test_root, ec);
    g_test_root.clear();
  }
};

TEST_F(CheckpointTest, RoundTripIsBitwiseAndHashed) {
  const fs::path dir = test_dir("ckpt_roundtrip");
  auto m = GPT::init_random(kCfg, 21);
  ASSERT_TRUE(m.ok());
  auto tok = make_byte_tokenizer();
  AdamW opt(AdamWConfig{}, *m);
  CheckpointMeta meta{12, std::string(64, 'a'), {{"recipe", "pretrain"}}};
  auto hash = save_checkpoint(dir.string(), *m, *tok, meta, &opt);
  ASSERT_TRUE(hash.ok()) << hash.status().to_string();
  EXPECT_EQ(hash->size(), 64u);
  for (const char* f : {"model.safetensors", "config.json", "vocab.json", "merges.txt",
                        "tokenizer_config.json", "optimizer.bin"}) {
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  }
  const auto cfg = read_json(dir / "config.json");
  EXPECT_EQ(cfg["model_type"], "gpt2");
  EXPECT_EQ(cfg["architectures"][0], "GPT2LMHeadModel");
  EXPECT_EQ(cfg["activation_function"], "gelu_new");
  EXPECT_EQ(cfg["n_embd"], 16);
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["eos_token_id"], 256);
  EXPECT_DOUBLE_EQ(cfg["layer_norm_epsilon"].get<double>(), 1e-5);
  EXPECT_EQ(cfg["assay"]["step"], 12);
  auto st = SafeTensors::read((dir / kModelFile).string());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->find("lm_head.weight"), nullptr);
  ASSERT_NE(st->find("transformer.h.1.mlp.c_fc.weight"), nullptr);
  EXPECT_EQ(st->find("transformer.h.1.mlp.c_fc.weight")->shape, (std::vector<int64_t>{16, 64}));

  auto ck = load_checkpoint(dir.string());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->hash, *hash);
  EXPECT_EQ(ck->meta.step, 12);
  EXPECT_EQ(ck->meta.parent, std::string(64, 'a'));
  EXPECT_EQ(ck->meta.extra.at("recipe"), "pretrain");
  EXPECT_EQ(ck->tokenizer->kind(), "byte");
  const auto tokens = sample_tokens();
  const auto a = logits_of(*m, tokens), b = logits_of(ck->model, tokens);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  auto frozen = load_checkpoint(dir.string(), Mode::kFrozen);
  ASSERT_TRUE(frozen.ok());
  EXPECT_TRUE(frozen->model.grads().empty());

  // Same content -> same hash; a different parameter -> a different hash.
  const fs::path dir2 = test_dir("ckpt_roundtrip2");
  EXPECT_EQ(*save_checkpoint(dir2.string(), *m, *tok, meta), *hash);
  m->params()[3] += 1.0f;
  EXPECT_NE(*save_checkpoint(dir2.string(), *m, *tok, meta), *hash);
  EXPECT_EQ(*checkpoint_hash(dir2.string()), *save_checkpoint(dir2.string(), *m, *tok, meta));
}

TEST_F(CheckpointTest, LoadsTransformersStyleDirectory) {
  const fs::path src = test_dir("ckpt_hf_src"), dst = test_dir("ckpt_hf");
  auto m = GPT::init_random(kCfg, 22);
  ASSERT_TRUE(m.ok());
  auto tok = make_byte_tokenizer();
  ASSERT_TRUE(save_checkpoint(src.string(), *m, *tok, {}).ok());
  // As GPT2LMHeadModel.save_pretrained may write: unprefixed names (older
  // exports), causal-mask buffers and a copy of the tied head.
  rewrite_tensors(src, dst, [](auto& ts) {
    std::vector<float> wte;
    for (auto& [ref, data] : ts) {
      ref.name = ref.name.substr(std::string("transformer.").size());
      if (ref.name == "wte.weight") wte = data;
    }
    for (int l = 0; l < 2; l++) {
      ts.push_back({{"h." + std::to_string(l) + ".attn.bias", {1, 1, 16, 16}, nullptr},
                    std::vector<float>(256, 1.0f)});
      ts.push_back({{"h." + std::to_string(l) + ".attn.masked_bias", {}, nullptr}, {-1e4f}});
    }
    ts.push_back({{"lm_head.weight", {257, 16}, nullptr}, wte});
  });
  nlohmann::json cfg = {{"model_type", "gpt2"},
                        {"vocab_size", 257},
                        {"n_ctx", 16},
                        {"n_embd", 16},
                        {"n_layer", 2},
                        {"n_head", 2},
                        {"n_inner", nullptr},
                        {"activation_function", "gelu_new"},
                        {"layer_norm_epsilon", 1e-05},
                        {"bos_token_id", 256},
                        {"eos_token_id", 256},
                        {"transformers_version", "4.40.0"}};
  write_json(dst / "config.json", cfg);
  fs::copy_file(src / "vocab.json", dst / "vocab.json");
  fs::copy_file(src / "merges.txt", dst / "merges.txt");

  auto ck = load_checkpoint(dst.string());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->tokenizer->kind(), "gpt2-bpe");
  EXPECT_EQ(ck->tokenizer->encode("hi!"), (std::vector<int32_t>{'h', 'i', '!'}));
  EXPECT_EQ(ck->meta.step, 0);
  // No tokenizer_config.json, as in many GPT-2 exports: no BOS convention.
  EXPECT_FALSE(ck->tokenizer->add_bos_token());
  const auto tokens = sample_tokens();
  const auto a = logits_of(*m, tokens), b = logits_of(ck->model, tokens);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
}

TEST_F(CheckpointTest, RejectsInconsistentDirectories) {
  const fs::path src = test_dir("ckpt_bad_src");
  auto m = GPT::init_random(kCfg, 23);
  ASSERT_TRUE(m.ok());
  auto tok = make_byte_tokenizer();
  ASSERT_TRUE(save_checkpoint(src.string(), *m, *tok, {}).ok());
  auto expect_fail = [&](const char* name, const std::function<void(const fs::path&)>& mutate,
                         const std::string& needle) {
    const fs::path d = test_dir(std::string("ckpt_bad_") + name);
    for (const auto& e : fs::directory_iterator(src))
      fs::copy_file(e.path(), d / e.path().filename());
    mutate(d);
    auto ck = load_checkpoint(d.string());
    ASSERT_FALSE(ck.ok()) << name;
    EXPECT_NE(ck.status().message().find(needle), std::string::npos)
        << name << ": " << ck.status().message();
  };
  expect_fail(
      "missing",
      [&](const fs::path& d) {
        rewrite_tensors(src, d, [](auto& ts) {
          std::erase_if(ts, [](const auto& t) { return t.first.name == "transformer.ln_f.bias"; });
        });
      },
      "missing tensor transformer.ln_f.bias");
  expect_fail(
      "extra",
      [&](const fs::path& d) {
        rewrite_tensors(src, d, [](auto& ts) {
          ts.push_back({{"transformer.h.9.mlp.c_fc.weight", {1}, nullptr}, {0.0f}});
        });
      },
      "unexpected tensor transformer.h.9.mlp.c_fc.weight");
  expect_fail(
      "shape",
      [&](const fs::path& d) {
        rewrite_tensors(src, d, [](auto& ts) {
          for (auto& [ref, data] : ts)
            if (ref.name == "transformer.h.0.attn.c_attn.weight") ref.shape = {48, 16};
        });
      },
      "has shape [48, 16], expected [16, 48]");
  expect_fail(
      "activation",
      [&](const fs::path& d) {
        auto j = read_json(d / "config.json");
        j["activation_function"] = "relu";
        write_json(d / "config.json", j);
      },
      "activation_function must be \"gelu_new\"");
  expect_fail(
      "nhead",
      [&](const fs::path& d) {
        auto j = read_json(d / "config.json");
        j["n_head"] = 3;
        write_json(d / "config.json", j);
      },
      "n_head must divide n_embd (16), got 3");
  expect_fail(
      "notok",
      [&](const fs::path& d) {
        fs::remove(d / "vocab.json");
        fs::remove(d / "tokenizer_config.json");
      },
      "no tokenizer");
}

namespace {

// A saved checkpoint of kCfg to copy and break.
fs::path base_checkpoint(const std::string& name) {
  const fs::path src = test_dir(name);
  auto m = GPT::init_random(kCfg, 24);
  EXPECT_TRUE(m.ok());
  auto tok = make_byte_tokenizer();
  EXPECT_TRUE(save_checkpoint(src.string(), *m, *tok, {}).ok());
  return src;
}

// Copies src into a fresh directory `name`, applies `mutate` and loads it.
assay::Result<Checkpoint> load_mutated(const fs::path& src, const std::string& name,
                                       const std::function<void(const fs::path&)>& mutate,
                                       fs::path* dir = nullptr) {
  const fs::path d = test_dir(name);
  for (const auto& e : fs::directory_iterator(src))
    fs::copy_file(e.path(), d / e.path().filename());
  mutate(d);
  if (dir) *dir = d;
  return load_checkpoint(d.string());
}

std::function<void(const fs::path&)> set_field(const std::string& key, const nlohmann::json& v) {
  return [key, v](const fs::path& d) {
    auto j = read_json(d / "config.json");
    j[key] = v;
    write_json(d / "config.json", j);
  };
}

// Expects the load to fail with a message containing the config file's path
// and every needle.
void expect_config_error(const fs::path& src, const std::string& key, const nlohmann::json& v,
                         const std::vector<std::string>& needles) {
  fs::path d;
  const std::string what = key + "=" + v.dump();
  auto ck = load_mutated(src, "ckpt_cfg_case", set_field(key, v), &d);
  ASSERT_FALSE(ck.ok()) << what << " was accepted";
  const std::string& msg = ck.status().message();
  EXPECT_NE(msg.find((d / "config.json").string() + ": "), std::string::npos)
      << what << ": " << msg;
  for (const auto& n : needles)
    EXPECT_NE(msg.find(n), std::string::npos) << what << ": '" << n << "' not in: " << msg;
}

}  // namespace

// GPT2Config settings that transformers honours and that change the model's
// log-probs are refused, not silently ignored.
TEST_F(CheckpointTest, RefusesConfigSettingsTheEngineDoesNotCompute) {
  const fs::path src = base_checkpoint("ckpt_cfg_src");
  using J = nlohmann::json;
  const std::vector<std::pair<std::string, J>> cases = {
      {"scale_attn_by_inverse_layer_idx", true},
      {"scale_attn_weights", false},
      {"add_cross_attention", true},
      {"pruned_heads", J{{"0", {1}}}},
      {"quantization_config", J{{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}}},
      {"tie_word_embeddings", false},
      {"n_inner", 32},
      {"layer_norm_epsilon", 1e-6},
      {"activation_function", "gelu"},
      {"model_type", "gpt_neo"},
  };
  for (const auto& [key, v] : cases) {
    expect_config_error(src, key, v, {"field " + key + " = " + v.dump(), "is not supported"});
  }
  // transformers lets hidden_size override n_embd; two values are refused.
  expect_config_error(src, "hidden_size", 32, {"n_embd (16)", "hidden_size (32)", "disagree"});
}

// A wrong JSON type is an error naming file, field, expected type and the
// value found (it used to escape as an exception and abort the process).
TEST_F(CheckpointTest, WrongTypedConfigFieldsAreErrors) {
  const fs::path src = base_checkpoint("ckpt_type_src");
  using J = nlohmann::json;
  expect_config_error(src, "layer_norm_epsilon", "1e-5",
                      {"field layer_norm_epsilon must be a number, got \"1e-5\""});
  expect_config_error(src, "n_layer", "2", {"field n_layer must be an integer, got \"2\""});
  expect_config_error(src, "n_embd", 16.0, {"field n_embd must be an integer, got 16.0"});
  expect_config_error(src, "n_head", int64_t{1} << 33, {"field n_head must be a 32-bit integer"});
  expect_config_error(src, "n_inner", "64",
                      {"field n_inner must be null or an integer, got \"64\""});
  expect_config_error(src, "scale_attn_weights", "true",
                      {"field scale_attn_weights must be true or false, got \"true\""});
  expect_config_error(src, "scale_attn_weights", nullptr,
                      {"field scale_attn_weights must be true or false, got null"});
  expect_config_error(src, "tie_word_embeddings", 1,
                      {"field tie_word_embeddings must be true or false, got 1"});
  expect_config_error(src, "reorder_and_upcast_attn", "no",
                      {"field reorder_and_upcast_attn must be true or false"});
  expect_config_error(src, "activation_function", 5,
                      {"field activation_function must be a string, got 5"});
  expect_config_error(src, "model_type", J::array({"gpt2"}), {"field model_type must be a string"});
  expect_config_error(src, "pruned_heads", J::array(), {"field pruned_heads must be an object"});
  expect_config_error(src, "assay", J{{"step", "3"}},
                      {"field assay.step must be an integer, got \"3\""});
  expect_config_error(src, "assay", J{{"parent", 7}},
                      {"field assay.parent must be a string, got 7"});
  expect_config_error(src, "assay", J{{"extra", "x"}}, {"field assay.extra must be an object"});
  expect_config_error(src, "assay", 3, {"field assay must be an object, got 3"});
}

// A size beyond 32 bits is reported with the value found (2^40 used to
// read as "got 0").
TEST_F(CheckpointTest, OutOfRangeSizesReportTheValueFound) {
  const fs::path src = base_checkpoint("ckpt_range_src");
  expect_config_error(src, "vocab_size", int64_t{1} << 40,
                      {"field vocab_size must be a 32-bit integer, got 1099511627776"});
  expect_config_error(src, "n_positions", -(int64_t{1} << 40),
                      {"field n_positions must be a 32-bit integer, got -1099511627776"});
  expect_config_error(src, "n_embd", uint64_t{1} << 63,
                      {"field n_embd must be a 32-bit integer, got 9223372036854775808"});
}

// A value nested 100,000 levels deep is reported, not dumped into the
// message (the recursive dump overflowed the stack).
TEST_F(CheckpointTest, DeeplyNestedConfigValuesAreErrors) {
  const fs::path src = base_checkpoint("ckpt_deep_src");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto with_text = [&](const std::string& from, const std::string& to) {
    return [=](const fs::path& d) {
      std::ifstream in(d / "config.json");
      std::string text((std::istreambuf_iterator<char>(in)), {});
      const size_t at = text.find(from);
      ASSERT_NE(at, std::string::npos) << from;
      text.replace(at, from.size(), to);
      std::ofstream(d / "config.json", std::ios::trunc) << text;
    };
  };
  auto ck = load_mutated(src, "ckpt_deep_vocab",
                         with_text("\"vocab_size\": 257", "\"vocab_size\": " + deep));
  ASSERT_FALSE(ck.ok());
  // The shared JSON reader stops it first (common/json_limits.h).
  EXPECT_NE(ck.status().message().find("config.json: line "), std::string::npos)
      << ck.status().message();
  EXPECT_NE(ck.status().message().find("nested deeper than the limit of 64 levels"),
            std::string::npos)
      << ck.status().message();
  // Within the reader's limit, the config's own checks describe deep values.
  const std::string deep30 = std::string(30, '[') + std::string(30, ']');
  ck = load_mutated(src, "ckpt_deep_vocab30",
                    with_text("\"vocab_size\": 257", "\"vocab_size\": " + deep30));
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find(
                "field vocab_size must be an integer, got an array nested deeper than 16 levels"),
            std::string::npos)
      << ck.status().message();
  ck = load_mutated(src, "ckpt_deep_extra",
                    with_text("\"extra\": {}", "\"extra\": {\"k\": " + deep30 + "}"));
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("field assay.extra.k must be a value nested at most 16 "
                                       "levels, got an array nested deeper than 16 levels"),
            std::string::npos)
      << ck.status().message();
}

// config.json alone does not size the load: a config naming a model far
// larger than the weights file is refused by the tensor check before the
// parameter buffer (here ~1.1 TB) is allocated.
TEST_F(CheckpointTest, ConfigLargerThanTheWeightsIsRefusedBeforeAllocating) {
  const fs::path src = base_checkpoint("ckpt_big_src");
  auto ck = load_mutated(src, "ckpt_big", [](const fs::path& d) {
    auto j = read_json(d / "config.json");
    j["vocab_size"] = 1 << 24;
    j["n_embd"] = 16384;
    j["n_head"] = 128;
    j["n_positions"] = j["n_ctx"] = 1 << 20;
    j["n_layer"] = 1024;
    write_json(d / "config.json", j);
  });
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("tensor transformer.wte.weight has shape [257, 16], "
                                       "expected [16777216, 16384]"),
            std::string::npos)
      << ck.status().message();
}

// NaN or infinite weights make every score NaN while the eval "succeeds":
// the load refuses them and names the tensor and the element.
TEST_F(CheckpointTest, NonFiniteWeightsAreRefusedWithTheTensorName) {
  const fs::path src = base_checkpoint("ckpt_nan_src");
  struct Case {
    const char* name;
    float value;
    bool all;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"ckpt_nan_all", std::nanf(""), true,
       "tensor transformer.wte.weight holds a non-finite value (nan) at element 0 of 4112"},
      {"ckpt_nan_one", std::nanf(""), false,
       "tensor transformer.h.1.mlp.c_fc.weight holds a non-finite value (nan) at element 5 of "
       "1024"},
      {"ckpt_inf_one", -INFINITY, false,
       "tensor transformer.h.1.mlp.c_fc.weight holds a non-finite value (-inf) at element 5"},
  };
  for (const Case& c : cases) {
    fs::path d;
    auto ck = load_mutated(
        src, c.name,
        [&](const fs::path& dir) {
          rewrite_tensors(src, dir, [&](auto& ts) {
            for (auto& [ref, data] : ts) {
              if (c.all) std::fill(data.begin(), data.end(), c.value);
              if (ref.name == "transformer.h.1.mlp.c_fc.weight") data[5] = c.value;
            }
          });
        },
        &d);
    ASSERT_FALSE(ck.ok()) << c.name << " loaded";
    const std::string& msg = ck.status().message();
    EXPECT_NE(msg.find((d / kModelFile).string() + ": " + c.needle), std::string::npos)
        << c.name << ": " << msg;
  }
}

// Settings that do not change an eval-mode forward load, and the
// PretrainedConfig aliases stand in for the GPT-2 names.
TEST_F(CheckpointTest, AcceptsHarmlessAndAliasedConfigFields) {
  const fs::path src = base_checkpoint("ckpt_ok_src");
  auto ref = load_checkpoint(src.string());
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  const auto tokens = sample_tokens();
  const auto want = logits_of(ref->model, tokens);
  auto ck = load_mutated(src, "ckpt_ok", [](const fs::path& d) {
    auto j = read_json(d / "config.json");
    for (const char* k : {"n_embd", "n_layer", "n_head", "n_positions", "n_ctx"}) j.erase(k);
    j["hidden_size"] = 16;
    j["num_hidden_layers"] = 2;
    j["num_attention_heads"] = 2;
    j["max_position_embeddings"] = 16;
    j["reorder_and_upcast_attn"] = true;
    j["activation_function"] = "gelu_pytorch_tanh";
    j["resid_pdrop"] = j["embd_pdrop"] = j["attn_pdrop"] = 0.1;
    j["use_cache"] = false;
    j["attn_implementation"] = "sdpa";
    j["torch_dtype"] = "bfloat16";
    j["pruned_heads"] = nlohmann::json::object();
    j["quantization_config"] = nullptr;
    j["summary_type"] = "cls_index";
    write_json(d / "config.json", j);
  });
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->model.config().n_embd, 16);
  EXPECT_EQ(ck->model.config().n_positions, 16);
  const auto got = logits_of(ck->model, tokens);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0);
}

// transformers' other weight layouts are named, with the conversion to do.
TEST_F(CheckpointTest, ExplainsPytorchAndShardedWeights) {
  const fs::path src = base_checkpoint("ckpt_fmt_src");
  auto expect_error = [&](const char* name, const std::vector<std::string>& files,
                          const std::vector<std::string>& needles) {
    fs::path d;
    auto ck = load_mutated(
        src, name,
        [&](const fs::path& dir) {
          fs::remove(dir / kModelFile);
          for (const auto& f : files) std::ofstream(dir / f) << "{}";
        },
        &d);
    ASSERT_FALSE(ck.ok()) << name;
    const std::string& msg = ck.status().message();
    EXPECT_NE(msg.find(d.string() + ": no model.safetensors"), std::string::npos) << msg;
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << name << ": '" << n << "' not in: " << msg;
  };
  const std::string single = "convert it to a single model.safetensors";
  expect_error("ckpt_fmt_bin", {"pytorch_model.bin"},
               {"PyTorch pickle (pytorch_model.bin)", single, "safe_serialization=True"});
  expect_error("ckpt_fmt_shards",
               {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"},
               {"sharded safetensors (model-00001-of-00002.safetensors, "
                "model-00002-of-00002.safetensors, model.safetensors.index.json)",
                single, "max_shard_size"});
  expect_error("ckpt_fmt_bin_shards",
               {"pytorch_model.bin.index.json", "pytorch_model-00001-of-00003.bin"},
               {"PyTorch pickle (pytorch_model-00001-of-00003.bin, pytorch_model.bin.index.json)",
                single});
  expect_error("ckpt_fmt_none", {}, {"holds no model weights"});
}

// Runs `script` (in tests/engine/) on a checkpoint of a small model with
// larger-than-init weights and compares its float64 logits with the
// engine's: tolerance 1e-4 absolute on logits of magnitude ~1.
void compare_with_python(const std::string& py, const std::string& script,
                         const std::string& name) {
  const fs::path dir = test_dir(name);
  const GPTConfig cfg{257, 16, 2, 4, 32};
  auto mb = GPT::init_random(cfg, 31);
  ASSERT_TRUE(mb.ok());
  uint32_t s = 1;
  for (float& p : mb->params()) {
    s = s * 1664525u + 1013904223u;
    p += ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.4f;
  }
  auto tok = make_byte_tokenizer();
  ASSERT_TRUE(save_checkpoint(dir.string(), *mb, *tok, {}).ok());
  const int B = 2, T = 9;
  std::vector<int32_t> ids(B * T);
  for (int i = 0; i < B * T; i++) ids[i] = (i * 53 + 7) % 257;
  auto lg = mb->forward(ids.data(), B, T);
  ASSERT_TRUE(lg.ok());
  std::string list;
  for (int32_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  const fs::path out = dir / "ref.bin";
  const std::string cmd = py + " " + ASSAY_SOURCE_DIR + "/tests/engine/" + script + " " +
                          dir.string() + " " + list + " " + std::to_string(B) + " " +
                          std::to_string(T) + " " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary);
  std::vector<double> ref(lg->size());
  f.read(reinterpret_cast<char*>(ref.data()), (std::streamsize)(ref.size() * 8));
  ASSERT_TRUE(f) << "short reference output";
  double max_err = 0, max_abs = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    max_err = std::max(max_err, std::fabs(ref[i] - (*lg)[i]));
    max_abs = std::max(max_abs, std::fabs(ref[i]));
  }
  EXPECT_GT(max_abs, 0.1);
  EXPECT_LT(max_err, 1e-4) << "max |logit| " << max_abs;
}

bool python_has(const std::string& modules) {
  const std::string cmd =
      std::string(ASSAY_REF_PYTHON) + " -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// An independent numpy implementation of GPT-2 (gpt2_numpy_ref.py).
TEST_F(CheckpointTest, ForwardMatchesNumpyReference) {
  if (!python_has("numpy")) GTEST_SKIP() << ASSAY_REF_PYTHON << " lacks numpy";
  compare_with_python(ASSAY_REF_PYTHON, "gpt2_numpy_ref.py", "ckpt_numpy");
}

// transformers' GPT2LMHeadModel loading the checkpoint directory itself
// (hf_gpt2_ref.py); also checks its GPT2Tokenizer against the byte tokenizer.
TEST_F(CheckpointTest, ForwardMatchesTransformers) {
  if (const std::string why = hf_python_lacks("torch, transformers"); !why.empty()) {
    GTEST_SKIP() << why;
  }
  compare_with_python(hf_python(), "hf_gpt2_ref.py", "ckpt_hf_ref");
}
