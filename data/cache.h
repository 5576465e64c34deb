// cache.h: the disk cache of processed windows (one file per record and input design).
//
// Building the images of a night costs a few hundred milliseconds of FFTs; reading them back costs
// a few milliseconds. dataset.cpp asks the cache first, and writes what it had to compute.
//
// Key. A cache file is valid for exactly one combination of
//   - the code version (kDatasetCacheVersion here, and the spectrogram's own version tag inside
//     SpectrogramSettings::to_string()),
//   - the image settings (SpectrogramSettings::to_string(): every field),
//   - the beat cleaning settings (CleanConfig),
//   - the record's content as loaded: record id, every beat time and R amplitude, every window
//     start and duration (a 64-bit content hash of the bytes, not file sizes or mtimes: a
//     re-downloaded file with the same content still hits, an edited one never does).
// cache_key() writes all of it as text; the file name is "<record id>-<16 hex digits of the key's
// FNV-1a 64 hash>.sncache", and the full key text is stored inside and compared on reading, so a
// hash collision or a renamed file is caught as stale. Different settings therefore live in
// different files side by side (comparing input designs does not thrash the cache); delete the
// directory to reclaim space.
//
// File layout (little-endian, as written by this machine; the endianness marker refuses files from
// a big-endian one):
//
//     offset  size        field
//     0       8           magic "SNDSCACH"
//     8       4           u32 format version (kDatasetCacheVersion)
//     12      4           u32 endianness marker 0x01020304
//     16      4           u32 key length K
//     20      K           key text
//     20+K    8           i64 N (windows)
//             4 x 3       i32 C, H, W
//             8 N         f64 window starts (s)
//             N           u8 amplitude_missing per window
//             4 N C H W   f32 images [N, C, H, W]
//             8           u64 checksum of every byte before it (checksum64)
//
// Reading checks, in order: the file opens, the magic, the version, the marker, the key, the sizes
// (N, C, H, W sane and the file exactly as long as they imply), the checksum. The first failure
// makes the file Stale (magic/version/key: another design or code version) or Corrupt (truncated,
// wrong size, checksum), never trusted: the caller rebuilds and overwrites it. Writes go to a
// temporary file in the same directory that is then renamed over the target, so a reader (or a
// run killed mid-write) never sees half a file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/record.h"
#include "data/signal.h"
#include "data/spectrogram.h"

namespace sleepnet::data {

// Bump whenever dataset.cpp changes what it computes or this file's layout changes.
inline constexpr uint32_t kDatasetCacheVersion = 1;

// The processed windows of one record.
struct CachedImages {
  int channels = 0, height = 0, width = 0;
  std::vector<double> starts;               // window starts, one per window
  std::vector<uint8_t> amplitude_missing;   // one per window
  std::vector<float> images;                // [N, C, H, W]
  int64_t size() const { return static_cast<int64_t>(starts.size()); }
};

// Non-cryptographic 64-bit checksum of bytes (8-byte words, multiply-xorshift mixing; detects
// truncation, flipped bits and swapped blocks; not for adversaries).
uint64_t checksum64(const void* data, size_t bytes, uint64_t seed = 0);
// FNV-1a 64 of a string (stable across runs and machines).
uint64_t fnv1a64(std::string_view s);

// The key text (see the top of this file).
std::string cache_key(const Record& record, const SpectrogramSettings& spectrogram,
                      const CleanConfig& clean);
// "<dir>/<record id>-<hash>.sncache"
std::string cache_file_path(const std::string& dir, const std::string& record_id, const std::string& key);

enum class CacheStatus { Hit, Missing, Stale, Corrupt };
std::string_view cache_status_name(CacheStatus s);  // "hit", "missing", "stale", "corrupt"

struct CacheLookup {
  CacheStatus status = CacheStatus::Missing;
  std::string reason;  // why not a hit, naming the file ("a01-...sncache: checksum mismatch")
  CachedImages data;   // filled on a hit
};

// Reads and checks a cache file against `key`. Never throws for a bad file (that is a status);
// throws only for impossible arguments.
CacheLookup read_cache_file(const std::string& path, const std::string& key);
// Writes atomically (temporary file + rename). Throws sleepnet::Error naming the file on I/O
// failure or inconsistent sizes.
void write_cache_file(const std::string& path, const std::string& key, const CachedImages& data);

}  // namespace sleepnet::data
