// Shared helpers of the training tests: file contents, JSONL data sets the
// recipes read, and the small author-facts splits the unlearning tests use.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "assay/datagen.h"

namespace assay::testing {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// One JSON line per item (anything assay::data::to_jsonl takes).
template <class T>
void write_jsonl(const std::filesystem::path& p, const std::vector<T>& items) {
  std::vector<std::string> lines;
  for (const auto& x : items) lines.push_back(assay::data::to_jsonl(x));
  ASSERT_TRUE(assay::data::write_lines(p.string(), lines).ok()) << p;
}

// 10 authors x 3 facts, 20% forget, 20% holdout: small enough for seconds.
inline assay::data::UnlearnOptions small_unlearn_options() {
  assay::data::UnlearnOptions uo;
  uo.n_authors = 10;
  uo.facts_per_author = 3;
  uo.forget_frac = 0.2;
  uo.holdout_frac = 0.2;
  return uo;
}

// Writes forget/retain/holdout.jsonl of `uo` into dir and returns the splits.
inline assay::data::UnlearnSplits write_unlearn_splits(const std::filesystem::path& dir,
                                                      const assay::data::UnlearnOptions& uo) {
  auto s = assay::data::generate_unlearn(uo);
  write_jsonl(dir / "forget.jsonl", s.forget);
  write_jsonl(dir / "retain.jsonl", s.retain);
  write_jsonl(dir / "holdout.jsonl", s.holdout);
  return s;
}

}  // namespace assay::testing
