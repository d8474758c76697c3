// Group commit when the COMMIT itself fails (here: the file-size limit is hit
// while the WAL grows, as on a full disk): the batch is undone in the
// database, the in-memory state is rebuilt from it, and the coordinator goes
// on serving and committing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "handler_fixture.h"

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using test_util::kWorker;

class GroupCommit : public test_util::HandlerTest {
 protected:
  void configure(Options& o) override { o.max_body_bytes = 4 << 20; }
  Json sweep(const std::string& name, int n) {
    Json vals = Json::array();
    for (int i = 0; i < n; ++i) vals.push_back(i);
    return {{"name", name}, {"command", "echo {x}"},
            {"space", {{"x", {{"type", "grid"}, {"values", vals}}}}}};
  }
  uintmax_t db_bytes() {
    uintmax_t n = 0;
    for (const char* suffix : {"", "-wal"}) {
      std::error_code ec;
      auto s = fs::file_size(dir_ + "/results.db" + suffix, ec);
      if (!ec) n = std::max(n, s);
    }
    return n;
  }
};

// Caps the size of files this process may write, for the scope's lifetime.
struct FileSizeCap {
  explicit FileSizeCap(uintmax_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved);
    old_handler = signal(SIGXFSZ, SIG_IGN);  // over the cap: EFBIG, not a signal
    rlimit r = saved;
    r.rlim_cur = static_cast<rlim_t>(bytes);
    setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeCap() {
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
  }
  rlimit saved{};
  sighandler_t old_handler;
};

}  // namespace

TEST_F(GroupCommit, FailedCommitRollsBackTheBatchAndRebuildsStateFromTheDatabase) {
  coord_->set_group_commit(true);
  user("POST", "/v1/sweeps", sweep("kept", 1), 201);
  ASSERT_TRUE(coord_->commit().ok());

  // A batch big enough that its commit must grow the WAL past the cap.
  user("POST", "/v1/sweeps", sweep("lost", 400), 201);
  ASSERT_TRUE(coord_->commit_pending());
  assay::Status st;
  {
    FileSizeCap cap(db_bytes());
    st = coord_->commit();
  }
  ASSERT_FALSE(st.ok()) << "the commit was expected to hit the file-size cap";
  EXPECT_NE(st.message().find("commit failed; the batch was rolled back"), std::string::npos)
      << st.to_string();
  EXPECT_FALSE(coord_->commit_pending());

  // The database and the rebuilt state agree: only the committed sweep exists,
  // and only its run is handed out.
  Json sweeps = user("GET", "/v1/sweeps");
  ASSERT_EQ(sweeps["sweeps"].size(), 1u) << sweeps;
  EXPECT_EQ(sweeps["sweeps"][0]["name"], "kept");
  user("GET", "/v1/sweeps/lost", nullptr, 404);
  call("POST", "/v1/worker/register", {{"worker_id", "w1"}, {"instance", "i1"}, {"cpus", 64}},
       kWorker, 200);
  Json l = call("POST", "/v1/worker/lease", {{"worker_id", "w1"}, {"max_runs", 64}}, kWorker, 200);
  ASSERT_EQ(l["runs"].size(), 1u) << l.dump().substr(0, 300);
  EXPECT_EQ(l["runs"][0]["name"], "kept-0000");

  // And it goes on: a new batch commits, and a resubmission of the lost sweep is new.
  Json again = user("POST", "/v1/sweeps", sweep("lost", 2), 201);
  EXPECT_EQ(again["created"], true);
  ASSERT_TRUE(coord_->commit().ok());
  coord_->set_group_commit(false);
  open();  // a restart reads the same state back
  Json after = user("GET", "/v1/sweeps");
  EXPECT_EQ(after["sweeps"].size(), 2u) << after;
}
