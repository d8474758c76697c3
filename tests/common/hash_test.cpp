// Content hashes: SHA-256 known answers and the artifact id rules.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "assay/hash.h"

namespace fs = std::filesystem;

namespace {

TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(assay::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(assay::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the padding spills into a second block.
  EXPECT_EQ(assay::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  assay::Sha256 inc;  // incremental updates equal one-shot hashing
  std::string million(1000000, 'a');
  for (size_t i = 0; i < million.size(); i += 4097) inc.update(million.substr(i, 4097));
  EXPECT_EQ(inc.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

class CheckpointHash : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("assay-hash-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "ck" / "sub");
    fs::create_directories(dir_ / "m");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
  fs::path dir_;
};

TEST_F(CheckpointHash, FileIsItsSha256) {
  write(dir_ / "f.bin", "abc");
  auto h = assay::artifact_hash((dir_ / "f.bin").string());
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(CheckpointHash, DirectoryHashesSortedFiles) {
  write(dir_ / "ck" / "b.txt", "bee");
  write(dir_ / "ck" / "sub" / "a.txt", "ay");
  write(dir_ / "ck" / "a.txt", "ay");
  auto h = assay::artifact_hash((dir_ / "ck").string());
  ASSERT_TRUE(h.ok()) << h.status().message();
  // The documented construction, entry by entry in sorted path order.
  assay::Sha256 want;
  for (auto [rel, body] : std::vector<std::pair<std::string, std::string>>{
           {"a.txt", "ay"}, {"b.txt", "bee"}, {"sub/a.txt", "ay"}}) {
    want.update(rel);
    want.update(std::string_view("\0", 1));
    want.update(assay::sha256_hex(body));
    want.update("\n");
  }
  EXPECT_EQ(*h, want.hex_digest());
  // A rename changes the hash; so does a byte of content.
  fs::rename(dir_ / "ck" / "b.txt", dir_ / "ck" / "c.txt");
  auto renamed = assay::artifact_hash((dir_ / "ck").string());
  ASSERT_TRUE(renamed.ok());
  EXPECT_NE(*renamed, *h);
  fs::rename(dir_ / "ck" / "c.txt", dir_ / "ck" / "b.txt");
  EXPECT_EQ(*assay::artifact_hash((dir_ / "ck").string()), *h);
  write(dir_ / "ck" / "b.txt", "bEe");
  EXPECT_NE(*assay::artifact_hash((dir_ / "ck").string()), *h);
}

TEST_F(CheckpointHash, MissingPathIsAnError) {
  auto h = assay::artifact_hash((dir_ / "nope").string());
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("nope"), std::string::npos);
}


TEST_F(CheckpointHash, ModelCheckpointDirectoryIsModelThenConfig) {
  write(dir_ / "m" / "model.safetensors", "weights");
  write(dir_ / "m" / "config.json", "{}");
  auto h = assay::artifact_hash((dir_ / "m").string());
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, assay::sha256_hex("weights{}"));
  // Tokenizer and optimizer files beside the model do not change its id.
  write(dir_ / "m" / "optimizer.bin", "state");
  EXPECT_EQ(*assay::artifact_hash((dir_ / "m").string()), *h);
  auto files = assay::sha256_files({(dir_ / "m" / "model.safetensors").string(),
                                    (dir_ / "m" / "config.json").string()});
  EXPECT_EQ(*files, *h);
}

}  // namespace
