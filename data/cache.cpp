// cache.cpp: cache files of processed windows (see cache.h for the key and the layout).
#include "data/cache.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "tensor/tensor.h"

namespace sleepnet::data {

namespace {

constexpr char kMagic[8] = {'S', 'N', 'D', 'S', 'C', 'A', 'C', 'H'};
constexpr uint32_t kEndianMarker = 0x01020304u;
constexpr int64_t kMaxWindows = int64_t{1} << 24;  // 16 M windows (a 30-year recording)
constexpr int32_t kMaxDim = 4096;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t fmix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::string hex16(uint64_t x) { return fmt::format("{:016x}", x); }

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// A cursor over the file bytes that refuses to read past the end.
struct Reader {
  const std::string& bytes;
  size_t pos = 0;
  bool take(void* out, size_t n) {
    if (n > bytes.size() - pos) return false;
    std::memcpy(out, bytes.data() + pos, n);
    pos += n;
    return true;
  }
};

}  // namespace

uint64_t checksum64(const void* data, size_t bytes, uint64_t seed) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed ^ (static_cast<uint64_t>(bytes) * 0x9E3779B97F4A7C15ULL);
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h ^= w * 0x87c37b91114253d5ULL;
    h = rotl(h, 31) * 0x4cf5ad432745937fULL + 0x52dce729ULL;
  }
  uint64_t tail = 0;
  for (size_t j = 0; i + j < bytes; ++j) tail |= static_cast<uint64_t>(p[i + j]) << (8 * j);
  h ^= tail * 0x87c37b91114253d5ULL;
  return fmix(h);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string cache_key(const Record& r, const SpectrogramSettings& spectrogram, const CleanConfig& clean) {
  std::vector<double> win(2 * r.windows.size());
  for (size_t i = 0; i < r.windows.size(); ++i) {
    win[2 * i] = r.windows[i].start_s;
    win[2 * i + 1] = r.windows[i].duration_s;
  }
  return fmt::format(
      "sleepnet dataset cache v{}\n"
      "record {} {}\n"
      "{}\n"
      "clean rr_min_s={} rr_max_s={} max_rel_diff={} median_half_window={} remove_outliers={}\n"
      "beats {} times={} amplitudes={} {}\n"
      "windows {} {}\n",
      kDatasetCacheVersion, r.id, database_name(r.database), spectrogram.to_string(), clean.rr_min_s,
      clean.rr_max_s, clean.max_rel_diff, clean.median_half_window, clean.remove_outliers ? 1 : 0,
      r.beat_times_s.size(), hex16(checksum64(r.beat_times_s.data(), r.beat_times_s.size() * sizeof(double))),
      r.r_amplitudes.size(), hex16(checksum64(r.r_amplitudes.data(), r.r_amplitudes.size() * sizeof(float))),
      r.windows.size(), hex16(checksum64(win.data(), win.size() * sizeof(double))));
}

std::string cache_file_path(const std::string& dir, const std::string& record_id, const std::string& key) {
  std::string name = record_id + "-" + hex16(fnv1a64(key)) + ".sncache";
  return dir.empty() ? name : (dir.back() == '/' ? dir + name : dir + "/" + name);
}

std::string_view cache_status_name(CacheStatus s) {
  switch (s) {
    case CacheStatus::Hit: return "hit";
    case CacheStatus::Missing: return "missing";
    case CacheStatus::Stale: return "stale";
    case CacheStatus::Corrupt: return "corrupt";
  }
  return "?";
}

CacheLookup read_cache_file(const std::string& path, const std::string& key) {
  CacheLookup out;
  const std::string name = std::filesystem::path(path).filename().string();
  auto fail = [&](CacheStatus s, const std::string& why) {
    out.status = s;
    out.reason = name + ": " + why;
    out.data = CachedImages{};
    return out;
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(CacheStatus::Missing, "no such file");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return fail(CacheStatus::Corrupt, "cannot determine the file size");
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(bytes.data(), size)) return fail(CacheStatus::Corrupt, "read error");

  Reader rd{bytes};
  char magic[8];
  uint32_t version = 0, marker = 0, key_len = 0;
  if (!rd.take(magic, 8)) return fail(CacheStatus::Corrupt, "truncated before the magic");
  if (std::memcmp(magic, kMagic, 8) != 0) return fail(CacheStatus::Corrupt, "not a sleepnet cache file (bad magic)");
  if (!rd.take(&version, 4) || !rd.take(&marker, 4) || !rd.take(&key_len, 4))
    return fail(CacheStatus::Corrupt, "truncated header");
  if (version != kDatasetCacheVersion)
    return fail(CacheStatus::Stale, fmt::format("format version {}, this build reads {}", version, kDatasetCacheVersion));
  if (marker != kEndianMarker) return fail(CacheStatus::Corrupt, "endianness marker mismatch");
  if (key_len > (1u << 20) || key_len > bytes.size() - rd.pos) return fail(CacheStatus::Corrupt, "key length out of range");
  std::string stored_key(bytes.data() + rd.pos, key_len);
  rd.pos += key_len;
  if (stored_key != key) return fail(CacheStatus::Stale, "made for other inputs or settings (key differs)");

  int64_t n = 0;
  int32_t c = 0, h = 0, w = 0;
  if (!rd.take(&n, 8) || !rd.take(&c, 4) || !rd.take(&h, 4) || !rd.take(&w, 4))
    return fail(CacheStatus::Corrupt, "truncated sizes");
  if (n < 0 || n > kMaxWindows || c < 1 || c > 16 || h < 1 || h > kMaxDim || w < 1 || w > kMaxDim)
    return fail(CacheStatus::Corrupt, fmt::format("sizes out of range (N={}, C={}, H={}, W={})", n, c, h, w));
  const uint64_t pix = static_cast<uint64_t>(n) * c * h * w;
  const uint64_t expected = rd.pos + 8ull * n + static_cast<uint64_t>(n) + 4ull * pix + 8ull;
  if (bytes.size() != expected)
    return fail(CacheStatus::Corrupt, fmt::format("{} bytes, the header implies {} (truncated or padded)",
                                                  bytes.size(), expected));
  uint64_t stored_sum = 0;
  std::memcpy(&stored_sum, bytes.data() + bytes.size() - 8, 8);
  if (checksum64(bytes.data(), bytes.size() - 8) != stored_sum) return fail(CacheStatus::Corrupt, "checksum mismatch");

  CachedImages& d = out.data;
  d.channels = c;
  d.height = h;
  d.width = w;
  d.starts.resize(n);
  d.amplitude_missing.resize(n);
  d.images.resize(pix);
  rd.take(d.starts.data(), 8 * n);
  rd.take(d.amplitude_missing.data(), n);
  rd.take(d.images.data(), 4 * pix);
  out.status = CacheStatus::Hit;
  return out;
}

void write_cache_file(const std::string& path, const std::string& key, const CachedImages& d) {
  const int64_t n = d.size();
  const uint64_t pix = static_cast<uint64_t>(n) * d.channels * d.height * d.width;
  if (d.amplitude_missing.size() != static_cast<size_t>(n) || d.images.size() != pix)
    throw Error(fmt::format("write_cache_file {}: inconsistent sizes (N={}, C={}, H={}, W={}, {} flags, {} floats)",
                            path, n, d.channels, d.height, d.width, d.amplitude_missing.size(), d.images.size()));
  std::string bytes;
  bytes.reserve(64 + key.size() + 9 * n + 4 * pix);
  bytes.append(kMagic, 8);
  put(bytes, kDatasetCacheVersion);
  put(bytes, kEndianMarker);
  put(bytes, static_cast<uint32_t>(key.size()));
  bytes += key;
  put(bytes, n);
  put(bytes, static_cast<int32_t>(d.channels));
  put(bytes, static_cast<int32_t>(d.height));
  put(bytes, static_cast<int32_t>(d.width));
  bytes.append(reinterpret_cast<const char*>(d.starts.data()), 8 * n);
  bytes.append(reinterpret_cast<const char*>(d.amplitude_missing.data()), n);
  bytes.append(reinterpret_cast<const char*>(d.images.data()), 4 * pix);
  put(bytes, checksum64(bytes.data(), bytes.size()));

  // Temporary name unique per process and call, in the target's directory (rename is atomic only
  // within one file system).
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}.tmp-{}-{}", path, static_cast<long>(::getpid()), counter++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("{}: cannot create the cache file", tmp));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw Error(fmt::format("{}: write failed (disk full?)", tmp));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error(fmt::format("{}: cannot rename the temporary cache file into place", path));
  }
}

}  // namespace sleepnet::data
