// Placement: GPU sharing, no double assignment, labels, CPU slots, order.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "assay/scheduler.h"

using namespace assay::coordinator;

namespace {

WorkerInfo gpu_worker(const std::string& id, int n_gpus, int64_t mem_mb, int cpus = 32) {
  WorkerInfo w;
  w.id = id;
  w.cpus = cpus;
  for (int i = 0; i < n_gpus; ++i) w.gpus.push_back({i, "GPU-" + id + std::to_string(i), "H100", mem_mb, mem_mb});
  return w;
}

RunNeeds gpu_run(int64_t id, int gpus, int64_t mem_mb = 0, int priority = 0) {
  RunNeeds r;
  r.run_id = id;
  r.gpus = gpus;
  r.gpu_mem_mb = mem_mb;
  r.cpus = 1;
  r.priority = priority;
  return r;
}

}  // namespace

TEST(Scheduler, OneGpuRunsShareAMultiGpuWorkerWithoutDoubleAssignment) {
  Scheduler s;
  s.upsert_worker(gpu_worker("w", 4, 80000));
  for (int i = 1; i <= 6; ++i) s.enqueue(gpu_run(i, 1));
  auto got = s.lease("w", 10, 100);
  ASSERT_EQ(got.size(), 4u);
  std::set<int> gpus;
  for (auto& a : got) {
    ASSERT_EQ(a.gpus.size(), 1u);
    gpus.insert(a.gpus[0]);
  }
  EXPECT_EQ(gpus, (std::set<int>{0, 1, 2, 3}));  // each GPU exactly once
  EXPECT_EQ(s.queued_count(), 2u);
  EXPECT_TRUE(s.lease("w", 10, 100).empty());    // all GPUs held
  s.release(got[1].run_id);
  auto again = s.lease("w", 10, 100);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].gpus, got[1].gpus);          // the freed GPU, and only it
}

TEST(Scheduler, MultiGpuRunNeedsEnoughFreeMemoryOnEachGpu) {
  Scheduler s;
  auto w = gpu_worker("w", 2, 80000);
  w.gpus[1].mem_free_mb = 10000;  // someone else uses GPU 1
  s.upsert_worker(w);
  s.enqueue(gpu_run(1, 2, 40000));
  EXPECT_TRUE(s.lease("w", 1, 100).empty());
  s.enqueue(gpu_run(2, 1, 40000));
  auto got = s.lease("w", 5, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].run_id, 2);
  EXPECT_EQ(got[0].gpus, std::vector<int>{0});
  EXPECT_TRUE(s.is_queued(1));
}

TEST(Scheduler, LabelsMustMatch) {
  Scheduler s;
  auto a = gpu_worker("a", 1, 80000);
  a.labels = {{"zone", "east"}};
  auto b = gpu_worker("b", 1, 80000);
  b.labels = {{"zone", "west"}, {"arch", "hopper"}};
  s.upsert_worker(a);
  s.upsert_worker(b);
  auto r = gpu_run(1, 1);
  r.labels = {{"zone", "west"}};
  s.enqueue(r);
  EXPECT_TRUE(s.lease("a", 1, 100).empty());
  auto got = s.lease("b", 1, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].worker_id, "b");
}

TEST(Scheduler, CpuRunsUseCpuSlotsAndNeverGpus) {
  Scheduler s;
  s.upsert_worker(gpu_worker("w", 1, 80000, /*cpus=*/4));
  for (int i = 1; i <= 5; ++i) {
    RunNeeds r;
    r.run_id = i;
    r.cpus = 2;
    s.enqueue(r);
  }
  auto got = s.lease("w", 10, 100);
  ASSERT_EQ(got.size(), 2u);  // 4 slots / 2 each
  for (auto& a : got) EXPECT_TRUE(a.gpus.empty());
  EXPECT_EQ(s.worker("w")->cpus_used, 4);
  EXPECT_EQ(s.worker("w")->gpus[0].held_by, 0);
  // A GPU run with cpus=0 still fits next to them.
  auto g = gpu_run(9, 1);
  g.cpus = 0;
  s.enqueue(g);
  auto got2 = s.lease("w", 10, 100);
  ASSERT_EQ(got2.size(), 1u);
  EXPECT_EQ(got2[0].run_id, 9);
}

TEST(Scheduler, PriorityThenFifoAndMaxRuns) {
  Scheduler s;
  auto w = gpu_worker("w", 0, 0, 100);
  w.max_runs = 3;
  s.upsert_worker(w);
  for (int i = 1; i <= 5; ++i) {
    RunNeeds r;
    r.run_id = i;
    r.priority = (i == 4) ? 10 : 0;
    s.enqueue(r);
  }
  auto got = s.lease("w", 10, 100);
  ASSERT_EQ(got.size(), 3u);  // max_runs
  EXPECT_EQ(got[0].run_id, 4);
  EXPECT_EQ(got[1].run_id, 1);
  EXPECT_EQ(got[2].run_id, 2);
}

TEST(Scheduler, LeasesExpireUnlessRenewedAndHoldRestoresAfterRestart) {
  Scheduler s;
  s.upsert_worker(gpu_worker("w", 2, 80000));
  s.enqueue(gpu_run(1, 1));
  auto got = s.lease("w", 1, 130);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(s.expired(129).empty());
  EXPECT_EQ(s.expired(131), std::vector<int64_t>{1});
  s.renew("w", 200);
  EXPECT_TRUE(s.expired(131).empty());

  Scheduler t;  // a restarted coordinator rebuilding from the database
  t.upsert_worker(gpu_worker("w", 2, 80000));
  ASSERT_TRUE(t.hold(got[0]).ok());
  Assignment clash = got[0];
  clash.run_id = 2;
  EXPECT_FALSE(t.hold(clash).ok());  // GPU already held by run 1
  t.enqueue(gpu_run(3, 2));
  EXPECT_TRUE(t.lease("w", 1, 100).empty());
}

namespace {

// The placement rule written as plainly as possible: walk the queue in
// (priority, id) order and take every run fits() accepts. lease() must give
// exactly this, whatever shortcuts it takes.
std::vector<int64_t> reference_lease(const std::vector<RunNeeds>& queue, WorkerInfo w,
                                     size_t on_worker, int max_runs) {
  std::vector<RunNeeds> order = queue;
  std::stable_sort(order.begin(), order.end(), [](const RunNeeds& a, const RunNeeds& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.run_id < b.run_id;
  });
  std::vector<int64_t> out;
  for (const auto& r : order) {
    if (static_cast<int>(out.size()) >= max_runs) break;
    std::vector<int> gpus;
    if (!Scheduler::fits(w, on_worker, r, &gpus)) continue;
    for (auto& g : w.gpus)
      if (std::find(gpus.begin(), gpus.end(), g.index) != gpus.end()) g.held_by = r.run_id;
    w.cpus_used += r.cpus;
    ++on_worker;
    out.push_back(r.run_id);
  }
  return out;
}

}  // namespace

TEST(Scheduler, LeaseMatchesThePlainRuleOnRandomQueuesIncludingFullWorkersAndCpulessRuns) {
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  auto next = [&](int n) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<int>(x % static_cast<uint64_t>(n));
  };
  for (int trial = 0; trial < 400; ++trial) {
    Scheduler s;
    WorkerInfo w = gpu_worker("w", next(3), 1000, next(5));
    w.max_runs = next(4) == 0 ? 1 + next(4) : 0;
    if (next(3) == 0) w.labels["zone"] = "a";
    s.upsert_worker(w);
    std::vector<RunNeeds> queue;
    // Some runs already hold part of the worker (it may be full).
    int64_t id = 1;
    for (int k = next(4); k > 0; --k) {
      RunNeeds r = gpu_run(id++, 0);
      r.cpus = next(2);
      s.enqueue(r);
      (void)s.lease("w", 1, 100);
      (void)s.dequeue(r.run_id);  // it did not fit: not part of the queue under test
    }
    const WorkerInfo before = *s.worker("w");
    const size_t on_worker = s.runs_of("w").size();
    for (int k = 3 + next(30); k > 0; --k) {
      RunNeeds r = gpu_run(id++, next(3) == 0 ? 1 + next(2) : 0, next(2) ? 0 : 2000, next(3));
      r.cpus = next(4) == 0 ? 0 : 1 + next(2);
      if (next(5) == 0) r.labels["zone"] = next(2) ? "a" : "b";
      queue.push_back(r);
      s.enqueue(r);
    }
    const int max_runs = 1 + next(6);
    std::vector<int64_t> want = reference_lease(queue, before, on_worker, max_runs);
    std::vector<int64_t> got;
    for (const auto& a : s.lease("w", max_runs, 100)) got.push_back(a.run_id);
    ASSERT_EQ(got, want) << "trial " << trial;
    // What was not placed is still queued, what was placed is not.
    for (const auto& r : queue)
      EXPECT_EQ(s.is_queued(r.run_id),
                std::find(got.begin(), got.end(), r.run_id) == got.end());
  }
}
