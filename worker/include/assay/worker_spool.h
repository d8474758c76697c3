// The worker's outbox: an append-only journal of messages for the
// coordinator, delivered strictly in order and acknowledged as they land.
//
// Durability (SpoolSync, `assay worker --durability`), as the coordinator's:
//   kNormal: an append is written to its segment before it returns, so it
//            survives the worker's death (kill -9, the OOM killer); an OS
//            crash or power loss of the node can drop the last appends.
//   kFull:   each append and each ack is fdatasync'd before it returns, so
//            it also survives an OS crash or power loss. Costs ~0.08 ms of
//            CPU and ~0.2 ms of waiting per call on a virtio disk.
// New segments and the acked file's creation are fsync'd (with their
// directory) in both modes.
//
// On disk: <dir>/seg-<first seq, 20 digits>.log files of records
//   "ASP1" | u32 payload length | u32 crc32(payload) | u64 seq | payload
// (little endian), and <dir>/acked holding the highest delivered seq in two
// 30-byte slots, each "<seq, 20 decimal digits> <crc32 of those digits, 8
// hex>\n", overwritten in place alternately (fdatasync'd; a torn slot fails
// its crc and the other one, one ack older, counts). A file holding just a
// decimal number (older workers) is read as that seq and rewritten. A crash
// in the middle of an append leaves a torn last record; open() drops it (and
// everything after it) and truncates the file there. A crash between delivery
// and the ack update re-sends a message: each payload carries an id the
// coordinator de-duplicates on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "assay/status.h"

namespace assay::worker {

struct SpoolRecord {
  uint64_t seq = 0;  // 1, 2, 3, ... across the spool's life
  std::string payload;
};

struct SpoolOpenStats {
  size_t pending = 0;        // unacknowledged records found
  size_t dropped_bytes = 0;  // torn or corrupt bytes cut off
};

enum class SpoolSync { kNormal, kFull };

// Thread-safe: one thread appends while another delivers and acknowledges.
class Spool {
 public:
  static constexpr uint64_t kSegmentBytes = 8 << 20;

  static Result<std::unique_ptr<Spool>> open(const std::string& dir, SpoolOpenStats* stats = nullptr,
                                             SpoolSync sync = SpoolSync::kFull);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends the payloads in order (fdatasync'd once under kFull); returns
  // the last seq.
  Result<uint64_t> append(const std::vector<std::string>& payloads);
  Result<uint64_t> append(std::string payload) { return append(std::vector{std::move(payload)}); }

  // Up to `max_records` unacknowledged records (and at most about `max_bytes`),
  // oldest first.
  std::vector<SpoolRecord> pending(size_t max_records, size_t max_bytes = 4 << 20) const;
  size_t pending_count() const;
  // Blocks until an unacknowledged record exists or `limit` has passed;
  // true when one exists. Lets a deliverer sleep without adding latency.
  bool wait_pending(std::chrono::milliseconds limit) const;
  uint64_t acked() const;
  // Everything up to and including `seq` was delivered. Durable on return
  // under kFull; under kNormal a lost ack only re-sends (de-duplicated).
  Status ack(uint64_t seq);

 private:
  Spool(std::string dir, SpoolSync sync) : dir_(std::move(dir)), sync_(sync) {}
  Status load(SpoolOpenStats* stats);
  Status open_segment_for_append(uint64_t first_seq);
  Status write_acked(uint64_t seq);
  Status open_acked(bool legacy);
  void drop_delivered_segments();

  std::string dir_;
  const SpoolSync sync_;
  mutable std::mutex mu_;
  mutable std::condition_variable appended_;  // notified after each append
  int fd_ = -1;                 // current segment
  int acked_fd_ = -1;           // <dir>/acked, written in place
  int acked_slot_ = 0;          // the slot the next ack overwrites
  uint64_t seg_bytes_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t acked_ = 0;
  std::deque<SpoolRecord> unacked_;
  struct Segment {
    std::string path;
    uint64_t first_seq, last_seq;  // last_seq < first_seq when empty
  };
  std::vector<Segment> segments_;
};

// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
uint32_t crc32(std::string_view data);

// The acked file's slot for `seq`, and the highest seq of the valid slots in
// a file's text (none when neither slot is valid).
std::string acked_slot_text(uint64_t seq);
std::optional<uint64_t> parse_acked_slots(std::string_view text);

}  // namespace assay::worker
