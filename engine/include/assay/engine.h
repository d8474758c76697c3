// The native GPT engine: a GPT-2 style decoder in fp32 on the CPU, its
// AdamW optimizer and LR schedule, tokenizers, safetensors I/O and
// checkpoint directories in the Hugging Face GPT-2 layout.
//
// Layout conventions (all row-major, fp32):
//   tokens  [B, T] int32, 0 <= id < vocab_size, T <= n_positions
//   logits  [B, T, V]      hidden [B, T, C] (output of the final LayerNorm)
//   Linear weights use the Hugging Face Conv1D layout [in, out], so
//   y[., out] = x[., in] · W[in, out] + b[out]. The output head is tied:
//   logits = hidden · wteᵀ, with no bias.
// Determinism: for the same seed, inputs and thread count every result is
// bit-for-bit identical (static OpenMP schedules, fixed reduction orders).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "assay/status.h"

namespace assay::engine {

// Sets the OpenMP and OpenBLAS thread counts for this process (n >= 1).
void set_num_threads(int n);
int num_threads();

// ---------------------------------------------------------------- model

struct GPTConfig {
  int vocab_size = 0;   // V
  int n_positions = 0;  // maximum sequence length T
  int n_layer = 0;      // L
  int n_head = 0;       // NH; head size hs = C / NH
  int n_embd = 0;       // C
  // Non-ok when a field is out of range or n_head does not divide n_embd.
  Status validate() const;
  // Number of parameters (tied head counted once).
  size_t num_params() const;
  bool operator==(const GPTConfig&) const = default;
};

// A named view into the contiguous parameter (and gradient) buffer.
struct ParamTensor {
  std::string name;            // Hugging Face name, e.g. "transformer.h.0.attn.c_attn.weight"
  std::vector<int64_t> shape;  // e.g. {C, 3C} (Conv1D layout [in, out])
  size_t offset = 0;           // in floats, into params() / grads()
  size_t numel = 0;
  bool decay = false;  // true for 2-D matrices (AdamW weight decay applies)
};

// The parameter tensors of a config in buffer order: wte, wpe, per block
// ln_1.{weight,bias}, attn.c_attn.{weight,bias}, attn.c_proj.{weight,bias},
// ln_2.{weight,bias}, mlp.c_fc.{weight,bias}, mlp.c_proj.{weight,bias},
// then ln_f.{weight,bias}.
std::vector<ParamTensor> param_layout(const GPTConfig& cfg);

enum class Mode {
  kTrain,   // parameters, gradients, activations kept for backward
  kFrozen,  // forward only: no gradient or activation-gradient memory
};

class GPT {
 public:
  // GPT-2 init: weights ~ N(0, 0.02), the two residual projections per block
  // (attn.c_proj, mlp.c_proj) ~ N(0, 0.02/sqrt(2L)), biases 0, LN weight 1.
  // Uses a fixed in-house RNG, so the parameters depend only on (cfg, seed).
  static Result<GPT> init_random(const GPTConfig& cfg, uint64_t seed, Mode mode = Mode::kTrain);
  // Copies `params` (num_params() floats, in param_info() order).
  static Result<GPT> from_params(const GPTConfig& cfg, std::span<const float> params,
                                 Mode mode = Mode::kTrain);

  GPT(GPT&&) noexcept;
  GPT& operator=(GPT&&) noexcept;
  ~GPT();

  // Same parameters; the copy has its own activations (and gradients in kTrain,
  // zeroed). Use clone(Mode::kFrozen) for a teacher or reference model.
  GPT clone(Mode mode) const;

  const GPTConfig& config() const;
  Mode mode() const;
  size_t num_params() const;

  // The contiguous parameter buffer and the parallel gradient buffer
  // (grads() is empty for a kFrozen model).
  std::span<float> params();
  std::span<const float> params() const;
  std::span<float> grads();
  std::span<const float> grads() const;
  const std::vector<ParamTensor>& param_info() const;
  // The parameter named `name` (HF name), or nullptr.
  const ParamTensor* find_param(std::string_view name) const;

  // Runs the model on tokens [B, T] and returns logits [B, T, V]. The span
  // (and hidden()) stays valid until the next forward() on this model.
  // Errors: B < 1, T < 1 or T > n_positions, or a token id out of range.
  Result<std::span<const float>> forward(const int32_t* tokens, int B, int T);
  std::span<const float> logits() const;  // [B, T, V] of the last forward
  std::span<const float> hidden() const;  // [B, T, C] final-LN output of the last forward
  int batch_B() const;                    // B of the last forward (0 before any)
  int batch_T() const;

  // Backpropagates through the last forward and ADDS parameter gradients to
  // grads(). dlogits: [B, T, V] (may be null when only dhidden is given);
  // dhidden: optional extra gradient on hidden() [B, T, C].
  // Errors: kFrozen model, no forward yet, or both inputs null.
  Status backward(const float* dlogits, const float* dhidden = nullptr);
  void zero_grad();

 private:
  struct Impl;
  explicit GPT(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Mean next-token cross-entropy over positions with targets[i] >= 0
// (targets [B*T], -1 = ignore). Writes dlogits [B*T, V] = (softmax - onehot)/n
// when dlogits is non-null (zero rows for ignored positions). Returns the mean
// loss in nats (0 when no position counts). A plain LM loss for smoke tests,
// pretraining and benchmarks; objectives have their own kernels.
float lm_cross_entropy(const float* logits, const int32_t* targets, int BT, int V, float* dlogits);

// ------------------------------------------------------------ optimizer

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;  // applied only where ParamTensor::decay
};

// AdamW exactly as torch.optim.AdamW (decoupled decay, bias correction, t from 1):
//   θ ← θ − lr·λ·θ;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
//   θ ← θ − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + ε)
class AdamW {
 public:
  AdamW() = default;
  AdamW(const AdamWConfig& cfg, const GPT& model);
  // Generic form: n parameters, decay mask per element (empty = decay all).
  AdamW(const AdamWConfig& cfg, size_t n, std::vector<uint8_t> decay_mask);

  // One step over model.params() with model.grads(). Errors on size mismatch.
  Status step(GPT& model, float lr);
  Status step(std::span<float> params, std::span<const float> grads, float lr);

  int64_t t() const { return t_; }  // steps taken
  const AdamWConfig& config() const { return cfg_; }
  const std::vector<float>& m() const { return m_; }
  const std::vector<float>& v() const { return v_; }

  // Binary state file (magic "ASSAYAW1", t, config, m, v); see optim.cpp.
  Status save(const std::string& path) const;
  // Replaces this optimizer's state. Errors when the file is malformed or
  // holds a different number of parameters than this optimizer.
  Status load(const std::string& path);

 private:
  AdamWConfig cfg_;
  int64_t t_ = 0;
  std::vector<float> m_, v_;
  std::vector<uint8_t> decay_;
};

// An optimizer.bin file as plain arrays, for optimizer state that is not
// held by an AdamW object (a CUDA device model keeps its moments and step
// count on the device). m and v hold one float per parameter in
// param_layout() order, the order of GPT::params(), of AdamW::m()/v() and of
// a device model's buffers, so no reordering is needed between them.
struct AdamWState {
  int64_t t = 0;  // steps taken
  std::vector<float> m, v;
};
// Writes optimizer.bin (atomically, via path + ".tmp"); AdamW::save writes
// through it. Errors when m and v differ in size or t < 0.
Status save_adamw_state(const std::string& path, const AdamWConfig& cfg, int64_t t,
                        std::span<const float> m, std::span<const float> v);
// Reads optimizer.bin, checked: magic, `n` parameters, file size. AdamW::load
// reads through it; the file's hyperparameters are not returned.
Result<AdamWState> load_adamw_state(const std::string& path, size_t n);

// Global L2 norm of `grads` (accumulated in double, fixed order).
float grad_norm(std::span<const float> grads);
// g ← g·min(1, max_norm/(total+1e-6)); returns the pre-clip norm `total`.
// max_norm <= 0 disables clipping (the norm is still returned).
float clip_grad_norm(std::span<float> grads, float max_norm);

// Learning rate at a step (0-based): linear warmup from lr_max/warmup to
// lr_max over `warmup` steps, then decay to lr_min at step `total`
// (cosine or linear), lr_min afterwards. kConstant keeps lr_max after warmup.
struct LrSchedule {
  enum class Decay { kCosine, kLinear, kConstant };
  float lr_max = 3e-4f;
  float lr_min = 0.0f;
  int64_t warmup = 0;
  int64_t total = 1;
  Decay decay = Decay::kCosine;
  float at(int64_t step) const;
};

// ----------------------------------------------------------- tokenizers

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text to ids. With allow_special, occurrences of special tokens such as
  // "<|endoftext|>" map to their ids; otherwise they are encoded as text.
  virtual std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const = 0;
  // Ids to text; out-of-range ids are skipped, special tokens are rendered.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int eos_id() const = 0;
  virtual int bos_id() const = 0;
  virtual std::string kind() const = 0;  // "byte" or "gpt2-bpe"
  // Writes vocab.json, merges.txt, tokenizer_config.json (with
  // add_bos_token) and special_tokens_map.json into dir (created if missing),
  // and removes a tokenizer.json there: transformers would read that instead
  // and ignore add_bos_token. From these files, transformers' AutoTokenizer
  // (fast and slow GPT-2 tokenizers) yields [bos_id()] + encode(text) when
  // add_bos_token() is set, encode(text) otherwise.
  virtual Status save(const std::string& dir) const = 0;

  // The checkpoint's input convention, as Hugging Face tokenizers declare it
  // in tokenizer_config.json ("add_bos_token"): when true, every sequence the
  // model scores or continues starts with bos_id(). Every `assay train`
  // recipe trains that way and saves true; HF GPT-2 checkpoints leave it
  // false. The tokenizer itself never inserts it: encode() maps text only,
  // and each scoring or generation path prepends bos_id() when this is set.
  bool add_bos_token() const { return add_bos_token_; }
  void set_add_bos_token(bool on) { add_bos_token_ = on; }

 private:
  bool add_bos_token_ = false;
};

// The GPT-2 pre-tokenizer split (byte ranges of `text`), matching the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Invalid UTF-8 bytes count as "other" characters. Exposed for tests and tools.
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

// Bytes 0..255 are ids 0..255; "<|endoftext|>" = 256 is eos and bos.
// vocab_size() = 257 (a model may use a larger, padded vocab_size).
std::unique_ptr<Tokenizer> make_byte_tokenizer();
// GPT-2 byte-level BPE from vocab.json + merges.txt.
Result<std::unique_ptr<Tokenizer>> load_bpe_tokenizer(const std::string& vocab_json,
                                                      const std::string& merges_txt);
// GPT-2 byte-level BPE from a Hugging Face tokenizer.json (model.type "BPE").
Result<std::unique_ptr<Tokenizer>> load_tokenizer_json(const std::string& tokenizer_json);
// Whatever a directory holds: an Assay byte tokenizer (tokenizer_config.json
// "assay_tokenizer": "byte"), vocab.json + merges.txt, or tokenizer.json.
Result<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& dir);

// ----------------------------------------------------------- safetensors

struct SafeTensorInfo {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I64", ...
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte offsets into the data section
  size_t numel() const;
};

// A parsed, validated safetensors file held in memory.
class SafeTensors {
 public:
  // Validates: header length (>= 2, <= 100 MB and within the file), JSON
  // object, entry fields, known dtype, byte size == numel × dtype size,
  // offsets in range, tiling the data exactly (no gaps, no overlap, data
  // section fully used), no duplicate names.
  static Result<SafeTensors> parse(std::string bytes, const std::string& what = "safetensors");
  static Result<SafeTensors> read(const std::string& path);

  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafeTensorInfo* find(std::string_view name) const;
  // Converts tensor `name` (F32, F16, BF16 or F64) to fp32 into dst[0..numel).
  Status copy_f32(std::string_view name, float* dst, size_t numel) const;
  Result<std::vector<float>> to_f32(std::string_view name) const;

 private:
  std::string bytes_;
  size_t data_start_ = 0;
  std::vector<SafeTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;  // numel(shape) floats
};

// Writes F32 tensors in the given order; metadata always gets "format": "pt".
// The JSON header is padded with spaces to a multiple of 8 bytes.
Status write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// ----------------------------------------------------------- checkpoints

// Files in a checkpoint directory.
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kOptimizerFile = "optimizer.bin";

struct CheckpointMeta {
  int64_t step = 0;
  std::string parent;                        // parent checkpoint hash ("" for none)
  std::map<std::string, std::string> extra;  // free-form, e.g. {"recipe": "sft"}
};

struct Checkpoint {
  GPT model;
  std::unique_ptr<Tokenizer> tokenizer;
  CheckpointMeta meta;  // defaults for a checkpoint not written by Assay
  std::string hash;     // checkpoint_hash(dir)
};

// Writes model.safetensors (HF GPT-2 names, Conv1D layout, no lm_head),
// config.json (HF GPT-2 fields plus an "assay" block with step, parent,
// extra), the tokenizer files and, when opt is given, optimizer.bin.
// Returns the checkpoint hash.
Result<std::string> save_checkpoint(const std::string& dir, const GPT& model,
                                    const Tokenizer& tokenizer, const CheckpointMeta& meta,
                                    const AdamW* opt = nullptr);
// Loads a checkpoint written by Assay or by transformers (GPT2LMHeadModel).
// Tensor names may carry the "transformer." prefix or not; the buffers
// "*.attn.bias" / "*.attn.masked_bias" and a tied "lm_head.weight" are
// ignored; any other unknown or missing tensor is an error. config.json
// settings that change the forward pass beyond what the engine computes
// (engine/src/checkpoint_config.cpp: scale_attn_weights false, inverse
// layer-index scaling, cross attention, ...) and wrongly typed fields are
// errors naming file and field; a directory holding pytorch_model.bin or
// sharded weights instead of model.safetensors is reported with how to
// convert it.
Result<Checkpoint> load_checkpoint(const std::string& dir, Mode mode = Mode::kTrain);
// The artifact id: sha256 hex over the bytes of model.safetensors followed
// by the bytes of config.json.
Result<std::string> checkpoint_hash(const std::string& dir);

}  // namespace assay::engine
