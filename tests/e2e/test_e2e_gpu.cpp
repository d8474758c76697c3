// GPU telemetry end to end, through the stand-in NVML library (the true seam:
// this machine has no driver; tests/worker's Nvml.ThisMachine exercises the
// real library where one is installed): heartbeats keep each GPU's live state
// in workers.gpus_json and gpu_samples, and each run's peak GPU memory lands
// in runs.peak_gpu_mem_mb.
#include <cstdlib>

#include "e2e_harness.h"

namespace e2e {
namespace {

TEST(E2E, PeakGpuMemoryAndGpuSamplesThroughNvml) {
  Cluster c("gputel", 30.0);
  ASSERT_TRUE(c.start_coordinator());
  std::string procs = (c.dir() / "nvml-procs").string();
  // The worker inherits these: it loads the stand-in, which lists the
  // processes the first run writes into `procs` as it "allocates".
  setenv("ASSAY_NVML_LIBRARY", ASSAY_FAKE_NVML, 1);
  setenv("FAKE_NVML_PROCS_FILE", procs.c_str(), 1);
  c.start_worker("wg", "");  // no --gpus: discovery through NVML
  unsetenv("ASSAY_NVML_LIBRARY");
  unsetenv("FAKE_NVML_PROCS_FILE");

  auto set_mib = [&](int mib) {
    return "echo \"$CUDA_VISIBLE_DEVICES $$ " + std::to_string(mib) + "\" > " + q(procs + ".t") +
           " && mv " + q(procs + ".t") + " " + q(procs);
  };
  Json seen = {{"name", "seen"},
               {"command", set_mib(1500) + "; sleep 2.5; " + set_mib(3000) + "; sleep 2.5; " +
                               set_mib(500) + "; sleep 1.5"},
               {"resources", {{"gpus", 1}}}};
  Json unseen = {{"name", "unseen"}, {"command", "sleep 3"}, {"resources", {{"gpus", 1}}}};
  ASSERT_EQ(c.post("/v1/sweeps", seen).status, 201);
  ASSERT_EQ(c.post("/v1/sweeps", unseen).status, 201);
  ASSERT_TRUE(c.wait_all("seen", "succeeded", 1, 40s)) << c.diagnostics();
  ASSERT_TRUE(c.wait_all("unseen", "succeeded", 1, 40s)) << c.diagnostics();

  Db db(c.db_path());
  // Its own processes, at their peak.
  int64_t a = run_id_of(db, "seen");
  auto ra = db.rows("SELECT peak_gpu_mem_mb, gpu_mem_source FROM runs WHERE id = " +
                    std::to_string(a));
  ASSERT_EQ(ra.size(), 1u);
  EXPECT_EQ(ra[0], (std::vector<std::string>{"3000", "process"}));
  // No process of its own listed: the used memory of the GPU it held alone
  // (the stand-in reports (index + 1) GiB used on device `index`).
  int64_t b = run_id_of(db, "unseen");
  int64_t gpu = db.scalar("SELECT json_extract(gpus_json, '$[0]') FROM run_placement WHERE run_id = " +
                          std::to_string(b));
  auto rb = db.rows("SELECT peak_gpu_mem_mb, gpu_mem_source FROM runs WHERE id = " +
                    std::to_string(b));
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(rb[0], (std::vector<std::string>{std::to_string(1024 * (gpu + 1)), "device"}));
  auto api = c.get("/v1/runs/" + std::to_string(a));
  ASSERT_EQ(api.status, 200);
  EXPECT_EQ(Json::parse(api.body)["run"]["peak_gpu_mem_mb"], 3000) << api.body;

  // Heartbeats: live utilization and free memory per GPU, and their history.
  Json gpus = Json::parse(db.rows("SELECT gpus_json FROM workers WHERE id = 'wg'").at(0).at(0));
  ASSERT_EQ(gpus.size(), 2u) << gpus;
  EXPECT_EQ(gpus[1]["util_pct"], 20) << gpus;
  EXPECT_EQ(gpus[1]["mem_free_mb"], 80 * 1024 - 2048) << gpus;
  auto samples = db.rows("SELECT gpu_index, util_pct, mem_used_mb, mem_total_mb FROM gpu_samples "
                         "WHERE worker_id = 'wg' GROUP BY gpu_index ORDER BY gpu_index");
  ASSERT_EQ(samples.size(), 2u) << db.rows("SELECT * FROM gpu_samples").size() << " " << gpus;
  EXPECT_EQ(samples[0], (std::vector<std::string>{"0", "10", "1024", "81920"}));
  EXPECT_EQ(samples[1], (std::vector<std::string>{"1", "20", "2048", "81920"}));
}

}  // namespace
}  // namespace e2e
