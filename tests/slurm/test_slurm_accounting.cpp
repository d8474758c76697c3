// Job accounting on the real cluster: the fixture's private MariaDB and
// slurmdbd, and the triage of ended jobs from `sacct` (job_record), as on a
// production cluster with slurmdbd. Without mariadbd or slurmdbd the tests
// skip and say why.
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

#include "assay/slurm.h"
#include "slurm_fixture.h"

namespace assay::slurmtest {
namespace {

using namespace std::chrono_literals;

template <typename Pred>
bool wait_for(Pred pred, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(200ms);
  return pred();
}

// sbatch with the job's output in the cluster's dir; returns the job id.
std::string submit(const SlurmCluster& c, const std::string& args) {
  auto r = c.sh("sbatch --parsable --output='" + (c.dir() / "job-%j.out").string() + "' " + args);
  EXPECT_EQ(r.code, 0) << r.out << c.logs();
  return r.out.substr(0, r.out.find_first_of(";\n"));
}

std::string queue_state(const SlurmCluster& c, const std::string& id) {
  auto r = c.sh("squeue -h -j " + id + " -o %T 2>/dev/null");
  return r.out.substr(0, r.out.find('\n'));
}

std::string first_word(const std::string& s) { return s.substr(0, s.find(' ')); }

// The job's State in sacct ("" before slurmdbd has it; "CANCELLED by 0").
std::string sacct_state(const SlurmCluster& c, const std::string& id) {
  auto r = c.sh("sacct -n -P -X -o State -j " + id);
  return r.code == 0 ? r.out.substr(0, r.out.find('\n')) : "";
}

// Once sacct has job `id` in `state`, job_record answers from sacct with it.
void expect_from_sacct(const SlurmCluster& c, const std::string& id, const std::string& state,
                       const std::string& exit_code) {
  ASSERT_TRUE(wait_for([&] { return first_word(sacct_state(c, id)) == state; }, 10s))
      << "job " << id << ": sacct says '" << sacct_state(c, id) << "', expected " << state << "\n"
      << c.logs();
  std::string source;
  auto rec = slurm::job_record(id, &source);
  ASSERT_TRUE(rec.ok()) << rec.status().message();
  EXPECT_EQ(source, "sacct");
  EXPECT_EQ(rec->id, id);
  EXPECT_EQ(rec->state, state);
  EXPECT_EQ(rec->exit_code, exit_code);
  EXPECT_EQ(rec->node_list, c.node());
}

// slurmdbd down while job `id` ends, then back: sacct says RUNNING until
// slurmctld reconnects and sends what it kept (10-20 s here). The lookup
// gives the end the controller knows.
void expect_end_while_slurmdbd_behind(SlurmCluster& c, const std::string& id) {
  ASSERT_TRUE(wait_for([&] { return sacct_state(c, id) == "RUNNING"; }, 10s))
      << sacct_state(c, id) << c.logs();
  std::string err;
  ASSERT_TRUE(c.stop_slurmdbd(&err)) << err;
  ASSERT_EQ(c.sh("scancel -s KILL " + id).code, 0);
  ASSERT_TRUE(wait_for([&] { return queue_state(c, id).empty(); }, 20s)) << c.sh("squeue").out;
  ASSERT_TRUE(c.start_slurmdbd(&err)) << err;
  const std::string stale = sacct_state(c, id);
  std::string source;
  auto rec = slurm::job_record(id, &source);
  ASSERT_TRUE(rec.ok()) << rec.status().message();
  EXPECT_EQ(rec->state, "CANCELLED") << "from " << source << "; sacct said '" << stale << "'";
  EXPECT_EQ(stale, "RUNNING") << "sacct was not behind: this part tested nothing";
  std::printf("job_record while slurmdbd is behind: %s from %s (sacct said '%s')\n",
              rec->state.c_str(), source.c_str(), stale.c_str());
}

// Jobs killed with `scancel -s KILL`, failed, and past their time limit are
// triaged from sacct: job_record's first source, with the state SLURM
// recorded. The time limit: SLURM counts limits in minutes, so the running
// job's end time is moved to now (scontrol update EndTime); it times out at
// the controller's next limit check (every 30 s from its start) while the
// rest runs.
TEST(SlurmAccounting, KilledFailedAndTimedOutJobsAreTriagedFromSacct) {
  std::string skip, error;
  SlurmCluster::Options opts;
  opts.accounting = true;
  auto c = SlurmCluster::start("triage", &skip, &error, opts);
  if (!c && !skip.empty()) GTEST_SKIP() << skip;
  ASSERT_TRUE(c) << error;
  if (!c->accounting()) GTEST_SKIP() << c->accounting_skip();
  std::printf("cluster with accounting started in %.1f s\n", c->startup_s());
  setenv("SLURM_CONF", c->conf().c_str(), 1);
  const std::string limit = submit(*c, "--job-name=limit --time=5 --wrap 'sleep 300'");
  const std::string victim = submit(*c, "--job-name=victim --wrap 'sleep 300'");
  const std::string failed = submit(*c, "--job-name=fails --wrap 'sleep 1; exit 3'");
  const std::string behind = submit(*c, "--job-name=behind --wrap 'sleep 300'");
  ASSERT_TRUE(wait_for([&] {
    return queue_state(*c, limit) == "RUNNING" && queue_state(*c, victim) == "RUNNING" &&
           queue_state(*c, behind) == "RUNNING";
  }, 20s)) << c->sh("squeue").out << c->logs();
  auto up = c->sh("scontrol update JobId=" + limit + " EndTime=now+1");
  ASSERT_EQ(up.code, 0) << up.out;
  ASSERT_EQ(c->sh("scancel -s KILL " + victim).code, 0);
  ASSERT_TRUE(wait_for([&] { return queue_state(*c, victim).empty(); }, 20s))
      << c->sh("squeue").out;

  // At once: slurmdbd may not have the job's end yet (slurmctld sends it a
  // moment later); the lookup still gives the state it ended in.
  std::string source;
  const std::string early = sacct_state(*c, victim);
  auto rec = slurm::job_record(victim, &source);
  ASSERT_TRUE(rec.ok()) << rec.status().message();
  EXPECT_EQ(rec->state, "CANCELLED") << "from " << source << "; sacct said '" << early << "'";
  std::printf("job_record right after the job left squeue: %s from %s (sacct said '%s')\n",
              rec->state.c_str(), source.c_str(), early.c_str());
  // sacct writes 0:0 for a job killed by scancel -s KILL (scontrol: 0:9).
  expect_from_sacct(*c, victim, "CANCELLED", "0:0");
  expect_from_sacct(*c, failed, "FAILED", "3:0");

  expect_end_while_slurmdbd_behind(*c, behind);

  ASSERT_TRUE(wait_for([&] { return queue_state(*c, limit).empty(); }, 50s))
      << c->sh("squeue").out << c->logs();
  expect_from_sacct(*c, limit, "TIMEOUT", "0:0");
  std::printf("sacct -n -P -X -o %s:\n%s", slurm::kSacctFields,
              c->sh("sacct -n -P -X -j " + limit + "," + victim + "," + failed + "," + behind +
                    " -o " + slurm::kSacctFields).out.c_str());
}

}  // namespace
}  // namespace assay::slurmtest
