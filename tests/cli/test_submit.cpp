// `assay submit` checks a spec on the client, with the errors `assay local`
// and `assay spec check` give, before it looks for a coordinator or a token.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "assay/version.h"
#include "support/run_cmd.h"
#include "support/temp_dir.h"

namespace {

using assay::testing::run_cmd;

class CliSubmit : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(tmp_.file(name)) << text;
    return tmp_.file(name);
  }
  // A coordinator that is not there, and no token: neither may matter.
  std::string submit(const std::string& args) {
    return std::string(ASSAY_EXE) + " submit " + args + " --coordinator http://127.0.0.1:1 --token-file " +
           tmp_.file("no-token");
  }
  assay::testing::TempDir tmp_{"cli-submit"};
};

TEST_F(CliSubmit, SweepErrorsAreTheSameAsAssayLocals) {
  const std::string spec = write("dup.json", R"({"name": "d", "command": "x {seed}", "seeds": [3, 4, 3]})");
  auto s = run_cmd(submit(spec));
  EXPECT_EQ(s.code, 1) << s.out;
  EXPECT_EQ(s.out, "assay submit: dup.json: /seeds/2: expected unique items, got a repeat of item 0 3\n");
  auto l = run_cmd(std::string(ASSAY_EXE) + " local " + spec + " --work-dir " + tmp_.file("local") + " --db " + tmp_.file("l.db"));
  EXPECT_EQ(l.code, 1) << l.out;
  EXPECT_NE(l.out.find("dup.json: /seeds/2: expected unique items, got a repeat of item 0 3"), std::string::npos)
      << l.out;
}

TEST_F(CliSubmit, PlaceholderAndRunSpecErrorsComeFromTheClient) {
  auto p = run_cmd(submit(write("p.json", R"({"name": "p", "command": "x {lr}"})")));
  EXPECT_EQ(p.code, 1) << p.out;
  EXPECT_EQ(p.out, "assay submit: p.json: /command: placeholder {lr} names no dimension of /space; "
                   "expected one of seed\n");
  auto r = run_cmd(submit("--run " + write("r.json", R"({"command": "x", "priority": 5000})")));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out, "assay submit: r.json: /priority: expected an integer in -1000..1000, got 5000\n");
}

TEST_F(CliSubmit, AValidSpecGoesOnToTheCoordinator) {
  auto s = run_cmd(submit(write("ok.json", R"({"name": "ok", "command": "true"})")));
  EXPECT_EQ(s.code, 1) << s.out;
  EXPECT_NE(s.out.find("no-token"), std::string::npos) << s.out;  // got as far as the token
}

}  // namespace

namespace {

// One version string: project(VERSION) in CMakeLists.txt, through assay/version.h.
TEST(CliVersion, IsTheProjectVersion) {
  std::ifstream in(std::string(ASSAY_SOURCE_DIR) + "/CMakeLists.txt");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = "project(assay VERSION ";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos);
  const std::string version = text.substr(at + key.size(), text.find(' ', at + key.size()) - at - key.size());
  EXPECT_EQ(std::string(assay::kVersion), version);
  auto v = assay::testing::run_cmd(std::string(ASSAY_EXE) + " --version");
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.out, "assay " + version + "\n");
}

}  // namespace
