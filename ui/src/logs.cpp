// A run's log tail (GET /v1/ui/runs/{id}/logs): the files the coordinator
// keeps from its workers' uploads, <logs_dir>/<run>/<attempt>.<stream>.log
// (coordinator/API.md, worker logs), read with a byte cursor per stream.
#include <filesystem>
#include <fstream>

#include "api_internal.h"

namespace assay::ui {

namespace {

constexpr int64_t kDefaultTailBytes = 64 * 1024;
constexpr int64_t kMaxTailBytes = 1 << 20;

bool continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Reads [offset, offset + max) of a stream file without splitting a UTF-8
// character at either end (a cut character is left for the next read).
// offset < 0: the last `max` bytes.
Json read_stream(const std::string& path, int64_t offset, int64_t max) {
  std::error_code ec;
  const int64_t size = std::filesystem::exists(path, ec)
                           ? static_cast<int64_t>(std::filesystem::file_size(path, ec))
                           : 0;
  const bool tail = offset < 0;
  int64_t from = tail ? std::max<int64_t>(0, size - max) : std::min(offset, size);
  std::string data;
  if (from < size) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(from);
    data.resize(static_cast<size_t>(std::min(max, size - from)));
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    data.resize(static_cast<size_t>(in.gcount()));
  }
  size_t skip = 0;
  if (tail && from > 0)
    while (skip < data.size() && skip < 3 && continuation(uint8_t(data[skip]))) ++skip;
  // Drop an incomplete trailing character (a writer may be mid-character):
  // a lead byte followed by fewer continuation bytes than it announces.
  size_t end = data.size();
  size_t i = end;
  while (i > skip && end - i < 4 && continuation(uint8_t(data[i - 1]))) --i;
  if (i > skip) {
    const uint8_t lead = uint8_t(data[i - 1]);
    const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && end - (i - 1) < need) end = i - 1;
  }
  const int64_t start = from + int64_t(skip);
  return Json{{"size", size},
              {"offset", start},
              {"next_offset", from + int64_t(end)},
              {"text", data.substr(skip, end - skip)}};
}

}  // namespace

Result<Json> log_tail(const std::string& db, const std::string& logs_dir, int64_t run_id,
                      const std::map<std::string, std::string>& q, const ApiLimits& lim) {
  const std::string sid = std::to_string(run_id);
  auto r_sql = read_sql(db, "SELECT attempt, state FROM runs WHERE id = " + sid, lim);
  ASSAY_ASSIGN_OR_RETURN(auto r, std::move(r_sql));
  if (r.rows.empty()) return Status::NotFound("run " + sid + ": no such run");
  int64_t attempt = cell_json(r.rows[0][0]).get<int64_t>();
  if (auto it = q.find("attempt"); it != q.end()) {
    ASSAY_ASSIGN_OR_RETURN(attempt, parse_positive(it->second, "attempt"));
  }
  int64_t max = kDefaultTailBytes;
  if (auto it = q.find("max_bytes"); it != q.end()) {
    ASSAY_ASSIGN_OR_RETURN(max, parse_positive(it->second, "max_bytes"));
    if (max > kMaxTailBytes)
      return Status::Invalid("query parameter 'max_bytes': expected 1.." + std::to_string(kMaxTailBytes) +
                             ", got " + it->second);
  }
  Json out{{"run_id", run_id}, {"attempt", attempt}, {"state", cell_json(r.rows[0][1])}};
  for (const char* stream : {"stdout", "stderr"}) {
    int64_t offset = -1;  // absent: the tail
    if (auto it = q.find(stream); it != q.end() && !it->second.empty()) {
      try {
        size_t used = 0;
        offset = std::stoll(it->second, &used);
        if (used != it->second.size() || offset < 0) offset = -2;
      } catch (const std::exception&) {
        offset = -2;
      }
      if (offset == -2)
        return Status::Invalid(std::string("query parameter '") + stream +
                               "': expected a byte offset >= 0, got '" + it->second + "'");
    }
    out[stream] = read_stream(logs_dir + "/" + sid + "/" + std::to_string(attempt) + "." + stream +
                                  ".log",
                              offset, max);
  }
  return out;
}

}  // namespace assay::ui
