// Preemption end to end: the real coordinator, two real workers, a real
// `assay train pretrain`. SIGTERM to the worker preempts the run (SIGUSR1,
// checkpoint at the next step, exit); it goes back to the queue without
// using up an attempt, a second worker resumes it from that checkpoint
// (ASSAY_RESUME_FROM), and the final weights equal an uninterrupted run's
// bit for bit, with every metric step stored once on the run's curve.
#include <gtest/gtest.h>
#include <signal.h>

#include "e2e_harness.h"
#include "support/run_cmd.h"

namespace e2e {
namespace {

TEST(E2E, SigtermPreemptsAndTheRunResumesBitIdentical) {
  Cluster c("preempt", 5.0);
  const fs::path d = c.dir();
  const std::string assay = "'" + std::string(ASSAY_EXE) + "'";
  ASSERT_EQ(assay::testing::run_cmd(assay + " data gsm8k --n 64 --seed 3 --out '" +
                                    (d / "data.jsonl").string() + "'").code, 0);
  // Tiny and single-threaded, so that both runs are bit-reproducible; enough
  // steps that the SIGTERM lands mid-training.
  const int steps = 300;
  Json cfg = {{"seed", 1}, {"threads", 1},
              {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 128}}},
              {"data", {{"train", (d / "data.jsonl").string()}}},
              {"batch_size", 4}, {"seq_len", 96}, {"steps", steps}, {"lr", 3e-3},
              {"log_every", 1}, {"checkpoint_every", 50}};
  std::ofstream(d / "cfg.json") << cfg.dump();
  // The reference: the same config straight through.
  auto ref = assay::testing::run_cmd(assay + " train pretrain --config '" + (d / "cfg.json").string() +
                                     "' --out-dir '" + (d / "ref").string() + "'");
  ASSERT_EQ(ref.code, 0) << ref.out;

  ASSERT_TRUE(c.start_coordinator());
  auto& a = c.start_worker("wa", "", "--preempt-grace 20");
  Json sweep = {{"name", "pre"},
                {"command", assay + " train pretrain --config '" + (d / "cfg.json").string() + "'"},
                {"max_attempts", 1}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 40; }, 60s))
      << c.diagnostics();
  a.signal(SIGTERM);
  const int64_t id = run_id_of(db, "pre");
  const std::string where = " WHERE run_id = " + std::to_string(id);
  ASSERT_TRUE(wait_for([&] {
    return db.scalar("SELECT COUNT(*) FROM run_events" + where + " AND kind = 'preempted'") >= 1;
  }, 30s)) << c.diagnostics();
  // Back in the queue without using up its single attempt.
  auto events = [&] {
    std::string t;
    for (auto& r : db.rows("SELECT kind, detail FROM run_events" + where + " ORDER BY id"))
      t += r[0] + ": " + r[1] + "\n";
    return t;
  };
  ASSERT_TRUE(wait_for([&] { return c.counts("pre")["queued"] == 1; }, 10s))
      << events() << c.diagnostics();
  // At least the one preemption (a lease on the wire as the worker was
  // preempted is handed back unstarted, a second one that costs nothing).
  EXPECT_GE(db.scalar("SELECT preemptions FROM runs WHERE id = " + std::to_string(id)), 1);
  c.start_worker("wb", "");
  ASSERT_TRUE(c.wait_all("pre", "succeeded", 1, 90s)) << c.diagnostics();
  // Every attempt but the last was a preemption: none counted against max_attempts 1.
  EXPECT_EQ(db.scalar("SELECT attempt - preemptions FROM runs WHERE id = " + std::to_string(id)), 1);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_resumes" + where), 1) << c.diagnostics();
  // Weights: the resumed run's final checkpoint equals the reference's.
  const auto final_path = db.rows("SELECT path FROM artifacts" + where +
                                  " AND kind = 'checkpoint' ORDER BY step DESC, id DESC LIMIT 1");
  ASSERT_EQ(final_path.size(), 1u);
  EXPECT_EQ(slurp(fs::path(final_path[0][0]) / "model.safetensors"),
            slurp(d / "ref" / "final" / "model.safetensors"))
      << "resumed weights differ from the uninterrupted run's";
  // Points: every step once on the curve, the loss values the reference logged.
  const int64_t stored = db.scalar("SELECT COUNT(*) FROM metrics m JOIN metric_keys k ON "
                                   "k.id = m.key_id WHERE k.name = 'loss' AND m.run_id = " +
                                   std::to_string(id));
  const int64_t curve = db.scalar("SELECT COUNT(*) FROM metric_curve m JOIN metric_keys k ON "
                                  "k.id = m.key_id WHERE k.name = 'loss' AND m.run_id = " +
                                  std::to_string(id));
  const int64_t distinct = db.scalar("SELECT COUNT(DISTINCT m.step) FROM metric_curve m JOIN "
                                     "metric_keys k ON k.id = m.key_id WHERE k.name = 'loss' AND "
                                     "m.run_id = " + std::to_string(id));
  EXPECT_EQ(curve, steps) << "stored " << stored;
  EXPECT_EQ(distinct, steps);
  std::printf("preemption: %d steps emitted by the reference, %lld loss points stored over both "
              "attempts, %lld on the curve (%lld recomputed after resume)\n",
              steps, (long long)stored, (long long)curve, (long long)(stored - curve));
}

}  // namespace
}  // namespace e2e
