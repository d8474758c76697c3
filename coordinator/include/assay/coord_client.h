// The coordinator's HTTP client under its historical names: the one client
// in assay/http_client.h (also used by the worker), whose header describes
// the error behaviour.
#pragma once

#include <string>

#include "assay/http_client.h"
#include "assay/url.h"

namespace assay::coordinator {

using HttpReply = ::assay::http::Reply;
using Endpoint = ::assay::http::Endpoint;
using HttpClient = ::assay::http::Client;

// "http://HOST:PORT[/]" or "HOST:PORT". https is not supported.
inline Result<Endpoint> parse_coordinator_url(const std::string& url) { return http::parse_url(url); }

// Percent-encodes a query value.
using ::assay::url_encode;  // percent-encoding, from assay/url.h

}  // namespace assay::coordinator
