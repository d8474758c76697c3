// safetensors reader (validating) and F32 writer.
//
// File: u64 LE header length N | N bytes of JSON | data section.
// JSON: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}
// with offsets relative to the data section. Multi-byte values are little-
// endian; this code assumes a little-endian host (x86-64, aarch64).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "assay/json_limits.h"
#include "assay/engine.h"

namespace assay::engine {
namespace {

constexpr uint64_t kMaxHeader = 100u * 1000 * 1000;  // as the reference implementation

// Bytes per element, or 0 for an unknown dtype.
size_t dtype_size(const std::string& d) {
  static const std::pair<const char*, size_t> kTable[] = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
      {"U64", 8}, {"I32", 4}, {"U32", 4},  {"I16", 2},     {"U16", 2},
      {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : kTable) {
    if (d == name) return size;
  }
  return 0;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // ±0
  } else {
    // Subnormal half: normalise the mantissa.
    int e = -1;
    do {
      e++;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_f32(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

Status parse_entry(const std::string& what, const std::string& name, const nlohmann::json& e,
                   SafeTensorInfo* out) {
  auto bad = [&](const std::string& m) {
    return Status::Corruption(what + ": tensor '" + name + "': " + m);
  };
  if (!e.is_object()) return bad("entry must be a JSON object");
  if (!e.contains("dtype") || !e["dtype"].is_string()) return bad("missing string field dtype");
  if (!e.contains("shape") || !e["shape"].is_array()) return bad("missing array field shape");
  if (!e.contains("data_offsets") || !e["data_offsets"].is_array() ||
      e["data_offsets"].size() != 2) {
    return bad("data_offsets must be an array [begin, end]");
  }
  out->name = name;
  out->dtype = e["dtype"].get<std::string>();
  const size_t esize = dtype_size(out->dtype);
  if (esize == 0) return bad("unknown dtype \"" + out->dtype + "\"");
  uint64_t numel = 1;
  for (const auto& d : e["shape"]) {
    if (!d.is_number_unsigned()) return bad("shape entries must be non-negative integers");
    const uint64_t v = d.get<uint64_t>();
    if (v != 0 && numel > (uint64_t{1} << 62) / v) return bad("shape overflows");
    numel *= v;
    out->shape.push_back((int64_t)v);
  }
  for (const auto& o : e["data_offsets"]) {
    if (!o.is_number_unsigned()) return bad("data_offsets must be non-negative integers");
  }
  out->begin = e["data_offsets"][0].get<uint64_t>();
  out->end = e["data_offsets"][1].get<uint64_t>();
  if (out->end < out->begin) {
    return bad("data_offsets end " + std::to_string(out->end) + " < begin " +
               std::to_string(out->begin));
  }
  if (out->end - out->begin != numel * esize) {
    return bad("byte size " + std::to_string(out->end - out->begin) + " != numel " +
               std::to_string(numel) + " x " + std::to_string(esize) + " (" + out->dtype + ")");
  }
  return Status::Ok();
}

}  // namespace

size_t SafeTensorInfo::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= (size_t)d;
  return n;
}

Result<SafeTensors> SafeTensors::parse(std::string bytes, const std::string& what) {
  if (bytes.size() < 8) {
    return Status::Corruption(what + ": file is " + std::to_string(bytes.size()) +
                              " bytes, too short for the 8-byte header length");
  }
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n < 2 || n > kMaxHeader) {
    return Status::Corruption(what + ": header length " + std::to_string(n) + " must be 2.." +
                              std::to_string(kMaxHeader));
  }
  if (n > bytes.size() - 8) {
    return Status::Corruption(what + ": header length " + std::to_string(n) +
                              " exceeds the file size " + std::to_string(bytes.size()));
  }
  // A header is two levels deep; anything much deeper is hostile (freeing a
  // deep tree recurses): refused before parsing, in linear time.
  const std::string_view header(bytes.data() + 8, n);
  if (auto at = json_depth_exceeded_at(header, kMaxJsonDepth))
    return Status::Corruption(what + ": header nested deeper than " + std::to_string(kMaxJsonDepth) +
                              " levels at byte " + std::to_string(8 + *at));
  // nlohmann keeps the last of duplicate keys silently: catch them while parsing.
  std::set<std::string> seen;
  std::string dup;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
      const std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && dup.empty()) dup = k;
    }
    return true;
  };
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + (std::ptrdiff_t)n, cb);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(what + ": header is not valid JSON: " + e.what());
  }
  if (!dup.empty()) return Status::Corruption(what + ": duplicate tensor name '" + dup + "'");
  if (!h.is_object()) return Status::Corruption(what + ": header must be a JSON object");

  SafeTensors st;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return Status::Corruption(what + ": __metadata__ must be an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return Status::Corruption(what + ": __metadata__." + m.key() + " must be a string");
        }
        st.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    SafeTensorInfo info;
    ASSAY_RETURN_IF_ERROR(parse_entry(what, it.key(), *it, &info));
    st.tensors_.push_back(std::move(info));
  }
  // Tensors must tile the data section: sorted by offset, each begins where
  // the previous ended, and the last ends at the end of the file.
  const size_t data_size = bytes.size() - 8 - n;
  std::vector<const SafeTensorInfo*> order;
  for (const auto& t : st.tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafeTensorInfo* a, const SafeTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  size_t pos = 0;
  for (const SafeTensorInfo* t : order) {
    if (t->end > data_size) {
      return Status::Corruption(what + ": tensor '" + t->name + "' data_offsets [" +
                                std::to_string(t->begin) + ", " + std::to_string(t->end) +
                                ") out of range of the " + std::to_string(data_size) +
                                "-byte data section");
    }
    if (t->begin < pos) {
      return Status::Corruption(
          what + ": tensor '" + t->name + "' at offset " + std::to_string(t->begin) +
          " overlaps the previous tensor (ends at " + std::to_string(pos) + ")");
    }
    if (t->begin > pos) {
      return Status::Corruption(what + ": gap of " + std::to_string(t->begin - pos) +
                                " bytes before tensor '" + t->name + "' at offset " +
                                std::to_string(pos));
    }
    pos = t->end;
  }
  if (pos != data_size) {
    return Status::Corruption(what + ": tensors cover " + std::to_string(pos) + " of " +
                              std::to_string(data_size) + " data bytes (trailing bytes)");
  }
  st.data_start_ = 8 + n;
  st.bytes_ = std::move(bytes);
  return st;
}

Result<SafeTensors> SafeTensors::read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError(path + ": cannot open");
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return Status::IoError(path + ": " + ec.message());
  std::string bytes(size, '\0');
  f.read(bytes.data(), (std::streamsize)size);
  if (!f) return Status::IoError(path + ": short read");
  return parse(std::move(bytes), path);
}

const SafeTensorInfo* SafeTensors::find(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Status SafeTensors::copy_f32(std::string_view name, float* dst, size_t numel) const {
  const SafeTensorInfo* t = find(name);
  if (!t) return Status::NotFound("safetensors: no tensor '" + std::string(name) + "'");
  if (t->numel() != numel) {
    return Status::Invalid("safetensors: tensor '" + t->name + "' has " +
                           std::to_string(t->numel()) + " elements, expected " +
                           std::to_string(numel));
  }
  // An empty tensor has nothing to convert, and dst may then be null (an
  // empty vector's data()): memcpy with a null pointer is undefined even for
  // zero bytes.
  const bool float_type =
      t->dtype == "F32" || t->dtype == "F16" || t->dtype == "BF16" || t->dtype == "F64";
  if (numel == 0 && float_type) return Status::Ok();
  const char* src = bytes_.data() + data_start_ + t->begin;
  if (t->dtype == "F32") {
    std::memcpy(dst, src, numel * 4);
  } else if (t->dtype == "F16" || t->dtype == "BF16") {
    const bool half = t->dtype == "F16";
    for (size_t i = 0; i < numel; i++) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
    }
  } else if (t->dtype == "F64") {
    for (size_t i = 0; i < numel; i++) {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      dst[i] = (float)d;
    }
  } else {
    return Status::Invalid("safetensors: tensor '" + t->name + "' has dtype " + t->dtype +
                           ", expected a float type (F32, F16, BF16, F64)");
  }
  return Status::Ok();
}

Result<std::vector<float>> SafeTensors::to_f32(std::string_view name) const {
  const SafeTensorInfo* t = find(name);
  if (!t) return Status::NotFound("safetensors: no tensor '" + std::string(name) + "'");
  std::vector<float> out(t->numel());
  ASSAY_RETURN_IF_ERROR(copy_f32(name, out.data(), out.size()));
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  meta["format"] = "pt";
  h["__metadata__"] = meta;
  std::set<std::string> names;
  size_t off = 0;
  for (const TensorRef& t : tensors) {
    if (t.name == "__metadata__" || !names.insert(t.name).second) {
      return Status::Invalid("write_safetensors " + path + ": duplicate or reserved name '" +
                             t.name + "'");
    }
    size_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0)
        return Status::Invalid("write_safetensors: tensor '" + t.name + "' has a negative dim");
      numel *= (size_t)d;
    }
    if (numel > 0 && t.data == nullptr) {
      return Status::Invalid("write_safetensors: tensor '" + t.name + "' has no data");
    }
    h[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {off, off + numel * 4}}};
    off += numel * 4;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  const uint64_t n = header.size();

  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status::IoError(tmp + ": cannot open for writing");
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(header.data(), (std::streamsize)n);
    for (const TensorRef& t : tensors) {
      size_t numel = 1;
      for (int64_t d : t.shape) numel *= (size_t)d;
      if (numel == 0) continue;  // t.data may be null
      f.write(reinterpret_cast<const char*>(t.data), (std::streamsize)(numel * 4));
    }
    if (!f) return Status::IoError(tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IoError(path + ": rename failed: " + ec.message());
  return Status::Ok();
}

}  // namespace assay::engine
