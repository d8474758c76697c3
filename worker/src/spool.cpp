#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "assay/worker_spool.h"

namespace assay::worker {

namespace {

constexpr char kMagic[4] = {'A', 'S', 'P', '1'};
constexpr size_t kHeader = 4 + 4 + 4 + 8;
constexpr uint32_t kMaxPayload = 64u << 20;

std::string err(const std::string& what) { return what + ": " + std::strerror(errno); }

void put_u32(std::string& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(err(path + ": write"));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(err(dir + ": open directory"));
  int rc = fsync(fd);
  close(fd);
  if (rc != 0) return Status::IoError(err(dir + ": fsync"));
  return Status::Ok();
}

std::string seg_name(uint64_t first_seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "seg-%020llu.log", static_cast<unsigned long long>(first_seq));
  return buf;
}

Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(err(path + ": open"));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return Status::IoError(err(path + ": read"));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

}  // namespace

uint32_t crc32(std::string_view data);

namespace {

// One slot of the acked file: 20 decimal digits, a space, the crc32 of the
// digits in 8 hex digits, a newline (30 bytes).
constexpr size_t kAckedSlot = 30;

}  // namespace

std::string acked_slot_text(uint64_t seq) {
  char digits[32], out[64];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(seq));
  std::snprintf(out, sizeof out, "%s %08x\n", digits, crc32(std::string_view(digits, 20)));
  return std::string(out, kAckedSlot);
}

std::optional<uint64_t> parse_acked_slots(std::string_view text) {
  std::optional<uint64_t> best;
  for (size_t at = 0; at + kAckedSlot <= text.size() && at < 2 * kAckedSlot; at += kAckedSlot) {
    std::string_view slot = text.substr(at, kAckedSlot);
    if (slot[20] != ' ' || slot[29] != '\n') continue;
    std::string_view digits = slot.substr(0, 20);
    if (digits.find_first_not_of("0123456789") != std::string_view::npos) continue;
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", crc32(digits));
    if (slot.substr(21, 8) != std::string_view(hex, 8)) continue;
    uint64_t seq = std::strtoull(std::string(digits).c_str(), nullptr, 10);
    if (!best || seq > *best) best = seq;
  }
  return best;
}

uint32_t crc32(std::string_view data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

Result<std::unique_ptr<Spool>> Spool::open(const std::string& dir, SpoolOpenStats* stats,
                                           SpoolSync sync) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError("spool " + dir + ": cannot create: " + ec.message());
  auto s = std::unique_ptr<Spool>(new Spool(dir, sync));
  ASSAY_RETURN_IF_ERROR(s->load(stats).with_context("spool " + dir));
  return s;
}

Spool::~Spool() {
  if (fd_ >= 0) close(fd_);
  if (acked_fd_ >= 0) close(acked_fd_);
}

Status Spool::load(SpoolOpenStats* stats) {
  SpoolOpenStats st;
  bool legacy_acked = false;
  if (auto a = read_file(dir_ + "/acked"); a.ok() && !a->empty()) {
    if (auto seq = parse_acked_slots(*a)) {
      acked_ = *seq;
    } else {
      acked_ = std::strtoull(a->c_str(), nullptr, 10);  // the one-number text of older workers
      legacy_acked = true;
    }
  }
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    std::string n = e.path().filename().string();
    if (n.rfind("seg-", 0) == 0 && n.size() > 8 && n.substr(n.size() - 4) == ".log") names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  uint64_t last = acked_;
  bool broken = false;
  for (const auto& n : names) {
    std::string path = dir_ + "/" + n;
    if (broken) {  // the order was cut earlier: later segments cannot be trusted
      ASSAY_ASSIGN_OR_RETURN(std::string data, read_file(path));
      st.dropped_bytes += data.size();
      std::filesystem::remove(path);
      continue;
    }
    ASSAY_ASSIGN_OR_RETURN(std::string data, read_file(path));
    uint64_t first = std::strtoull(n.c_str() + 4, nullptr, 10);
    Segment seg{path, first, first - 1};
    size_t off = 0;
    while (off < data.size()) {
      bool ok = data.size() - off >= kHeader && std::memcmp(data.data() + off, kMagic, 4) == 0;
      uint32_t len = ok ? static_cast<uint32_t>(get_le(data.data() + off + 4, 4)) : 0;
      ok = ok && len <= kMaxPayload && data.size() - off - kHeader >= len;
      uint64_t seq = ok ? get_le(data.data() + off + 12, 8) : 0;
      std::string_view payload = ok ? std::string_view(data).substr(off + kHeader, len) : "";
      ok = ok && crc32(payload) == static_cast<uint32_t>(get_le(data.data() + off + 8, 4));
      ok = ok && (seq == seg.last_seq + 1);
      if (!ok) break;
      if (seq > acked_) unacked_.push_back({seq, std::string(payload)});
      seg.last_seq = seq;
      last = std::max(last, seq);
      off += kHeader + len;
    }
    if (off < data.size()) {
      // A torn or corrupt tail: cut it so appends continue on a valid prefix.
      st.dropped_bytes += data.size() - off;
      if (truncate(path.c_str(), static_cast<off_t>(off)) != 0) {
        return Status::IoError(err(path + ": truncate"));
      }
      broken = true;
    }
    segments_.push_back(seg);
  }
  next_seq_ = last + 1;
  // The unacked records must continue right after acked_; a gap means the
  // records in between were lost, which only a foreign edit can cause.
  if (!unacked_.empty() && unacked_.front().seq != acked_ + 1 && acked_ != 0) {
    return Status::Corruption("records after seq " + std::to_string(acked_) + " start at " +
                              std::to_string(unacked_.front().seq));
  }
  drop_delivered_segments();
  if (!segments_.empty() && segments_.back().last_seq + 1 == next_seq_) {
    const Segment& tail = segments_.back();
    fd_ = ::open(tail.path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd_ < 0) return Status::IoError(err(tail.path + ": open"));
    struct stat sb;
    fstat(fd_, &sb);
    seg_bytes_ = static_cast<uint64_t>(sb.st_size);
  } else {
    ASSAY_RETURN_IF_ERROR(open_segment_for_append(next_seq_));
  }
  st.pending = unacked_.size();
  if (stats) *stats = st;
  return open_acked(legacy_acked);
}

// The acked file is written in place from now on; an older worker's text
// is replaced whole first (tmp + rename), so no torn rewrite can mix the two.
Status Spool::open_acked(bool legacy) {
  const std::string path = dir_ + "/acked";
  if (legacy) {
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Status::IoError(err(tmp + ": create"));
    Status w = write_all(fd, acked_slot_text(acked_) + acked_slot_text(acked_), tmp);
    if (w.ok() && fsync(fd) != 0) w = Status::IoError(err(tmp + ": fsync"));
    close(fd);
    ASSAY_RETURN_IF_ERROR(w);
    if (rename(tmp.c_str(), path.c_str()) != 0) return Status::IoError(err(tmp + ": rename"));
  }
  bool existed = access(path.c_str(), F_OK) == 0;
  acked_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (acked_fd_ < 0) return Status::IoError(err(path + ": open"));
  if (!existed || legacy) ASSAY_RETURN_IF_ERROR(fsync_dir(dir_));
  return Status::Ok();
}

Status Spool::open_segment_for_append(uint64_t first_seq) {
  if (fd_ >= 0) close(fd_);
  std::string path = dir_ + "/" + seg_name(first_seq);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) return Status::IoError(err(path + ": create"));
  seg_bytes_ = 0;
  segments_.push_back({path, first_seq, first_seq - 1});
  return fsync_dir(dir_);
}

Result<uint64_t> Spool::append(const std::vector<std::string>& payloads) {
  std::lock_guard lock(mu_);
  if (payloads.empty()) return next_seq_ - 1;
  std::string buf;
  uint64_t seq = next_seq_;
  for (const auto& p : payloads) {
    if (p.size() > kMaxPayload) {
      return Status::Invalid("spool record of " + std::to_string(p.size()) + " bytes exceeds " +
                             std::to_string(kMaxPayload));
    }
    buf.append(kMagic, 4);
    put_u32(buf, static_cast<uint32_t>(p.size()));
    put_u32(buf, crc32(p));
    put_u64(buf, seq++);
    buf.append(p);
  }
  Segment& seg = segments_.back();
  Status w = write_all(fd_, buf, seg.path);
  if (w.ok() && sync_ == SpoolSync::kFull && fdatasync(fd_) != 0)
    w = Status::IoError(err(seg.path + ": fdatasync"));
  if (!w.ok()) {
    // Leave no half-written record behind a later append.
    if (ftruncate(fd_, static_cast<off_t>(seg_bytes_)) != 0) {
      return w.with_context("and truncating back failed");
    }
    return w;
  }
  seq = next_seq_;
  for (const auto& p : payloads) unacked_.push_back({seq++, p});
  next_seq_ = seq;
  seg.last_seq = seq - 1;
  seg_bytes_ += buf.size();
  appended_.notify_all();
  if (seg_bytes_ >= kSegmentBytes) ASSAY_RETURN_IF_ERROR(open_segment_for_append(next_seq_));
  return next_seq_ - 1;
}

bool Spool::wait_pending(std::chrono::milliseconds limit) const {
  std::unique_lock lock(mu_);
  return appended_.wait_for(lock, limit, [&] { return !unacked_.empty(); });
}

std::vector<SpoolRecord> Spool::pending(size_t max_records, size_t max_bytes) const {
  std::lock_guard lock(mu_);
  std::vector<SpoolRecord> out;
  size_t bytes = 0;
  for (const auto& r : unacked_) {
    if (out.size() >= max_records) break;
    if (!out.empty() && bytes + r.payload.size() > max_bytes) break;
    bytes += r.payload.size();
    out.push_back(r);
  }
  return out;
}

size_t Spool::pending_count() const {
  std::lock_guard lock(mu_);
  return unacked_.size();
}

uint64_t Spool::acked() const {
  std::lock_guard lock(mu_);
  return acked_;
}

// Two slots, written alternately in place: a torn write can only spoil the
// slot being written, and the other still holds the previous ack (its
// records are then resent, which the coordinator de-duplicates). Costs one
// fdatasync under kFull and, unlike a rename, no new inode per ack.
Status Spool::write_acked(uint64_t seq) {
  const std::string path = dir_ + "/acked";
  std::string slot = acked_slot_text(seq);
  off_t at = static_cast<off_t>(acked_slot_ * slot.size());
  for (size_t done = 0; done < slot.size();) {
    ssize_t n = pwrite(acked_fd_, slot.data() + done, slot.size() - done, at + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IoError(err(path + ": write"));
    done += static_cast<size_t>(n);
  }
  if (sync_ == SpoolSync::kFull && fdatasync(acked_fd_) != 0)
    return Status::IoError(err(path + ": fdatasync"));
  acked_slot_ ^= 1;
  return Status::Ok();
}

Status Spool::ack(uint64_t seq) {
  std::lock_guard lock(mu_);
  seq = std::min(seq, next_seq_ - 1);
  if (seq <= acked_) return Status::Ok();
  ASSAY_RETURN_IF_ERROR(write_acked(seq));
  acked_ = seq;
  while (!unacked_.empty() && unacked_.front().seq <= seq) unacked_.pop_front();
  drop_delivered_segments();
  return Status::Ok();
}

void Spool::drop_delivered_segments() {
  // Keep the last segment: it is the one being appended to.
  while (segments_.size() > 1 && segments_.front().last_seq <= acked_) {
    std::error_code ec;
    std::filesystem::remove(segments_.front().path, ec);
    segments_.erase(segments_.begin());
  }
}

}  // namespace assay::worker
