#include "curl_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

namespace assay::evals {
namespace {

constexpr const char* kLibCurl = "libcurl.so.4";

template <class F>
bool resolve(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out && missing->empty()) *missing = name;
  return *out != nullptr;
}

Result<CurlApi> open_curl() {
  // RTLD_LOCAL: nothing else in the process should bind to its symbols.
  void* h = dlopen(kLibCurl, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return Status::Unavailable(std::string("cannot load ") + kLibCurl + " for HTTP eval backends: " +
                               (e ? e : "unknown error") +
                               "; install Debian's libcurl4 (libcurl4-openssl-dev to build)");
  }
  CurlApi c;
  std::string missing;
  resolve(h, "curl_global_init", &c.global_init, &missing);
  resolve(h, "curl_easy_init", &c.easy_init, &missing);
  resolve(h, "curl_easy_setopt", &c.easy_setopt, &missing);
  resolve(h, "curl_easy_perform", &c.easy_perform, &missing);
  resolve(h, "curl_easy_getinfo", &c.easy_getinfo, &missing);
  resolve(h, "curl_easy_strerror", &c.easy_strerror, &missing);
  resolve(h, "curl_easy_cleanup", &c.easy_cleanup, &missing);
  resolve(h, "curl_slist_append", &c.slist_append, &missing);
  resolve(h, "curl_slist_free_all", &c.slist_free_all, &missing);
  if (!missing.empty())
    return Status::Unavailable(std::string(kLibCurl) + ": has no entry point " + missing);
  // Once per process, before any other call, as libcurl requires.
  if (CURLcode rc = c.global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK)
    return Status::Unavailable(std::string(kLibCurl) + ": curl_global_init failed: " +
                               c.easy_strerror(rc));
  return c;
}

}  // namespace

Result<const CurlApi*> curl_api() {
  static std::once_flag once;
  static Result<CurlApi> loaded = Status::Internal("not loaded");
  std::call_once(once, [] { loaded = open_curl(); });
  if (!loaded.ok()) return loaded.status();
  return &*loaded;
}

}  // namespace assay::evals
