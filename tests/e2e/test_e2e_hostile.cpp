// End to end with hostile metric lines: 200 KB of nested brackets (under the
// 1 MiB line limit) and a metric name holding NUL. Each is one
// malformed_metric event; the run goes on, its good points land, it succeeds,
// and the worker and coordinator stay up.
#include "e2e_harness.h"

namespace e2e {
namespace {

TEST(E2E, HostileMetricLinesAreMalformedAndTheRunGoesOn) {
  if (!fs::exists(ASSAY_REF_PYTHON)) GTEST_SKIP() << ASSAY_REF_PYTHON << " is missing";
  Cluster c("hostile", 5.0);
  ASSERT_TRUE(c.start_coordinator());
  auto& w = c.start_worker("w1", "0");
  std::ofstream(c.dir() / "hostile.py")
      << "import os\n"
         "out = os.fdopen(int(os.environ['ASSAY_METRICS_FD']), 'w', buffering=1)\n"
         "out.write('{\"step\": 0, \"metrics\": {\"loss\": 1.0}}\\n')\n"
         "out.write('[' * 100000 + ']' * 100000 + '\\n')\n"
         "out.write('{\"step\": 1, \"metrics\": {\"loss\\\\u0000x\": 1.0}}\\n')\n"
         "out.write('{\"step\": 2, \"metrics\": {\"loss\": 0.5}}\\n')\n";
  auto rep = c.post("/v1/sweeps", {{"name", "hostile"},
                                   {"command", std::string(ASSAY_REF_PYTHON) + " " +
                                                   q((c.dir() / "hostile.py").string())}});
  ASSERT_EQ(rep.status, 201) << rep.body;
  ASSERT_TRUE(c.wait_all("hostile", "succeeded", 1, 30s)) << c.diagnostics();
  EXPECT_TRUE(w.alive()) << c.diagnostics();
  Db db(c.db_path());
  int64_t id = run_id_of(db, "hostile");
  const std::string run = std::to_string(id);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE run_id = " + run +
                      " AND kind = 'malformed_metric' AND detail LIKE 'line 2:%64 levels%'"),
            1)
      << c.diagnostics();
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE run_id = " + run +
                      " AND kind = 'malformed_metric' AND detail LIKE 'line 3:%control characters%'"),
            1);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM metrics WHERE run_id = " + run), 2);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_events WHERE kind = 'report_rejected'"), 0);
  // The coordinator still answers.
  EXPECT_EQ(c.get("/v1/runs/" + run).status, 200);
}

}  // namespace
}  // namespace e2e
