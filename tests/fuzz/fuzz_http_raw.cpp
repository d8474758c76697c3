// Raw HTTP/1.1 bytes through Beast's request parser with the limits the
// server's session loop (coordinator/src/server.cpp) sets: 64 KiB of header,
// the body limit checked against Content-Length once the header is read,
// then max_body_bytes for the body, chunked or not. Every request that parses
// goes on to Coordinator::handle_request; pipelined requests are read in turn.
#include <utility>  // before Asio: GCC 12 + Boost 1.74 need std::exchange declared

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "fuzz_coordinator.h"

namespace http = boost::beast::http;
namespace net = boost::asio;
using namespace assay;

namespace {

constexpr size_t kHeaderLimit = 64 * 1024;  // server.cpp: parser.header_limit
constexpr int kMaxRequests = 8;

// Feeds `in` to the parser until it is done, fails or wants more (then the
// connection ends: put_eof). Returns the bytes consumed.
size_t feed(http::request_parser<http::string_body>& p, std::string_view in, bool header_only,
            boost::system::error_code& ec) {
  size_t used = 0;
  while (!ec && used < in.size() && !(header_only ? p.is_header_done() : p.is_done())) {
    const size_t n = p.put(net::buffer(in.data() + used, in.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) {
      ec = {};
      if (n == 0) break;
    }
  }
  if (!ec && used == in.size() && !(header_only ? p.is_header_done() : p.is_done())) {
    p.put_eof(ec);
  }
  return used;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fc = fuzz::FuzzCoordinator::get();
  const size_t max_body = fc.options().max_body_bytes;
  std::string_view in = fuzz::as_view(data, size);
  for (int i = 0; i < kMaxRequests && !in.empty(); i++) {
    http::request_parser<http::string_body> p;
    p.header_limit(kHeaderLimit);
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
    // Not eager while reading the header, as async_read_header: the body
    // starts (and the string body reserves Content-Length bytes) only after
    // the size check below has set the real body limit.
    boost::system::error_code ec;
    size_t used = feed(p, in, /*header_only=*/true, ec);
    if (ec || !p.is_header_done()) return 0;  // the connection closes
    if (p.content_length() && *p.content_length() > max_body) return 0;  // 413, then close
    p.body_limit(max_body);
    p.eager(true);
    if (!p.is_done()) used += feed(p, in.substr(used), /*header_only=*/false, ec);
    if (ec || !p.is_done()) return 0;  // 413 for body_limit, else the connection closes
    in.remove_prefix(used);
    auto& msg = p.get();
    coordinator::Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.authorization = std::string(msg[http::field::authorization]);
    req.body = std::move(msg.body());
    fc.send(std::move(req));
    if (!msg.keep_alive()) return 0;
  }
  return 0;
}
