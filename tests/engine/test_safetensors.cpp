// safetensors: writer layout, round trip, dtype conversion and every
// malformed-file rejection.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "assay/engine.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {

// A file from a JSON header (padded to 8 bytes) and raw data bytes.
std::string make_file(const std::string& header, const std::string& data) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t n = h.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + h + data;
}

void expect_reject(const std::string& bytes, const std::string& needle) {
  auto r = SafeTensors::parse(bytes, "t.safetensors");
  ASSERT_FALSE(r.ok()) << "accepted a file that should fail with: " << needle;
  EXPECT_EQ(r.status().code(), assay::Code::kCorruption);
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

std::string bytes_of(std::initializer_list<uint16_t> v) {
  std::string s;
  for (uint16_t x : v) s.append(reinterpret_cast<const char*>(&x), 2);
  return s;
}

}  // namespace

// A directory of the test's own under the system temp folder, removed with
// its files when the test ends.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string tmpl = (fs::temp_directory_path() / "assay_safetensors_test_XXXXXX").string();
    if (mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(Safetensors, WriteReadRoundTrip) {
  const ScopedTempDir tmp;
  ASSERT_FALSE(tmp.path().empty());
  const fs::path& dir = tmp.path();
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  const std::vector<float> b = {42.0f};
  const std::string path = (dir / "x.safetensors").string();
  ASSERT_TRUE(
      write_safetensors(
          path, {{"a.weight", {2, 3}, a.data()}, {"b", {1}, b.data()}, {"empty", {0, 4}, nullptr}},
          {{"step", "7"}})
          .ok());
  // Raw layout: header length multiple of 8, padded with spaces, format pt.
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 4 * 7);
  const std::string header = bytes.substr(8, n);
  EXPECT_NE(header.find("\"__metadata__\":{\"step\":\"7\",\"format\":\"pt\"}"), std::string::npos)
      << header;
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));

  auto st = SafeTensors::read(path);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(st->metadata().at("format"), "pt");
  EXPECT_EQ(st->metadata().at("step"), "7");
  ASSERT_EQ(st->tensors().size(), 3u);
  const SafeTensorInfo* ai = st->find("a.weight");
  ASSERT_NE(ai, nullptr);
  EXPECT_EQ(ai->dtype, "F32");
  EXPECT_EQ(ai->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ai->begin, 0u);
  EXPECT_EQ(ai->end, 24u);
  auto av = st->to_f32("a.weight");
  ASSERT_TRUE(av.ok());
  EXPECT_EQ(*av, a);
  EXPECT_EQ(*st->to_f32("b"), b);
  EXPECT_TRUE(st->to_f32("empty")->empty());
  EXPECT_EQ(st->to_f32("missing").status().code(), assay::Code::kNotFound);
  std::vector<float> wrong(5);
  EXPECT_FALSE(st->copy_f32("a.weight", wrong.data(), 5).ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", {1}, b.data()}, {"a", {1}, b.data()}}).ok());
}

// Empty tensors of every float dtype convert without touching the
// destination, which may be null (an empty vector's data()): the copy used
// to pass that null pointer to memcpy, undefined behaviour that UBSan
// reports (tests/fuzz seed fuzz_safetensors/issue11-empty-tensor).
// A header nested 100,000 deep is refused before parsing (freeing such a
// tree recursed through the stack).
TEST(Safetensors, DeepHeaderIsRefused) {
  expect_reject(make_file(std::string(100000, '[') + std::string(100000, ']'), ""),
                "header nested deeper than 64 levels");
}

TEST(Safetensors, EmptyTensorsConvertWithoutADestination) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                        R"("b":{"dtype":"F16","shape":[3,0],"data_offsets":[0,0]},)"
                        R"("c":{"dtype":"BF16","shape":[0,2],"data_offsets":[0,0]},)"
                        R"("d":{"dtype":"F64","shape":[0],"data_offsets":[0,0]},)"
                        R"("e":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  float one = 1.0f;
  std::string data(4, '\0');
  std::memcpy(data.data(), &one, 4);
  auto st = SafeTensors::parse(make_file(h, data));
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  for (const char* name : {"a", "b", "c", "d"}) {
    EXPECT_TRUE(st->copy_f32(name, nullptr, 0).ok()) << name;
    auto v = st->to_f32(name);
    ASSERT_TRUE(v.ok()) << name << ": " << v.status().to_string();
    EXPECT_TRUE(v->empty()) << name;
  }
  EXPECT_EQ(*st->to_f32("e"), std::vector<float>{1.0f});
  // A wrong count is still an error for an empty tensor.
  float x = 0;
  EXPECT_FALSE(st->copy_f32("a", &x, 1).ok());
}

TEST(Safetensors, HalfAndBfloatConvertToF32) {
  // F16: 1.0, -2.0, 0.5, smallest subnormal 2^-24, +inf.
  const std::string f16 = bytes_of({0x3C00, 0xC000, 0x3800, 0x0001, 0x7C00});
  // BF16: 1.0, -3.5.
  const std::string bf16 = bytes_of({0x3F80, 0xC060});
  const std::string h = R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},)"
                        R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[10,14]},)"
                        R"("i":{"dtype":"I32","shape":[1],"data_offsets":[14,18]}})";
  auto st = SafeTensors::parse(make_file(h, f16 + bf16 + std::string(4, '\0')));
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  const auto hv = *st->to_f32("h");
  EXPECT_EQ(hv[0], 1.0f);
  EXPECT_EQ(hv[1], -2.0f);
  EXPECT_EQ(hv[2], 0.5f);
  EXPECT_EQ(hv[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(hv[4]) && hv[4] > 0);
  const auto bv = *st->to_f32("b");
  EXPECT_EQ(bv[0], 1.0f);
  EXPECT_EQ(bv[1], -3.5f);
  // Integer tensors parse but do not convert.
  EXPECT_EQ(st->to_f32("i").status().code(), assay::Code::kInvalidArgument);
}

TEST(Safetensors, RejectsMalformedFiles) {
  const std::string ok_h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_TRUE(SafeTensors::parse(make_file(ok_h, std::string(8, '\0'))).ok());

  expect_reject("abc", "too short");
  std::string huge(16, '\0');
  const uint64_t big = 200000000;
  std::memcpy(huge.data(), &big, 8);
  expect_reject(huge, "header length 200000000");
  std::string past(16, ' ');
  const uint64_t len = 64;
  std::memcpy(past.data(), &len, 8);
  expect_reject(past, "exceeds the file size");
  expect_reject(make_file("{\"a\": [1, 2", ""), "not valid JSON");
  expect_reject(make_file("[1, 2]", ""), "must be a JSON object");
  expect_reject(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                          std::string(12, '\0')),
                "overlaps");
  expect_reject(
      make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')),
      "out of range");
  expect_reject(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                          std::string(12, '\0')),
                "gap of 4 bytes");
  expect_reject(
      make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(8, '\0')),
      "trailing bytes");
  expect_reject(
      make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
      "byte size 8 != numel 3 x 4");
  expect_reject(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          std::string(8, '\0')),
                "duplicate tensor name 'a'");
  expect_reject(
      make_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
      "unknown dtype \"F33\"");
  expect_reject(
      make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
      "non-negative");
  expect_reject(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')),
                "data_offsets");
  expect_reject(make_file(R"({"__metadata__":{"format":1}})", ""), "__metadata__.format");
}
