// Percent-encoding for URL query values and path segments (RFC 3986:
// everything but unreserved characters is encoded).
#pragma once

#include <string>
#include <string_view>

namespace assay {

std::string url_encode(std::string_view s);

}  // namespace assay
