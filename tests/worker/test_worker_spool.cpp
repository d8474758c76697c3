// The outbox spool: order, acknowledgement, reopen, torn and corrupt tails,
// and a writer killed with SIGKILL in the middle of its appends.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "assay/worker_spool.h"

namespace fs = std::filesystem;
using namespace assay::worker;
using namespace std::chrono_literals;

namespace {

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("assay-spool-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<Spool> open(SpoolOpenStats* st = nullptr) {
    auto s = Spool::open(dir_.string(), st);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::vector<fs::path> segments() {
    std::vector<fs::path> out;
    for (auto& e : fs::directory_iterator(dir_))
      if (e.path().filename().string().rfind("seg-", 0) == 0) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }
  fs::path dir_;
};

std::string payload_for(uint64_t seq, size_t size) {
  std::string p = "rec-" + std::to_string(seq) + ":";
  while (p.size() < size) p += static_cast<char>('a' + (seq + p.size()) % 26);
  return p;
}

TEST_F(SpoolTest, AppendAckReopenKeepsOrder) {
  {
    auto s = open();
    for (uint64_t i = 1; i <= 10; ++i) {
      auto seq = s->append(payload_for(i, 50));
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, i);
    }
    auto p = s->pending(3);
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0].seq, 1u);
    EXPECT_EQ(p[2].payload, payload_for(3, 50));
    ASSERT_TRUE(s->ack(4).ok());
    EXPECT_EQ(s->pending_count(), 6u);
  }
  SpoolOpenStats st;
  auto s = open(&st);
  EXPECT_EQ(st.pending, 6u);
  EXPECT_EQ(st.dropped_bytes, 0u);
  EXPECT_EQ(s->acked(), 4u);
  auto p = s->pending(100);
  ASSERT_EQ(p.size(), 6u);
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(p[i].seq, 5 + i);
    EXPECT_EQ(p[i].payload, payload_for(5 + i, 50));
  }
  auto next = s->append(std::vector<std::string>{"a", "b"});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 12u);
  ASSERT_TRUE(s->ack(12).ok());
  EXPECT_EQ(s->pending_count(), 0u);
  s.reset();
  EXPECT_EQ(open()->pending_count(), 0u);
}

TEST_F(SpoolTest, PendingRespectsByteBudget) {
  auto s = open();
  ASSERT_TRUE(s->append(std::vector<std::string>{payload_for(1, 1000), payload_for(2, 1000),
                                                 payload_for(3, 1000)})
                  .ok());
  EXPECT_EQ(s->pending(10, 1500).size(), 1u);
  EXPECT_EQ(s->pending(10, 2000).size(), 2u);
  EXPECT_EQ(s->pending(10, 10).size(), 1u) << "one record always fits";
}

TEST_F(SpoolTest, TornTailIsDroppedAndAppendsContinue) {
  {
    auto s = open();
    for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(s->append(payload_for(i, 100)).ok());
  }
  auto segs = segments();
  ASSERT_EQ(segs.size(), 1u);
  auto full = fs::file_size(segs[0]);
  {
    // Half a record: a header claiming 100 bytes, then only 10 of them.
    std::ofstream out(segs[0], std::ios::binary | std::ios::app);
    const char hdr[4] = {'A', 'S', 'P', '1'};
    out.write(hdr, 4);
    uint32_t len = 100, crc = 0;
    uint64_t seq = 6;
    out.write(reinterpret_cast<const char*>(&len), 4);
    out.write(reinterpret_cast<const char*>(&crc), 4);
    out.write(reinterpret_cast<const char*>(&seq), 8);
    out.write("0123456789", 10);
  }
  SpoolOpenStats st;
  auto s = open(&st);
  EXPECT_EQ(st.pending, 5u);
  EXPECT_EQ(st.dropped_bytes, 30u);
  EXPECT_EQ(fs::file_size(segs[0]), full) << "the torn bytes are cut off";
  auto seq = s->append(payload_for(6, 100));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 6u);
  s.reset();
  s = open(&st);
  EXPECT_EQ(st.dropped_bytes, 0u);
  auto p = s->pending(100);
  ASSERT_EQ(p.size(), 6u);
  EXPECT_EQ(p[5].payload, payload_for(6, 100));
}

TEST_F(SpoolTest, CorruptRecordCutsTheRestOff) {
  {
    auto s = open();
    for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(s->append(payload_for(i, 100)).ok());
  }
  auto seg = segments().at(0);
  {
    // Flip one payload byte of record 3 (each record: 20-byte header + 100).
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2 * 120 + 20 + 50);
    f.put('#');
  }
  SpoolOpenStats st;
  auto s = open(&st);
  auto p = s->pending(100);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[1].seq, 2u);
  EXPECT_EQ(st.dropped_bytes, 3u * 120);
}

TEST_F(SpoolTest, SegmentsRotateAndDeliveredOnesAreDeleted) {
  auto s = open();
  std::string big(1 << 20, 'x');
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(s->append(big).ok());  // 20 MiB: 3 segments
  EXPECT_GE(segments().size(), 3u);
  ASSERT_TRUE(s->ack(20).ok());
  EXPECT_EQ(segments().size(), 1u);
  s.reset();
  s = open();
  EXPECT_EQ(s->pending_count(), 0u);
  auto seq = s->append("after");
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 21u);
}

// A separate process appends as fast as it can and is killed with SIGKILL at
// a random moment, several times over the same spool. Whatever the moment,
// reopening yields records 1..N with intact payloads, and appends continue
// at N + 1.
TEST_F(SpoolTest, WriterKilledMidAppendLeavesAConsistentPrefix) {
  std::mt19937 rng(1234);
  uint64_t expected_min = 0;
  size_t torn_seen = 0;
  for (int trial = 0; trial < 8; ++trial) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = Spool::open(dir_.string());
      if (!s.ok()) _exit(2);
      uint64_t next = (*s)->pending_count() + 1;
      for (;; ++next) {
        // Sizes up to 2 MiB make a kill inside write() likely.
        size_t size = 16 + (next * 7919) % (2 << 20);
        if (!(*s)->append(payload_for(next, size)).ok()) _exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 80));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer failed on its own: " << status;
    SpoolOpenStats st;
    auto s = open(&st);
    ASSERT_TRUE(s);
    if (st.dropped_bytes) ++torn_seen;
    auto p = s->pending(1u << 30, size_t{1} << 40);
    ASSERT_GE(p.size(), expected_min);
    for (size_t i = 0; i < p.size(); ++i) {
      ASSERT_EQ(p[i].seq, i + 1);
      ASSERT_EQ(p[i].payload, payload_for(i + 1, 16 + ((i + 1) * 7919) % (2 << 20)))
          << "record " << i + 1;
    }
    expected_min = p.size();
  }
  RecordProperty("torn_tails_seen", static_cast<int>(torn_seen));
}

// A writer the kernel kills inside write(): RLIMIT_FSIZE lets the 4th record
// reach the disk only in part, then SIGXFSZ ends the process. Reopening keeps
// records 1..3 and cuts the torn 4th.
TEST_F(SpoolTest, WriterKilledInsideWriteLeavesATornRecordThatReplayDrops) {
  constexpr size_t kSize = 1000;  // each record: 20-byte header + payload
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = Spool::open(dir_.string());
    if (!s.ok()) _exit(2);
    rlimit lim{3 * (kSize + 20) + 500, RLIM_INFINITY};
    setrlimit(RLIMIT_FSIZE, &lim);
    for (uint64_t i = 1; i <= 10; ++i) (void)(*s)->append(payload_for(i, kSize));
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "expected death by SIGXFSZ, got status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  ASSERT_EQ(segments().size(), 1u);
  EXPECT_EQ(fs::file_size(segments()[0]), 3 * (kSize + 20) + 500) << "a torn 4th record";
  SpoolOpenStats st;
  auto s = open(&st);
  EXPECT_EQ(st.dropped_bytes, 500u);
  auto p = s->pending(100);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[2].payload, payload_for(3, kSize));
  auto seq = s->append(payload_for(4, kSize));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 4u);
}

TEST(Crc32, KnownValue) {
  EXPECT_EQ(crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(crc32(""), 0u);
}

}  // namespace

namespace {

// The acked file is two slots overwritten in place, alternately: a torn write
// spoils only the slot being written, and the other (one ack older) counts,
// so records are resent, never skipped. Acks create no file per ack.
TEST_F(SpoolTest, AckedSlotsSurviveATornWriteAndCreateNoFiles) {
  {
    auto s = open();
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(s->append(payload_for(i + 1, 20)).ok());
    ASSERT_TRUE(s->ack(2).ok());
    ASSERT_TRUE(s->ack(3).ok());  // slot 1 holds 3, slot 0 holds 2
    EXPECT_FALSE(fs::exists(dir_ / "acked.tmp"));
  }
  std::string text;
  {
    std::ifstream in(dir_ / "acked", std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_EQ(text.size(), 60u) << text;
  EXPECT_EQ(parse_acked_slots(text), std::optional<uint64_t>(3));
  // Tear the newer slot (as a crash mid-write would): the older one counts.
  text[30 + 5] = 'x';
  std::ofstream(dir_ / "acked", std::ios::binary | std::ios::trunc) << text;
  auto s = open();
  EXPECT_EQ(s->acked(), 2u);
  EXPECT_EQ(s->pending(100).size(), 4u);  // 3..6: record 3 is resent, none skipped
}

// A spool acknowledged by an older worker (one decimal number) reads as that
// number and is rewritten in the slot format.
TEST_F(SpoolTest, AnOlderWorkersAckedNumberIsRead) {
  {
    auto s = open();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->append(payload_for(i + 1, 20)).ok());
  }
  std::ofstream(dir_ / "acked", std::ios::trunc) << "3\n";
  {
    auto s = open();
    EXPECT_EQ(s->acked(), 3u);
    EXPECT_EQ(s->pending(100).size(), 2u);
  }
  std::ifstream in(dir_ / "acked", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(parse_acked_slots(text), std::optional<uint64_t>(3)) << text;
}

}  // namespace

// --durability normal: no fdatasync, yet every append that returned before
// the writer was killed with SIGKILL is there on reopen (it is in the page
// cache; only an OS crash or power loss could drop it). The child tells the
// parent each seq it appended through a pipe.
TEST_F(SpoolTest, NormalSyncKeepsEveryReturnedAppendAcrossSigkill) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(p[0]);
    auto s = Spool::open(dir_.string(), nullptr, SpoolSync::kNormal);
    if (!s.ok()) _exit(2);
    for (uint64_t next = 1;; ++next) {
      if (!(*s)->append(payload_for(next, 16 + (next * 7919) % 4096)).ok()) _exit(3);
      if (write(p[1], &next, sizeof next) != sizeof next) _exit(4);
    }
  }
  close(p[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  kill(pid, SIGKILL);
  uint64_t last = 0, v = 0;
  while (read(p[0], &v, sizeof v) == sizeof v) last = v;
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer failed on its own: " << status;
  ASSERT_GT(last, 100u) << "too few appends to mean anything";
  auto s = open();
  ASSERT_TRUE(s);
  auto recs = s->pending(1u << 30, size_t{1} << 40);
  ASSERT_GE(recs.size(), last);
  for (size_t i = 0; i < recs.size(); ++i) {
    ASSERT_EQ(recs[i].seq, i + 1);
    ASSERT_EQ(recs[i].payload, payload_for(i + 1, 16 + ((i + 1) * 7919) % 4096));
  }
  // Acks in normal mode are read back the same way.
  ASSERT_TRUE(s->ack(last).ok());
  s.reset();
  auto again = Spool::open(dir_.string(), nullptr, SpoolSync::kNormal);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->acked(), last);
}
