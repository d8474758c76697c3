#include "registry.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace assay::cli {
namespace {

std::vector<std::pair<int, CommandAdder>>& registry() {
  static std::vector<std::pair<int, CommandAdder>> r;
  return r;
}
int g_exit_code = 0;

}  // namespace

CommandRegistrar::CommandRegistrar(int order, CommandAdder adder) {
  registry().emplace_back(order, std::move(adder));
}

void add_registered_commands(CLI::App& app) {
  auto& r = registry();
  std::stable_sort(r.begin(), r.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, add] : r) add(app);
}

void set_exit_code(int code) { g_exit_code = code; }
int exit_code() { return g_exit_code; }

}  // namespace assay::cli
