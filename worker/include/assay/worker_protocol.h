// The run side of the metric protocol: JSON lines a run writes to the file
// descriptor named by ASSAY_METRICS_FD.
//   {"step": 10, "metrics": {"loss": 1.23}}      a metric line
//   {"checkpoint": "ckpt/step10", "step": 10}   a checkpoint line
// A line that does not parse is counted and reported with its 1-based line
// number; it never stops the reader.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "assay/specs.h"
#include "assay/status.h"

namespace assay::worker {

struct ParsedLine {
  int64_t line_no = 0;
  schemas::MetricLine line;
};

struct MalformedLine {
  int64_t line_no = 0;
  std::string error;    // the parser's message
  std::string excerpt;  // the first bytes of the line, for the event
};

class MetricLineReader {
 public:
  // Lines longer than this are malformed (the bytes up to the newline are dropped).
  static constexpr size_t kMaxLineBytes = 1 << 20;

  // Appends raw bytes; every complete line is parsed.
  void feed(std::string_view bytes);
  // The stream ended: a last line without a newline is parsed too.
  void finish();

  // Parsed and malformed lines since the last take.
  std::vector<ParsedLine> take_parsed();
  std::vector<MalformedLine> take_malformed();

  int64_t lines_seen() const { return line_no_; }
  int64_t malformed_total() const { return malformed_total_; }

 private:
  void handle_line(std::string_view line);
  std::string partial_;
  bool overlong_ = false;  // dropping bytes until the next newline
  int64_t line_no_ = 0;
  int64_t malformed_total_ = 0;
  std::vector<ParsedLine> parsed_;
  std::vector<MalformedLine> malformed_;
};

// Reads what is available on a non-blocking descriptor into the reader.
// Returns false once the descriptor reached end of file (all writers closed).
bool drain_fd(int fd, MetricLineReader& reader);


}  // namespace assay::worker
