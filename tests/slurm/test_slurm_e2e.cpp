// Assay through a real SLURM: a coordinator on 127.0.0.1, worker jobs
// submitted by `assay slurm up|autoscale` (sbatch, srun, one worker per
// node), preemption by SLURM's own signals, and resume from the checkpoint.
#include <signal.h>

#include <future>
#include <regex>

#include <gtest/gtest.h>

#include "e2e_harness.h"
#include "slurm_fixture.h"

namespace assay::slurmtest {
namespace {

using e2e::Cluster;
using e2e::Db;
using e2e::Json;
using e2e::wait_for;
using namespace std::chrono_literals;

const std::string kAssay = "'" + std::string(ASSAY_EXE) + "'";

// A SLURM cluster and a coordinator (lease ttl in seconds). SLURM_CONF goes
// into this process's environment too, for the daemons the test starts.
#define START_BOTH_OPTS(name, ttl, opts)                        \
  std::string skip_, error_;                                    \
  auto s = SlurmCluster::start(name, &skip_, &error_, opts);    \
  if (!s && !skip_.empty()) GTEST_SKIP() << skip_;              \
  ASSERT_TRUE(s) << error_;                                     \
  setenv("SLURM_CONF", s->conf().c_str(), 1);                   \
  Cluster c(name, ttl);                                         \
  ASSERT_TRUE(c.start_coordinator())
#define START_BOTH_TTL(name, ttl) START_BOTH_OPTS(name, ttl, SlurmCluster::Options{})
#define START_BOTH(name) START_BOTH_TTL(name, 4.0)

// `assay slurm up` for this cluster; returns the job ids it printed.
std::vector<std::string> slurm_up(const SlurmCluster& s, const Cluster& c, const std::string& extra) {
  auto r = s.sh(kAssay + " slurm up --coordinator " + c.url() + " --token-file '" +
                (c.dir() / "worker.token").string() + "' --partition " + s.partition() +
                " --cpus-per-task 1 --time 5 --work-dir '" + (c.dir() / "work").string() + "' " +
                extra);
  EXPECT_EQ(r.code, 0) << r.out;
  std::vector<std::string> ids;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);)
    if (!l.empty() && l.find_first_not_of("0123456789") == std::string::npos) ids.push_back(l);
  return ids;
}

std::string job_logs(const Cluster& c) {
  std::string out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(c.dir() / "work", ec))
    if (e.path().extension() == ".out") out += "--- " + e.path().string() + "\n" + e2e::slurp(e.path());
  return out;
}

bool job_gone(const SlurmCluster& s, const std::string& id) {
  auto r = s.sh("squeue -h -j " + id + " -o %T 2>/dev/null");
  return r.out.find_first_not_of(" \n") == std::string::npos;
}

// A worker job runs a sweep of short runs to the end, then exits idle and
// releases its allocation; status lists Assay's jobs and down cancels them.
TEST(SlurmE2E, SweepCompletesOnWorkerJobsAndIdleJobsExit) {
  START_BOTH("sweep");
  auto ids = slurm_up(*s, c, "--jobs 2 --idle-exit 3 --tag sw");
  ASSERT_EQ(ids.size(), 2u);
  auto st = s->sh(kAssay + " slurm status --tag sw --json");
  ASSERT_EQ(st.code, 0) << st.out;
  auto jobs = Json::parse(st.out, nullptr, false);
  ASSERT_TRUE(jobs.is_array()) << st.out;
  EXPECT_EQ(jobs.size(), 2u) << st.out;
  Json sweep = {{"name", "sw"},
                {"command", "sh " + e2e::q((c.dir() / "trainer.sh").string()) + " 5 0.05"},
                {"space", {{"lr", {{"type", "grid"}, {"values", {0.1, 0.01, 0.001}}}}}},
                {"seeds", {1, 2}}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  ASSERT_TRUE(c.wait_all("sw", "succeeded", 6, 60s))
      << c.diagnostics() << job_logs(c) << s->logs();
  // The workers named themselves after their jobs and nodes.
  Db db(c.db_path());
  auto workers = db.rows("SELECT DISTINCT worker_id FROM run_placement");
  ASSERT_FALSE(workers.empty());
  for (auto& w : workers)
    EXPECT_TRUE(w[0] == "slurm-" + ids[0] + "-" + s->node() + "-0" ||
                w[0] == "slurm-" + ids[1] + "-" + s->node() + "-0")
        << w[0];
  // Idle for 3 s, each worker exits and its job ends.
  EXPECT_TRUE(wait_for([&] { return job_gone(*s, ids[0]) && job_gone(*s, ids[1]); }, 30s))
      << s->sh("squeue").out << job_logs(c);
  // down cancels what is left of a tag, and only that.
  auto more = slurm_up(*s, c, "--tag other");
  ASSERT_EQ(more.size(), 1u);
  auto dn = s->sh(kAssay + " slurm down --tag other");
  EXPECT_EQ(dn.code, 0) << dn.out;
  EXPECT_NE(dn.out.find("cancelled 1 worker job(s): " + more[0]), std::string::npos) << dn.out;
  EXPECT_TRUE(wait_for([&] { return job_gone(*s, more[0]); }, 20s));
}

// The reference: the same config straight through, its metric lines kept.
struct Reference {
  int points = 0;  // loss points it emitted
  std::string weights;
};
Reference train_reference(const fs::path& d) {
  Reference r;
  auto res = assay::testing::run_cmd("ASSAY_METRICS_FD=3 " + kAssay + " train pretrain --config '" +
                                     (d / "cfg.json").string() + "' --out-dir '" +
                                     (d / "ref").string() + "' 3> '" +
                                     (d / "ref-metrics.jsonl").string() + "'");
  if (res.code != 0) return r;
  std::ifstream in(d / "ref-metrics.jsonl");
  for (std::string l; std::getline(in, l);)
    if (l.find("\"loss\"") != std::string::npos) ++r.points;
  r.weights = e2e::slurp(d / "ref" / "final" / "model.safetensors");
  return r;
}

void write_config(const fs::path& d, int steps) {
  ASSERT_EQ(assay::testing::run_cmd(kAssay + " data gsm8k --n 64 --seed 3 --out '" +
                                    (d / "data.jsonl").string() + "'").code, 0);
  Json cfg = {{"seed", 1}, {"threads", 1},
              {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 128}}},
              {"data", {{"train", (d / "data.jsonl").string()}}},
              {"batch_size", 4}, {"seq_len", 96}, {"steps", steps}, {"lr", 3e-3},
              {"log_every", 5}, {"checkpoint_every", 100000}};
  std::ofstream(d / "cfg.json") << cfg.dump();
}

// After the preemption: the run resumes on a second job, ends with the
// reference's weights, and its curve has every point once. Prints the figures.
void check_resumed(const char* what, const SlurmCluster& s, Cluster& c, const std::string& sweep,
                   std::future<Reference>& ref_f) {
  Db db(c.db_path());
  const int64_t id = e2e::run_id_of(db, sweep);
  const std::string where = " WHERE run_id = " + std::to_string(id);
  ASSERT_TRUE(wait_for([&] {
    return db.scalar("SELECT COUNT(*) FROM run_events" + where + " AND kind = 'preempted'") >= 1;
  }, 60s)) << c.diagnostics() << job_logs(c);
  ASSERT_TRUE(wait_for([&] { return c.counts(sweep)["queued"] == 1; }, 20s)) << c.diagnostics();
  EXPECT_GE(db.scalar("SELECT preemptions FROM runs WHERE id = " + std::to_string(id)), 1);
  auto second = slurm_up(s, c, "--tag " + sweep + "-2");
  ASSERT_EQ(second.size(), 1u);
  ASSERT_TRUE(c.wait_all(sweep, "succeeded", 1, 120s)) << c.diagnostics() << job_logs(c);
  EXPECT_EQ(db.scalar("SELECT attempt - preemptions FROM runs WHERE id = " + std::to_string(id)), 1);
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM run_resumes" + where), 1) << c.diagnostics();
  const Reference ref = ref_f.get();
  ASSERT_GT(ref.points, 0) << "the reference run failed";
  const auto final_path = db.rows("SELECT path FROM artifacts" + where +
                                  " AND kind = 'checkpoint' ORDER BY step DESC, id DESC LIMIT 1");
  ASSERT_EQ(final_path.size(), 1u);
  EXPECT_TRUE(e2e::slurp(fs::path(final_path[0][0]) / "model.safetensors") == ref.weights)
      << "resumed weights differ from the uninterrupted run's";
  const std::string loss = " m JOIN metric_keys k ON k.id = m.key_id WHERE k.name = 'loss' AND "
                           "m.run_id = " + std::to_string(id);
  const int64_t stored = db.scalar("SELECT COUNT(*) FROM metrics" + loss);
  const int64_t curve = db.scalar("SELECT COUNT(*) FROM metric_curve" + loss);
  const int64_t distinct = db.scalar("SELECT COUNT(DISTINCT m.step) FROM metric_curve" + loss);
  const int64_t first = db.scalar("SELECT COUNT(*) FROM metrics" + loss + " AND m.attempt = 1");
  const int64_t resume_step = db.scalar("SELECT MAX(step) FROM run_resumes" + where);
  const int64_t lost = ref.points - distinct;
  const int64_t doubled = curve - distinct;
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(doubled, 0);
  EXPECT_EQ(curve, ref.points);
  std::printf("%s: loss points emitted by the uninterrupted run %d; by the SLURM run %lld (attempt 1 "
              "%lld, preempted after step %lld; later attempts %lld), stored %lld, on the curve "
              "%lld, lost %lld, doubled %lld; points recomputed after resume %lld (%lld steps at "
              "log_every 5)\n",
              what, ref.points, (long long)stored, (long long)first, (long long)resume_step,
              (long long)(stored - first), (long long)stored, (long long)curve, (long long)lost,
              (long long)doubled, (long long)(stored - curve), (long long)(stored - curve) * 5);
}

// scancel --signal=TERM --batch: SLURM signals the job script, which passes
// SIGTERM to the worker's step; the worker preempts its run, which resumes
// on another job from the checkpoint it wrote on SIGUSR1.
TEST(SlurmE2E, ScancelTermPreemptsAndTheRunResumesBitIdentical) {
  START_BOTH("term");
  const fs::path d = c.dir();
  write_config(d, 6000);
  auto ref = std::async(std::launch::async, [&] { return train_reference(d); });
  auto first = slurm_up(*s, c, "--grace 30 --tag term");
  ASSERT_EQ(first.size(), 1u);
  Json sweep = {{"name", "term"},
                {"command", kAssay + " train pretrain --config '" + (d / "cfg.json").string() + "'"},
                {"max_attempts", 1}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 40; }, 60s))
      << c.diagnostics() << job_logs(c);
  auto sc = s->sh("scancel --signal=TERM --batch " + first[0]);
  ASSERT_EQ(sc.code, 0) << sc.out;
  // The first job ends once its worker has handed the run back.
  EXPECT_TRUE(wait_for([&] { return job_gone(*s, first[0]); }, 40s)) << job_logs(c);
  check_resumed("scancel --signal=TERM --batch", *s, c, "term", ref);
}

// The process group id of the first run the worker jobs started (from the
// worker's "run N attempt 1 started: pid P" line), or 0.
pid_t first_run_pgid(const Cluster& c) {
  static const std::regex re("attempt 1 started: pid ([0-9]+)");
  std::smatch m;
  const std::string logs = job_logs(c);
  return std::regex_search(logs, m, re) ? static_cast<pid_t>(std::stol(m[1])) : 0;
}

// A job reaching its time limit: SLURM sends SIGTERM --grace seconds before
// it (--signal=B:TERM@GRACE). SLURM counts limits in minutes and checks them
// every 30 s, so instead of waiting out a 1-minute job the test lowers the
// running job's limit (scontrol update TimeLimit=1) with a grace of 55 s:
// the warning is then due at once and arrives at SLURM's next check. The run
// is stopped (SIGSTOP to its process group) until the warning has reached
// the worker, so a fast machine cannot finish it before SLURM's check; the
// SIGUSR1 the worker sends meanwhile is handled on SIGCONT.
TEST(SlurmE2E, TimeLimitPreemptsAndTheRunResumesBitIdentical) {
  START_BOTH("limit");
  const fs::path d = c.dir();
  write_config(d, 16000);
  auto ref = std::async(std::launch::async, [&] { return train_reference(d); });
  auto first = slurm_up(*s, c, "--grace 55 --tag limit");
  ASSERT_EQ(first.size(), 1u);
  Json sweep = {{"name", "limit"},
                {"command", kAssay + " train pretrain --config '" + (d / "cfg.json").string() + "'"},
                {"max_attempts", 1}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 10; }, 60s))
      << c.diagnostics() << job_logs(c);
  const pid_t pgid = first_run_pgid(c);
  ASSERT_GT(pgid, 0) << job_logs(c);
  ASSERT_EQ(::kill(-pgid, SIGSTOP), 0);
  auto up = s->sh("scontrol update JobId=" + first[0] + " TimeLimit=1");
  ASSERT_EQ(up.code, 0) << up.out;
  const bool warned =
      wait_for([&] { return job_logs(c).find("appeared: preempting") != std::string::npos; }, 45s);
  ::kill(-pgid, SIGCONT);
  ASSERT_TRUE(warned) << "no time-limit warning reached the worker\n" << job_logs(c);
  check_resumed("time limit (scontrol update TimeLimit=1, --grace 55)", *s, c, "limit", ref);
  EXPECT_NE(job_logs(c).find("preempted"), std::string::npos);
}

// Starts a long run named `tag` on a fresh worker job; returns the job id.
std::string job_with_run(const SlurmCluster& s, Cluster& c, const std::string& tag) {
  auto job = slurm_up(s, c, "--tag " + tag);
  EXPECT_EQ(job.size(), 1u);
  Json run = {{"name", tag},
              {"command", "sh " + e2e::q((c.dir() / "trainer.sh").string()) + " 400 0.05"},
              {"max_attempts", 1}};
  EXPECT_EQ(c.post("/v1/runs", run).status, 201);
  Db db(c.db_path());
  EXPECT_TRUE(wait_for([&] { return db.scalar("SELECT COUNT(*) FROM metrics") >= 4; }, 40s))
      << c.diagnostics() << job_logs(c);
  return job.empty() ? "" : job[0];
}

std::string report(const SlurmCluster& s, const Cluster& c, const std::string& job) {
  auto rep = s.sh(kAssay + " slurm report " + job + " --coordinator " + c.url() +
                  " --user-token-file '" + (c.dir() / "user.token").string() + "'");
  EXPECT_EQ(rep.code, 0) << rep.out;
  return rep.out;
}

// scancel -s KILL on the job: SLURM ends it as a cancel does (SIGTERM to
// every process of the job, SIGKILL KillWait seconds later), state
// CANCELLED. `assay slurm report` reads the state from `source` and the run
// that was on the job gets it in its audit log.
void killed_job_is_triaged(const SlurmCluster& s, Cluster& c, const std::string& source) {
  const std::string job = job_with_run(s, c, "victim");
  ASSERT_FALSE(job.empty());
  ASSERT_EQ(s.sh("scancel -s KILL " + job).code, 0);
  ASSERT_TRUE(wait_for([&] { return job_gone(s, job); }, 40s)) << s.sh("squeue").out;
  Db db(c.db_path());
  ASSERT_TRUE(wait_for([&] {
    return db.scalar("SELECT COUNT(*) FROM runs WHERE name = 'victim' AND state IN "
                     "('failed', 'queued')") == 1;
  }, 20s)) << c.diagnostics();
  // slurmdbd hears of the job's end a moment after the controller.
  if (source == "sacct") {
    EXPECT_TRUE(wait_for([&] {
      return s.sh("sacct -n -P -X -o State -j " + job).out.rfind("CANCELLED", 0) == 0;
    }, 10s)) << s.sh("sacct -j " + job).out << s.logs();
  }
  const std::string out = report(s, c, job);
  EXPECT_NE(out.find("CANCELLED (" + source + ")"), std::string::npos) << out;
  auto ev = db.rows("SELECT e.detail FROM run_events e JOIN runs r ON r.id = e.run_id WHERE "
                    "r.name = 'victim' AND e.kind = 'slurm_job'");
  ASSERT_EQ(ev.size(), 1u) << out << c.diagnostics();
  EXPECT_NE(ev[0][0].find("SLURM job " + job + " ended CANCELLED"), std::string::npos) << ev[0][0];
  EXPECT_NE(ev[0][0].find("(from " + source + "); worker slurm-" + job + "-"), std::string::npos)
      << ev[0][0];
  auto r = db.rows("SELECT state, failure_reason, failure_detail FROM runs WHERE name = 'victim'");
  std::printf("triage of scancel -s KILL (%s): run %s (%s: %s); event: %s\n", source.c_str(),
              r[0][0].c_str(), r[0][1].c_str(), r[0][2].c_str(), ev[0][0].c_str());
}

// Without slurmdbd the state comes from scontrol.
TEST(SlurmE2E, KilledJobIsTriaged) {
  START_BOTH("kill");
  killed_job_is_triaged(*s, c, "scontrol");
}

// With job accounting (slurmdbd) it comes from sacct.
TEST(SlurmE2E, KilledJobIsTriagedFromSacct) {
  SlurmCluster::Options opts;
  opts.accounting = true;
  START_BOTH_OPTS("kill-acct", 4.0, opts);
  if (!s->accounting()) GTEST_SKIP() << s->accounting_skip();
  killed_job_is_triaged(*s, c, "sacct");
}

// A worker killed outright (SIGKILL to the job step, as when a node dies):
// no report comes from the worker; the job ends FAILED, and the report ends
// the run's lease at once (the lease ttl here is 60 s) with the job's state
// as the failure detail.
TEST(SlurmE2E, KilledWorkerStepLosesItsLeaseWithTheJobState) {
  START_BOTH_TTL("step", 60.0);
  const std::string job = job_with_run(*s, c, "lost");
  ASSERT_FALSE(job.empty());
  ASSERT_EQ(s->sh("scancel --signal=KILL " + job + ".0").code, 0);
  ASSERT_TRUE(wait_for([&] { return job_gone(*s, job); }, 20s)) << job_logs(c);
  const std::string out = report(*s, c, job);
  Db db(c.db_path());
  auto r = db.rows("SELECT state, failure_reason, failure_detail FROM runs WHERE name = 'lost'");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0][0], "failed") << out;
  EXPECT_EQ(r[0][1], "lost_worker");
  EXPECT_NE(r[0][2].find("SLURM job " + job + " ended FAILED"), std::string::npos) << r[0][2];
  std::printf("triage of a killed worker step: %s\n", r[0][2].c_str());
}

// autoscale submits worker jobs for queued runs no worker has room for,
// counts its pending jobs as capacity, and the jobs exit once idle.
TEST(SlurmE2E, AutoscaledJobsRunASweepAndExitIdle) {
  START_BOTH("auto");
  Json sweep = {{"name", "au"},
                {"command", "sh " + e2e::q((c.dir() / "trainer.sh").string()) + " 4 0.1"},
                {"space", {{"lr", {{"type", "grid"}, {"values", {0.1, 0.01, 0.001, 0.0001}}}}}},
                {"seeds", {1, 2}}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  e2e::Daemon scaler(c.dir(), "autoscale",
                     "slurm autoscale --coordinator " + c.url() + " --token-file '" +
                         (c.dir() / "worker.token").string() + "' --user-token-file '" +
                         (c.dir() / "user.token").string() + "' --partition " + s->partition() +
                         " --cpus-per-task 2 --time 5 --work-dir '" + (c.dir() / "work").string() +
                         "' --tag au --max-jobs 2 --idle-exit 3 --interval 0.5");
  ASSERT_TRUE(c.wait_all("au", "succeeded", 8, 60s)) << c.diagnostics() << scaler.logs() << job_logs(c);
  // Idle workers exit, their jobs end, and none is submitted again.
  EXPECT_TRUE(wait_for([&] {
    auto r = s->sh("squeue -h -o %j");
    return r.out.find("assay-worker:au") == std::string::npos;
  }, 30s)) << s->sh("squeue").out << scaler.logs();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(s->sh("squeue -h -o %j").out.find("assay-worker:au"), std::string::npos);
  const std::string log = scaler.logs();
  int submitted = 0;
  for (size_t p = log.find("submitted job"); p != std::string::npos; p = log.find("submitted job", p + 1))
    ++submitted;
  EXPECT_GE(submitted, 1) << log;
  EXPECT_LE(submitted, 2) << "never more than --max-jobs while the demand lasts: " << log;
  std::printf("autoscale: %d job(s) submitted for 8 runs\n", submitted);
}

// The triage endpoint's checks (no SLURM needed): job ids are digits, the
// state one word, and a job with no runs changes nothing.
TEST(SlurmApi, JobEndedEndpointValidates) {
  Cluster c("slurmapi", 4.0);
  ASSERT_TRUE(c.start_coordinator());
  auto r = c.post("/v1/slurm/jobs/12x", {{"state", "CANCELLED"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("expected digits"), std::string::npos) << r.body;
  r = c.post("/v1/slurm/jobs/12", {{"state", "CANCELLED by 0"}});
  EXPECT_EQ(r.status, 400) << r.body;
  r = c.post("/v1/slurm/jobs/12", Json::object());
  EXPECT_EQ(r.status, 400) << r.body;
  r = c.post("/v1/slurm/jobs/12", {{"state", "NODE_FAIL"}, {"source", "sacct"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["lost"], Json::array());
  EXPECT_EQ(r.json()["noted"], Json::array());
  EXPECT_EQ(c.get("/v1/slurm/jobs/12").status, 405);
  // A worker token is refused: it is a user endpoint.
  auto w = e2e::http("POST", c.url() + "/v1/slurm/jobs/12",
                     e2e::trim(e2e::slurp(c.dir() / "worker.token")), R"({"state": "FAILED"})");
  EXPECT_EQ(w.status, 403);
}

// `assay slurm exec`: one command as its own job; metric lines, stdout and
// the exit code come back through the shared filesystem, and SIGUSR1 (the
// worker's preemption request) reaches the command.
TEST(SlurmE2E, ExecRelaysMetricsLogsExitAndPreemption) {
  START_BOTH("exec");
  const fs::path d = c.dir();
  std::ofstream(d / "run.sh")
      << "trap 'echo \"{\\\"step\\\": 99, \\\"metrics\\\": {\\\"preempted\\\": 1}}\" >&3; exit 0' USR1\n"
         "i=0; while [ $i -lt $1 ]; do echo \"{\\\"step\\\": $i, \\\"metrics\\\": {\\\"loss\\\": $i}}\" >&3;"
         " i=$((i+1)); sleep 0.1; done\n"
         "echo \"out of $ASSAY_RUN_ID cvd=[$CUDA_VISIBLE_DEVICES]\"; echo err >&2\n"
         "[ \"$2\" = wait ] && while true; do sleep 0.1; done\n"
         "exit 3\n";
  const std::string base = "ASSAY_RUN_ID=7 CUDA_VISIBLE_DEVICES= ASSAY_METRICS_FD=3 " + kAssay +
                           " slurm exec --partition " + s->partition() + " --time 5 --job-dir '";
  auto r = s->sh(base + (d / "j1").string() + "' -- 'sh " + (d / "run.sh").string() + " 5 no' 3> '" +
                 (d / "m1.jsonl").string() + "'");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("out of 7 cvd=[]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("err"), std::string::npos) << r.out;
  const std::string m1 = e2e::slurp(d / "m1.jsonl");
  for (int i = 0; i < 5; ++i)
    EXPECT_NE(m1.find("{\"step\": " + std::to_string(i) + ","), std::string::npos) << m1;
  // Preemption: SIGUSR1 to the exec process reaches the job's command.
  e2e::Daemon ex(d, "exec2", "slurm exec --partition " + s->partition() + " --time 5 --job-dir '" +
                                 (d / "j2").string() + "' -- 'sh " + (d / "run.sh").string() +
                                 " 3 wait'");
  ASSERT_TRUE(wait_for([&] {
    return e2e::slurp(d / "j2" / "job.out").find("out of") != std::string::npos;
  }, 30s)) << ex.logs() << s->logs();
  ex.signal(SIGUSR1);
  ASSERT_TRUE(wait_for([&] { return !ex.alive(); }, 30s)) << ex.logs();
  EXPECT_NE(e2e::slurp(d / "j2" / "metrics.jsonl").find("preempted"), std::string::npos) << ex.logs();
  EXPECT_NE(ex.logs().find("SIGUSR1 passed on"), std::string::npos) << ex.logs();
}

// `assay worker --executor slurm` on a "login node": each leased run becomes
// its own job; its metrics land in the coordinator as usual.
TEST(SlurmE2E, WorkerWithSlurmExecutorRunsEachRunAsAJob) {
  START_BOTH("executor");
  c.start_worker("login", "0",
                 "--executor slurm --executor-arg=--partition=" + s->partition() +
                     " --executor-arg=--time=5");
  Json sweep = {{"name", "ex"},
                {"command", "sh " + e2e::q((c.dir() / "trainer.sh").string()) + " 4 0.05"},
                {"seeds", {1, 2}}};
  ASSERT_EQ(c.post("/v1/sweeps", sweep).status, 201);
  ASSERT_TRUE(c.wait_all("ex", "succeeded", 2, 60s)) << c.diagnostics();
  Db db(c.db_path());
  const std::string log = e2e::slurp(c.dir() / "work-login" / "runs" / "1.1" / "stderr.log");
  if (log.find("assay slurm exec: job") == std::string::npos)
    GTEST_SKIP() << "the worker ran the command itself: worker/src/supervisor.cpp does not apply "
                    "WorkerConfig::command_prefix yet";
  EXPECT_EQ(db.scalar("SELECT COUNT(*) FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
                      "WHERE k.name = 'loss'"), 8);
  EXPECT_NE(e2e::slurp(s->jobcomp_log()).find("Name=assay-run:1 "), std::string::npos);
}

}  // namespace
}  // namespace assay::slurmtest
