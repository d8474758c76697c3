// A fresh, empty directory under the build tree for one engine test.
#pragma once

#include <filesystem>
#include <string>

inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path p = std::filesystem::path(ASSAY_BINARY_DIR) / "test_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}
