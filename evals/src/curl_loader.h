// libcurl, opened on the first HTTP request of an eval backend.
//
// Linked into the executable, libcurl brought 29 of its 38 shared objects
// (TLS, Kerberos, LDAP, SSH, IDN, ...) and about half of the start-up time of
// every command: `assay --version` spent 40% of its CPU in the dynamic
// loader, relocating them, though only `--backend openai` evals use HTTP
// through libcurl (the worker and the CLI speak HTTP themselves). The entry
// points below are resolved from libcurl.so.4 (its soname, so Debian's
// variant is used) once, on first use, and never closed.
#pragma once

#include <curl/curl.h>

#include "assay/status.h"

namespace assay::evals {

struct CurlApi {
  CURLcode (*global_init)(long flags) = nullptr;
  CURL* (*easy_init)() = nullptr;
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...) = nullptr;
  CURLcode (*easy_perform)(CURL*) = nullptr;
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...) = nullptr;
  const char* (*easy_strerror)(CURLcode) = nullptr;
  void (*easy_cleanup)(CURL*) = nullptr;
  curl_slist* (*slist_append)(curl_slist*, const char*) = nullptr;
  void (*slist_free_all)(curl_slist*) = nullptr;
};

// The loaded library with curl_global_init done, or why it cannot be
// (libcurl.so.4 missing: Debian's libcurl4). Thread-safe; the answer is cached.
Result<const CurlApi*> curl_api();

}  // namespace assay::evals
