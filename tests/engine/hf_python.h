// The Python that runs the Hugging Face reference peers (transformers,
// tokenizers, safetensors). Debian 12 packages none of them; scripts/py-peers
// builds a venv on Debian's python3 that has them, and scripts/test passes
// it on. Chosen at run time, first match wins:
//   1. $ASSAY_HF_PYTHON (scripts/test exports the venv's python),
//   2. ASSAY_HF_PYTHON_DEFAULT, the venv's python as configured in CMake
//      (${ASSAY_PEERS_VENV:-$HOME/.cache/assay/peers-venv}/bin/python), when
//      that file exists: a test run by hand in a configured build finds it,
//   3. the Debian reference Python (ASSAY_REF_PYTHON).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

inline std::string hf_python() {
  const char* env = std::getenv("ASSAY_HF_PYTHON");
  if (env && *env) return env;
  if (std::filesystem::exists(ASSAY_HF_PYTHON_DEFAULT)) return ASSAY_HF_PYTHON_DEFAULT;
  return ASSAY_REF_PYTHON;
}

// "" when hf_python() imports every module in `modules` ("a, b"); otherwise
// the reason to skip, including why the venv is absent when scripts/test
// said so ($ASSAY_HF_SKIP_REASON, e.g. the package index was unreachable).
inline std::string hf_python_lacks(const std::string& modules) {
  const std::string py = hf_python();
  const std::string cmd = py + " -c 'import " + modules + "' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) == 0) return "";
  std::string why = py + " cannot import " + modules;
  const char* reason = std::getenv("ASSAY_HF_SKIP_REASON");
  if (reason && *reason) {
    why += " (" + std::string(reason) + ")";
  } else {
    why += " (scripts/py-peers builds a venv with them; it needs the PyPI index)";
  }
  return why;
}
