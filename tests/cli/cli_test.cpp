#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_sh.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {

using assay::testing::cli::Out;
using assay::testing::cli::sh;

class Cli : public ::testing::Test {
 protected:
  assay::testing::TempDir tmp{"cli"};
  std::string dir = tmp.path, db = tmp.file("r.db");
};

}  // namespace

TEST_F(Cli, HelpListsSubcommandsWithDescriptions) {
  auto h = sh("--help");
  EXPECT_EQ(h.rc, 0);
  for (const char* sub : {"db", "query", "record", "spec"})
    EXPECT_NE(h.text.find(std::string("  ") + sub), std::string::npos) << sub << "\n" << h.text;
  EXPECT_NE(h.text.find("read-only SQL"), std::string::npos);
  auto q = sh("query --help");
  EXPECT_NE(q.text.find("Examples:"), std::string::npos);
}

TEST_F(Cli, DbInitStatusAndRecordThenQueryInEveryFormat) {
  ASSERT_EQ(sh("db init --db " + db).rc, 0);
  auto again = sh("db init --db " + db);
  EXPECT_EQ(again.rc, 1);
  EXPECT_NE(again.text.find("already exists"), std::string::npos);
  auto rec = sh("record --db " + db + " --name t -- sh -c '"
                "echo \"{\\\"step\\\": 1, \\\"metrics\\\": {\\\"loss\\\": 2.5}}\" >&$ASSAY_METRICS_FD; "
                "echo \"{\\\"step\\\": 2, \\\"metrics\\\": {\\\"loss\\\": 1.5}}\" >&$ASSAY_METRICS_FD'");
  ASSERT_EQ(rec.rc, 0) << rec.text;
  auto table = sh("query --db " + db + " \"SELECT metric, final, min FROM run_metric_summary\"");
  EXPECT_EQ(table.rc, 0);
  EXPECT_NE(table.text.find("loss"), std::string::npos) << table.text;
  EXPECT_NE(table.text.find("(1 row)"), std::string::npos) << table.text;
  auto csv = sh("query --db " + db + " --csv \"SELECT metric, final, min FROM run_metric_summary\"");
  EXPECT_EQ(csv.text, "metric,final,min\r\nloss,1.5,1.5\r\n");
  auto js = sh("query --db " + db + " --json \"SELECT run_id, state FROM run_summary\"");
  auto doc = nlohmann::json::parse(js.text);
  ASSERT_EQ(doc.size(), 1u);
  EXPECT_EQ(doc[0]["state"], "succeeded");
  auto st = sh("db status --db " + db);
  EXPECT_NE(st.text.find("metric points:   2"), std::string::npos) << st.text;
}

TEST_F(Cli, WritingQueryIsRefusedWithExitCode1) {
  ASSERT_EQ(sh("db init --db " + db).rc, 0);
  auto w = sh("query --db " + db + " \"DROP TABLE runs\"");
  EXPECT_EQ(w.rc, 1);
  EXPECT_NE(w.text.find("read-only"), std::string::npos) << w.text;
  EXPECT_EQ(sh("query --db " + db + " \"SELECT count(*) FROM runs\"").rc, 0);
}

TEST_F(Cli, FailingRunIsRecordedWithItsReason) {
  auto rec = sh("record --db " + db + " -- sh -c 'exit 3'");
  EXPECT_EQ(rec.rc, 1);
  auto q = sh("query --db " + db + " --csv \"SELECT state, failure_reason, exit_code FROM runs\"");
  EXPECT_EQ(q.text, "state,failure_reason,exit_code\r\nfailed,exit_code,3\r\n");
}

TEST_F(Cli, SpecCheckPointsAtTheField) {
  std::ofstream(dir + "/sweep.json")
      << R"({"name":"s","command":"x","space":{"lr":{"type":"loguniform","low":-1,"high":1}}})";
  auto r = sh("spec check sweep " + dir + "/sweep.json");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.text, "sweep.json: /space/lr/low: expected a number > 0, got -1\n");
  auto s = sh("spec schema sweep");
  EXPECT_EQ(s.rc, 0);
  EXPECT_NE(s.text.find("2020-12"), std::string::npos);
}

// `assay local`: the embedded coordinator and worker run a real sweep of
// shell processes end to end, and a second run of the same file resumes.
TEST_F(Cli, LocalRunsASweepEndToEndAndResumes) {
  const std::string spec = std::string(ASSAY_SOURCE_DIR) + "/examples/sweeps/quick.json";
  const std::string args = "local " + spec + " --db " + db + " --work-dir " + dir + "/work";
  auto r = sh(args);
  ASSERT_EQ(r.rc, 0) << r.text;
  EXPECT_NE(r.text.find("succeeded 6"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("loss_final"), std::string::npos) << r.text;
  auto n = sh("query --db " + db + " --csv \"SELECT count(*) FROM metrics\"");
  EXPECT_EQ(n.text, "count(*)\r\n30\r\n");
  auto again = sh(args);
  ASSERT_EQ(again.rc, 0) << again.text;
  EXPECT_NE(again.text.find("resuming sweep quick: 6 runs"), std::string::npos) << again.text;
  auto runs = sh("query --db " + db + " --csv \"SELECT count(*) FROM runs\"");
  EXPECT_EQ(runs.text, "count(*)\r\n6\r\n");
}

// User SQL has a time budget locally too: a runaway recursive query stops
// with an error naming the budget instead of running for minutes.
TEST_F(Cli, QueryStopsAtItsTimeBudget) {
  ASSERT_EQ(sh("db init --db " + db).rc, 0);
  auto r = sh("query --db " + db + " --time-budget 0.5 \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
              "SELECT x+1 FROM c) SELECT count(*) FROM c\"");
  EXPECT_EQ(r.rc, 1) << r.text;
  EXPECT_NE(r.text.find("--time-budget"), std::string::npos) << r.text;
}
