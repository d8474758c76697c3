// The pure parts of the SLURM integration: the worker job script, the
// parsers (on output captured from SLURM 22.05 in testdata/), the triage of
// job states, the autoscaling decision, and a worker's view of its job.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "assay/slurm.h"
#include "assay/slurm_autoscale.h"
#include "assay/slurm_exec.h"
#include "assay/worker_slurm.h"

namespace assay::slurm {
namespace {

std::string data(const std::string& name) {
  std::ifstream in(std::string(ASSAY_SLURM_TESTDATA) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

WorkerJobSpec spec() {
  WorkerJobSpec s;
  s.assay_exe = "/opt/assay/bin/assay";
  s.coordinator = "http://head:8470";
  s.token_file = "/home/u/.assay/worker.token";
  s.partition = "gpu";
  s.nodes = 2;
  s.gpus_per_node = 4;
  s.cpus_per_task = 16;
  s.time = "04:00:00";
  s.grace_s = 120;
  s.work_dir = "/shared/it's work";
  s.tag = "exp1";
  return s;
}

TEST(SlurmScript, RendersSignalRequeueGpusAndOneWorkerPerNode) {
  auto s = spec();
  s.account = "proj";
  s.qos = "high";
  s.constraint = "h100";
  s.sbatch_args = {"--mem=64G"};
  s.idle_exit_s = 300;
  auto r = render_worker_script(s);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const std::string& t = *r;
  for (const char* want :
       {"#!/bin/bash\n", "#SBATCH --job-name=assay-worker:exp1\n", "#SBATCH --partition=gpu\n",
        "#SBATCH --nodes=2\n", "#SBATCH --ntasks-per-node=1\n", "#SBATCH --cpus-per-task=16\n",
        "#SBATCH --gpus-per-node=4\n", "#SBATCH --time=04:00:00\n",
        "#SBATCH --signal=B:TERM@120\n", "#SBATCH --requeue\n", "#SBATCH --account=proj\n",
        "#SBATCH --qos=high\n", "#SBATCH --constraint=h100\n", "#SBATCH --mem=64G\n",
        "pf='/shared/it'\\''s work'\"/preempt-$SLURM_JOB_ID\"\n", "rm -f \"$pf\"",
        "trap 'touch \"$pf\"' TERM\n",
        "srun --ntasks-per-node=1 --kill-on-bad-exit=0 '/opt/assay/bin/assay' worker "
        "--coordinator 'http://head:8470' --token-file '/home/u/.assay/worker.token' "
        "--work-dir '/shared/it'\\''s work/{id}' --cpus 16 --preempt-grace 110 --preempt-file \"$pf\" --idle-exit 300 &\n"})
    EXPECT_NE(t.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << t;
  // The token never appears, only its file.
  EXPECT_EQ(t.find("--token "), std::string::npos);
}

TEST(SlurmScript, NoGpuLineWithoutGpusAndErrorsNameTheFlag) {
  auto s = spec();
  s.gpus_per_node = 0;
  auto r = render_worker_script(s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->find("--gpus-per-node"), std::string::npos);
  EXPECT_EQ(r->find("--idle-exit"), std::string::npos);

  s = spec();
  s.partition = "gpu; rm -rf /";
  auto bad = render_worker_script(s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--partition: 'gpu; rm -rf /' holds whitespace"),
            std::string::npos) << bad.status().message();
  s = spec();
  s.time.clear();
  EXPECT_EQ(render_worker_script(s).status().message(), "--time: required, got nothing");
  s = spec();
  s.nodes = 0;
  EXPECT_EQ(render_worker_script(s).status().message(), "--nodes: expected >= 1, got 0");
  s = spec();
  s.sbatch_args = {"mem=4G"};
  EXPECT_NE(render_worker_script(s).status().message().find("--sbatch-arg: 'mem=4G'"),
            std::string::npos);
}

TEST(SlurmScript, PreemptGraceLeavesTimeToDeliver) {
  EXPECT_EQ(worker_preempt_grace(120), 110);
  EXPECT_EQ(worker_preempt_grace(40), 30);
  EXPECT_EQ(worker_preempt_grace(20), 15);
  EXPECT_EQ(worker_preempt_grace(1), 1);
}

TEST(SlurmExecScript, RunsTheCommandWithMetricsToTheSharedFile) {
  RunJobSpec r;
  r.command = "python train.py --name 'a b'";
  r.job_dir = "/shared/runs/1.1/slurm";
  r.partition = "gpu";
  r.time = "2:00:00";
  r.gpus = 2;
  r.cpus = 8;
  r.name = "assay-run:1";
  auto t = render_run_script(r);
  ASSERT_TRUE(t.ok()) << t.status().message();
  for (const char* want :
       {"#SBATCH --job-name=assay-run:1\n", "#SBATCH --partition=gpu\n", "#SBATCH --gpus=2\n",
        "#SBATCH --cpus-per-task=8\n", "#SBATCH --no-requeue\n",
        "#SBATCH --output=/shared/runs/1.1/slurm/job.out\n",
        "exec 3>>'/shared/runs/1.1/slurm/metrics.jsonl'\nexport ASSAY_METRICS_FD=3\n",
        "setsid /bin/sh -c 'python train.py --name '\\''a b'\\''' &\nchild=$!\n",
        "trap 'kill -USR1 -- -$child' USR1\n"})
    EXPECT_NE(t->find(want), std::string::npos) << want << "\n" << *t;
  EXPECT_EQ(t->find("CUDA_VISIBLE_DEVICES"), std::string::npos);
  r.gpus = 0;
  EXPECT_NE(render_run_script(r)->find("export CUDA_VISIBLE_DEVICES=\n"), std::string::npos);
  r.command.clear();
  EXPECT_FALSE(render_run_script(r).ok());
}

TEST(SlurmParse, SqueueCapturedOutput) {
  auto jobs = parse_squeue(data("squeue.txt"));
  ASSERT_TRUE(jobs.ok()) << jobs.status().message();
  ASSERT_EQ(jobs->size(), 2u);
  const auto& a = (*jobs)[0];
  EXPECT_EQ(a.id, "1");
  EXPECT_EQ(a.name, "assay-worker:tl");
  EXPECT_TRUE(a.is_worker_job());
  EXPECT_EQ(a.tag(), "tl");
  EXPECT_EQ(a.state, "RUNNING");
  EXPECT_EQ(a.nodes, 1);
  EXPECT_EQ(a.cpus, 1);
  EXPECT_EQ(a.time_limit, "1:00");
  EXPECT_EQ(a.node_list, "vm");
  EXPECT_FALSE((*jobs)[1].is_worker_job());
  auto bad = parse_squeue("1|x|RUNNING\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected 10 '|'-separated fields"), std::string::npos);
}

TEST(SlurmParse, ScontrolCapturedOutput) {
  auto killed = parse_scontrol_jobs(data("scontrol_killed.txt"));
  ASSERT_EQ(killed.size(), 1u);
  EXPECT_EQ(killed[0].id, "3");
  EXPECT_EQ(killed[0].name, "wrap");
  EXPECT_EQ(killed[0].state, "CANCELLED");
  EXPECT_EQ(killed[0].exit_code, "0:15");
  EXPECT_EQ(killed[0].node_list, "vm");
  auto failed = parse_scontrol_jobs(data("scontrol_failed.txt"));
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].state, "FAILED");
  EXPECT_EQ(failed[0].reason, "NonZeroExitCode");
  EXPECT_EQ(failed[0].exit_code, "3:0");
}

TEST(SlurmParse, JobcompCapturedLogLaterLinesWin) {
  auto jobs = parse_jobcomp(data("jobcomp.txt"));
  std::map<std::string, JobRecord> by_id;
  for (auto& j : jobs) by_id[j.id] = j;
  ASSERT_TRUE(by_id.count("5"));
  EXPECT_EQ(by_id["5"].name, "assay-worker:abc");
  EXPECT_EQ(by_id["5"].state, "CANCELLED");
  bool timeout = false;
  for (auto& j : jobs) timeout |= j.state == "TIMEOUT";
  EXPECT_TRUE(timeout) << "the capture holds a job that hit its time limit";
  // Job ids 2 and 3 occur twice (the controller's state was reset): the last line is kept.
  EXPECT_EQ(by_id["2"].state, "FAILED");
  EXPECT_EQ(by_id["3"].state, "CANCELLED");
}

TEST(SlurmParse, SacctParsable) {
  // sacct -n -P -X -o JobID,JobName,State,ExitCode,NodeList,Start,End (its
  // documented layout; a cluster without slurmdbd, where sacct fails).
  auto jobs = parse_sacct("42|assay-worker:a|CANCELLED by 0|0:9|n1|2026-12-01T10:00:00|"
                          "2026-12-01T10:05:00\n43|x|OUT_OF_MEMORY|0:125|n2|a|b\n");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].state, "CANCELLED");
  EXPECT_EQ(jobs[1].state, "OUT_OF_MEMORY");
  EXPECT_TRUE(parse_sacct(data("sacct_disabled.txt")).empty());
}

// `sacct -n -P -X -o <kSacctFields> -j ...` captured from the test cluster
// with slurmdbd (slurm_fixture.h, Options::accounting): a worker
// job cancelled, a job completed, one failed (exit 3), one killed with
// scancel -s KILL, one past its time limit, a short one, one pending, one
// running; the last line, a job named "a|b", from a second such cluster
// (its job id renumbered from 1).
TEST(SlurmParse, SacctCapturedFromSlurmdbd) {
  auto jobs = parse_sacct(data("sacct.txt"));
  ASSERT_EQ(jobs.size(), 9u);
  std::map<std::string, JobRecord> by_id;
  for (auto& j : jobs) by_id[j.id] = j;
  ASSERT_EQ(by_id.size(), 9u);
  EXPECT_EQ(by_id["1"].name, "assay-worker:abc");
  EXPECT_EQ(by_id["1"].state, "CANCELLED");  // "CANCELLED by 0"
  EXPECT_EQ(by_id["1"].node_list, "vm");
  EXPECT_EQ(by_id["1"].start_time, "2026-12-01T21:08:01");
  EXPECT_EQ(by_id["1"].end_time, "2026-12-01T21:08:09");
  EXPECT_EQ(by_id["2"].state, "COMPLETED");
  EXPECT_EQ(by_id["3"].state, "FAILED");
  EXPECT_EQ(by_id["3"].exit_code, "3:0");
  // Killed: sacct says 0:0 where scontrol says 0:9 (scontrol_killed.txt).
  EXPECT_EQ(by_id["4"].state, "CANCELLED");
  EXPECT_EQ(by_id["4"].exit_code, "0:0");
  EXPECT_EQ(by_id["5"].state, "TIMEOUT");
  EXPECT_EQ(by_id["7"].state, "PENDING");
  EXPECT_EQ(by_id["7"].node_list, "None assigned");
  EXPECT_EQ(by_id["7"].start_time, "Unknown");
  EXPECT_EQ(by_id["8"].name, "with space");
  EXPECT_EQ(by_id["8"].state, "RUNNING");
  EXPECT_EQ(by_id["8"].end_time, "Unknown");
  // sacct -P does not escape '|' in a job name.
  EXPECT_EQ(by_id["9"].name, "a|b");
  EXPECT_EQ(by_id["9"].state, "CANCELLED");
  EXPECT_EQ(by_id["9"].exit_code, "0:0");
  EXPECT_EQ(by_id["9"].end_time, "2026-12-01T21:08:51");
  const std::map<std::string, std::string> reasons = {
      {"1", "slurm_cancelled"}, {"2", ""},  {"3", "slurm_failed"}, {"4", "slurm_cancelled"},
      {"5", "slurm_timeout"},   {"6", ""},  {"7", ""},             {"8", ""},
      {"9", "slurm_cancelled"}};
  for (const auto& [id, reason] : reasons)
    EXPECT_EQ(triage_reason(by_id[id].state), reason) << "job " << id << " " << by_id[id].state;
}

TEST(SlurmParse, KeyValuesKeepSpacesInValues) {
  auto kv = parse_key_values("JobId=7 JobName=a b Reason=Some reason ExitCode=0:0");
  EXPECT_EQ(kv["JobName"], "a b");
  EXPECT_EQ(kv["Reason"], "Some reason");
  EXPECT_EQ(kv["ExitCode"], "0:0");
}

TEST(SlurmTriage, StatesToReasons) {
  EXPECT_EQ(triage_reason("OUT_OF_MEMORY"), "slurm_oom");
  EXPECT_EQ(triage_reason("TIMEOUT"), "slurm_timeout");
  EXPECT_EQ(triage_reason("NODE_FAIL"), "slurm_node_fail");
  EXPECT_EQ(triage_reason("PREEMPTED"), "slurm_preempted");
  EXPECT_EQ(triage_reason("CANCELLED by 0"), "slurm_cancelled");
  EXPECT_EQ(triage_reason("COMPLETED"), "");
  EXPECT_EQ(triage_reason("RUNNING"), "");
  EXPECT_EQ(job_of_worker("slurm-1234-node7-0"), "1234");
  EXPECT_EQ(job_of_worker("slurm-12_3-n-1"), "12_3");
  EXPECT_EQ(job_of_worker("gpu-node-1"), "");
  EXPECT_EQ(job_of_worker("slurm-x-n-0"), "");
}

TEST(SlurmAutoscale, DecisionInvariants) {
  // Exhaustive over small inputs: never negative, never past the cap, zero
  // without demand, and capacity on its way is counted (no thrashing).
  for (int runs = 0; runs <= 6; ++runs)
    for (int pending = 0; pending <= 4; ++pending)
      for (int starting = 0; starting <= 2; ++starting)
        for (int running = starting; running <= 4; ++running)
          for (int cap = 0; cap <= 5; ++cap)
            for (int per = 1; per <= 3; ++per) {
              ScaleInput in{runs, 0, pending, starting, running, cap, per};
              const int n = jobs_to_submit(in);
              SCOPED_TRACE(testing::Message() << runs << " " << pending << " " << starting << " "
                                              << running << " " << cap << " " << per);
              EXPECT_GE(n, 0);
              EXPECT_LE(pending + running + n, std::max(cap, pending + running));
              if (runs == 0) { EXPECT_EQ(n, 0); }
              // What is submitted plus what is on its way never exceeds the need.
              const int need = (runs + per - 1) / per;
              if (n > 0) { EXPECT_LE(n + pending + starting, need); }
              // The next pass, with those jobs pending, submits nothing more.
              ScaleInput next = in;
              next.pending_jobs += n;
              if (n > 0) { EXPECT_EQ(jobs_to_submit(next), 0); }
            }
  EXPECT_EQ(jobs_to_submit({5, 0, 0, 0, 0, 10, 2}), 3);
  EXPECT_EQ(jobs_to_submit({5, 0, 1, 0, 1, 10, 2}), 2);
  EXPECT_EQ(jobs_to_submit({5, 0, 0, 0, 0, 2, 1}), 2);
}

TEST(SlurmAutoscale, UnplaceableRunsByResources) {
  using Json = nlohmann::json;
  Json workers = Json::parse(R"([
    {"id": "a", "alive": true, "cpus": 2, "cpus_used": 1, "gpus": [{"index": 0, "run_id": 5},
                                                                 {"index": 1, "run_id": null}]},
    {"id": "b", "alive": false, "cpus": 8, "cpus_used": 0, "gpus": []}])");
  Json runs = Json::parse(R"([
    {"id": 1, "resources": {"gpus": 1, "cpus": 1}},
    {"id": 2, "resources": {"gpus": 1, "cpus": 1}},
    {"id": 3, "resources": {"gpus": 0, "cpus": 1}},
    {"id": 4, "resources": {"gpus": 0, "cpus": 2}}])");
  auto d = unplaceable_runs(runs, workers);
  EXPECT_EQ(d.runs, 2);  // run 2 (no second free GPU) and run 4 (one CPU slot left, used by 3)
  EXPECT_EQ(d.max_gpus, 1);
  EXPECT_EQ(d.max_cpus, 2);
  EXPECT_EQ(unplaceable_runs(Json::array(), workers).runs, 0);
  EXPECT_EQ(runs_per_job(2, 4, 16, {3, 1, 1}), 8);
  EXPECT_EQ(runs_per_job(1, 0, 4, {3, 0, 2}), 2);
}

}  // namespace
}  // namespace assay::slurm

namespace assay::worker {
namespace {

GpuInfo gpu(int i) {
  GpuInfo g;
  g.index = i;
  g.uuid = "GPU-" + std::to_string(i);
  return g;
}

TEST(WorkerSlurmEnv, IdFromTheJobAndNode) {
  EXPECT_EQ(slurm_worker_id({}), "");
  EXPECT_EQ(slurm_worker_id({{"SLURM_JOB_ID", "77"}, {"SLURMD_NODENAME", "n3"},
                             {"SLURM_PROCID", "2"}}),
            "slurm-77-n3-2");
  EXPECT_EQ(expand_worker_dir("/w/{id}/x", "slurm-1-n-0"), "/w/slurm-1-n-0/x");
  EXPECT_EQ(expand_worker_dir("/w", "a"), "/w");
}

TEST(WorkerSlurmEnv, NeverMoreGpusThanTheAllocation) {
  const std::vector<GpuInfo> node = {gpu(0), gpu(1), gpu(2), gpu(3)};
  std::string note;
  auto g = slurm_allocated_gpus(node, {{"SLURM_JOB_ID", "1"}, {"SLURM_JOB_GPUS", "1,3"}}, &note);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].index, 1);
  EXPECT_EQ(g[1].index, 3);
  EXPECT_NE(note.find("SLURM_JOB_GPUS=1,3"), std::string::npos);
  // The step's GPUs win over the job's.
  g = slurm_allocated_gpus(node, {{"SLURM_STEP_GPUS", "2"}, {"SLURM_JOB_GPUS", "1,2"}}, &note);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].index, 2);
  // UUIDs in CUDA_VISIBLE_DEVICES.
  g = slurm_allocated_gpus(node, {{"CUDA_VISIBLE_DEVICES", "GPU-0"}}, &note);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].index, 0);
  // A job without GPUs gets none, whatever NVML sees.
  EXPECT_TRUE(slurm_allocated_gpus(node, {{"SLURM_JOB_ID", "1"}}, &note).empty());
  EXPECT_TRUE(slurm_allocated_gpus(node, {{"CUDA_VISIBLE_DEVICES", ""}}, &note).empty());
  // Device cgroups renumber: NVML sees exactly the allocated two as 0 and 1.
  g = slurm_allocated_gpus({gpu(0), gpu(1)}, {{"SLURM_JOB_GPUS", "2,3"}}, &note);
  EXPECT_EQ(g.size(), 2u);
  // More allocated names than devices never invents any.
  g = slurm_allocated_gpus({gpu(0)}, {{"SLURM_JOB_GPUS", "0,1,2"}}, &note);
  EXPECT_EQ(g.size(), 1u);
}

TEST(WorkerSlurmEnv, CpusFromTheJob) {
  EXPECT_EQ(slurm_allocated_cpus({}), -1);
  EXPECT_EQ(slurm_allocated_cpus({{"SLURM_CPUS_PER_TASK", "4"}, {"SLURM_CPUS_ON_NODE", "8"}}), 4);
  EXPECT_EQ(slurm_allocated_cpus({{"SLURM_CPUS_ON_NODE", "8(x2)"}}), 8);
}

}  // namespace
}  // namespace assay::worker
