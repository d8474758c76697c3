#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "assay/hash.h"
#include "assay/worker_protocol.h"

namespace assay::worker {

namespace fs = std::filesystem;

void MetricLineReader::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view piece = bytes.substr(0, nl);
    if (overlong_) {
      // Still inside a line already reported as too long.
    } else if (partial_.size() + piece.size() > kMaxLineBytes) {
      overlong_ = true;
      ++line_no_;
      ++malformed_total_;
      malformed_.push_back({line_no_,
                            "line longer than " + std::to_string(kMaxLineBytes) + " bytes",
                            partial_.substr(0, 80)});
      partial_.clear();
    } else {
      partial_.append(piece);
    }
    if (nl == std::string_view::npos) return;
    if (overlong_) {
      overlong_ = false;
    } else {
      handle_line(partial_);
      partial_.clear();
    }
    bytes.remove_prefix(nl + 1);
  }
}

void MetricLineReader::finish() {
  if (!partial_.empty() && !overlong_) handle_line(partial_);
  partial_.clear();
  overlong_ = false;
}

void MetricLineReader::handle_line(std::string_view line) {
  ++line_no_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  bool blank = std::all_of(line.begin(), line.end(),
                           [](char c) { return c == ' ' || c == '\t'; });
  if (blank) return;  // numbered, but not an error
  auto r = schemas::parse_metric_line(line);
  if (r.ok()) {
    parsed_.push_back({line_no_, std::move(r).value()});
  } else {
    ++malformed_total_;
    malformed_.push_back({line_no_, r.status().message(), std::string(line.substr(0, 80))});
  }
}

std::vector<ParsedLine> MetricLineReader::take_parsed() { return std::exchange(parsed_, {}); }
std::vector<MalformedLine> MetricLineReader::take_malformed() {
  return std::exchange(malformed_, {});
}

bool drain_fd(int fd, MetricLineReader& reader) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      reader.feed(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;  // other errors end the stream too
  }
}

}  // namespace assay::worker
