// Helpers shared by the libFuzzer targets: a scratch directory for the files
// a target must hand to a loader by path, and the split of one input into
// parts.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace assay::fuzz {

// A directory private to this process, under /dev/shm when it is writable
// (the loaders read files, and tmpfs keeps that off the disk), removed at
// exit. libFuzzer ends a run with exit(), so the destructor of this static runs.
class ScratchDir {
 public:
  static const std::filesystem::path& get() {
    static ScratchDir d;
    return d.path_;
  }

 private:
  ScratchDir() {
    const char* bases[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
    for (const char* base : bases) {
      if (!base || access(base, W_OK) != 0) continue;
      std::string tmpl = std::string(base) + "/assay_fuzz_XXXXXX";
      if (mkdtemp(tmpl.data())) {
        path_ = tmpl;
        return;
      }
    }
    abort();  // nowhere to write: the target cannot run
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Splits `data` at every occurrence of `sep` (at most max_parts parts; the
// last keeps the rest). Text separators keep the seeds readable and let the
// fuzzer's dictionary-free mutations still find the boundaries.
inline std::vector<std::string_view> split(std::string_view data, std::string_view sep,
                                           size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = data.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(data.substr(0, at));
    data.remove_prefix(at + sep.size());
  }
  parts.push_back(data);
  return parts;
}

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace assay::fuzz
