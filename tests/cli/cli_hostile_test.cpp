// The real `assay` binary on hostile inputs: spec files nested far past the
// depth limit, numbers beyond a double, and a coordinator whose replies have
// the wrong shape. Each is an error message and exit code 1, never a crash.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "../worker/fake_coordinator.h"

#include "cli_sh.h"

namespace fs = std::filesystem;

namespace {

using assay::testing::cli::Out;
using assay::testing::cli::sh;

class CliHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/assay_cli_hostile_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ + "/token") << "u0123456789abcdef\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  std::string dir_;
};

std::string deep_labels(size_t n) {
  return R"({"name": "deep", "command": "true", "labels": )" + std::string(n, '[') +
         std::string(n, ']') + "}";
}

std::string deep_args(size_t n) {
  std::string a;
  for (size_t i = 0; i < n; ++i) a += "{\"a\":";
  a += "1" + std::string(n, '}');
  return R"({"name": "deep", "command": "true", "evals": [{"suite": "gsm8k", "args": )" + a + "}]}";
}

}  // namespace

TEST_F(CliHostile, SpecCheckRefusesDeepNestingNamingTheLimit) {
  auto r = sh("spec check sweep " + write("labels.json", deep_labels(100000)));
  EXPECT_EQ(r.rc, 1) << r.text.substr(0, 500);
  EXPECT_NE(r.text.find("labels.json: line 1 column 110: JSON nested deeper than the limit of 64 levels"),
            std::string::npos)
      << r.text.substr(0, 500);
  auto a = sh("spec check sweep " + write("args.json", deep_args(50000)));
  EXPECT_EQ(a.rc, 1) << a.text.substr(0, 500);
  EXPECT_NE(a.text.find("limit of 64 levels"), std::string::npos) << a.text.substr(0, 500);
}

TEST_F(CliHostile, SubmitAndLocalRefuseDeepSpecsBeforeDoingAnything) {
  const std::string spec = write("args.json", deep_args(50000));
  auto s = sh("submit " + spec + " --coordinator http://127.0.0.1:1 --token-file " + dir_ + "/token");
  EXPECT_EQ(s.rc, 1) << s.text.substr(0, 500);
  EXPECT_NE(s.text.find("limit of 64 levels"), std::string::npos) << s.text.substr(0, 500);
  auto l = sh("local " + spec + " --db " + dir_ + "/r.db --work-dir " + dir_ + "/work");
  EXPECT_EQ(l.rc, 1) << l.text.substr(0, 500);
  EXPECT_NE(l.text.find("limit of 64 levels"), std::string::npos) << l.text.substr(0, 500);
}

TEST_F(CliHostile, TimeoutBeyondADoubleIsAnErrorNotAnAbort) {
  auto r = sh("spec check sweep " +
              write("t.json", R"({"name": "t", "command": "true", "timeout": 1e999})"));
  EXPECT_EQ(r.rc, 1) << r.text;
  EXPECT_NE(r.text.find("t.json: line 1 column 45: expected a number within the range of a double, got 1e999"),
            std::string::npos)
      << r.text;
  auto d = sh("spec check sweep " +
              write("d.json", R"({"name": "t", "command": "true", "name": "u"})"));
  EXPECT_EQ(d.rc, 1) << d.text;
  EXPECT_NE(d.text.find(R"(d.json: /name: duplicate key "name")"), std::string::npos) << d.text;
}

// A reply of the wrong shape from the coordinator is reported with exit
// code 1, not std::terminate.
TEST_F(CliHostile, WrongShapedCoordinatorReplyIsReportedNotAborted) {
  worker_test::FakeCoordinator fake([](const std::string&, const std::string&) {
    return worker_test::FakeReply{201, R"({"sweep": 5, "created": "yes", "runs": 3})"};
  });
  const std::string spec = write("ok.json", R"({"name": "ok", "command": "true"})");
  auto r = sh("submit " + spec + " --coordinator " + fake.url() + " --token-file " + dir_ + "/token");
  EXPECT_EQ(r.rc, 1) << r.text;
  EXPECT_NE(r.text.find("assay: unexpected error: "), std::string::npos) << r.text;
}

TEST_F(CliHostile, DeeplyNestedCoordinatorReplyIsRefused) {
  worker_test::FakeCoordinator fake([](const std::string&, const std::string&) {
    return worker_test::FakeReply{200, std::string(100000, '[') + std::string(100000, ']')};
  });
  auto r = sh("runs --coordinator " + fake.url() + " --token-file " + dir_ + "/token");
  EXPECT_EQ(r.rc, 1) << r.text.substr(0, 500);
  EXPECT_NE(r.text.find("JSON nested deeper than the limit of 64 levels"), std::string::npos)
      << r.text.substr(0, 500);
}

// Training configs and data lines go through the same depth limit: a
// 100,000-deep config is an error naming the limit, not a crash.
TEST(CliHostileTrain, DeepConfigIsAnError) {
  char tmpl[] = "/tmp/assay-hostile-train-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string cfg = dir + "/deep.json";
  std::ofstream(cfg) << "{\"data\": " << std::string(100000, '[') << std::string(100000, ']') << "}";
  auto r = sh("train sft --config " + cfg);
  EXPECT_EQ(r.rc, 1) << r.text.substr(0, 400);  // an error, not a signal
  EXPECT_NE(r.text.find("64 levels"), std::string::npos) << r.text.substr(0, 400);
  std::filesystem::remove_all(dir);
}
