// tensor/allocator.cpp: the caching allocator (design, measurements and switches in allocator.h).
#include "tensor/allocator.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "tensor/tensor.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLEEPNET_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLEEPNET_ASAN 1
#endif
#endif

#ifdef SLEEPNET_ASAN
#include <sanitizer/asan_interface.h>
#define SLEEPNET_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SLEEPNET_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SLEEPNET_POISON(p, n) ((void)(p), (void)(n))
#define SLEEPNET_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace sleepnet {

namespace {
size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }
}  // namespace

size_t CachingAllocator::block_size(size_t bytes) {
  if (bytes > (size_t(1) << 62)) throw Error(fmt::format("allocator: cannot allocate {} bytes (too large)", bytes));
  return round_up(std::max<size_t>(bytes, 1), kAlignment);
}

CachingAllocator::CachingAllocator(Options options) : options_(options) {}

CachingAllocator::~CachingAllocator() {
  empty_cache();
  // Blocks still in use keep their segments mapped; only the bookkeeping goes.
  std::lock_guard<std::mutex> lock(mutex_);
  for (Block* b : free_blocks_) delete b;
  for (auto& [ptr, b] : used_blocks_) delete b;
}

void CachingAllocator::note_peaks_locked() {
  stats_.cached_bytes = stats_.reserved_bytes - stats_.allocated_bytes;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  high_water_bytes_ = std::max(high_water_bytes_, stats_.allocated_bytes);
}

// ---------------------------------------------------------------- segments

CachingAllocator::Block* CachingAllocator::map_segment_locked(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {  // the cache may hold what the system lacks
    trim_locked(0);
    p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  if (p == MAP_FAILED)
    throw Error(fmt::format("allocator: cannot allocate {} bytes (mmap failed; {} MiB in use)", size,
                            stats_.allocated_bytes >> 20));
  SLEEPNET_POISON(p, size);  // free until handed out
  stats_.reserved_bytes += static_cast<int64_t>(size);
  stats_.segments++;
  return new Block{static_cast<char*>(p), size};
}

void CachingAllocator::release_segment_locked(Block* b) {
  SLEEPNET_UNPOISON(b->ptr, b->size);  // the next mapping at this address starts clean
  munmap(b->ptr, b->size);
  stats_.reserved_bytes -= static_cast<int64_t>(b->size);
  stats_.segments--;
  stats_.releases++;
  delete b;
}

void CachingAllocator::trim_locked(int64_t limit) {
  // Largest wholly free segments first: the fewest munmaps to get under the limit.
  for (auto it = free_blocks_.end(); it != free_blocks_.begin() && stats_.reserved_bytes > limit;) {
    --it;
    Block* b = *it;
    if (b->prev || b->next) continue;  // part of a segment that is partly in use
    it = free_blocks_.erase(it);       // the element after b: --it next visits the one before
    release_segment_locked(b);
  }
  stats_.cached_bytes = stats_.reserved_bytes - stats_.allocated_bytes;
}

// ---------------------------------------------------------------- allocate / deallocate

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = block_size(bytes);
  void* result = nullptr;
  if (options_.mode == Mode::System) {
    result = std::aligned_alloc(kAlignment, size);
    if (!result) throw Error(fmt::format("allocator: cannot allocate {} bytes (aligned_alloc failed)", size));
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.misses++;
    stats_.allocated_bytes += static_cast<int64_t>(size);
    stats_.reserved_bytes += static_cast<int64_t>(size);
    note_peaks_locked();
  } else {
    std::lock_guard<std::mutex> lock(mutex_);
    // Best fit: the smallest free block of at least `size` bytes (lowest address among equals).
    Block probe{nullptr, size};
    auto it = free_blocks_.lower_bound(&probe);
    Block* b = nullptr;
    if (it != free_blocks_.end()) {
      b = *it;
      free_blocks_.erase(it);
      stats_.hits++;
    } else {
      const size_t segment = size < kSmallRequest ? kSmallSegment : round_up(size, kPage);
      // Hold at most peak-in-use + slack: give back wholly free segments before mapping more.
      const int64_t peak = std::max(high_water_bytes_, stats_.allocated_bytes + static_cast<int64_t>(size));
      trim_locked(peak + options_.slack_bytes - static_cast<int64_t>(segment));
      b = map_segment_locked(segment);
      stats_.misses++;
    }
    if (b->size - size >= kMinSplit) {  // the rest becomes a free block right after b
      Block* rest = new Block{b->ptr + size, b->size - size, false, b, b->next};
      if (b->next) b->next->prev = rest;
      b->next = rest;
      b->size = size;
      free_blocks_.insert(rest);
    }
    b->in_use = true;
    used_blocks_.emplace(b->ptr, b);
    SLEEPNET_UNPOISON(b->ptr, b->size);
    stats_.allocated_bytes += static_cast<int64_t>(b->size);
    note_peaks_locked();
    result = b->ptr;
  }
  if (options_.fill_nan) std::fill_n(static_cast<float*>(result), size / sizeof(float), std::numeric_limits<float>::quiet_NaN());
  return result;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  if (options_.mode == Mode::System) {
    std::free(ptr);
    const size_t size = block_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.allocated_bytes -= static_cast<int64_t>(size);
    stats_.reserved_bytes -= static_cast<int64_t>(size);
    stats_.cached_bytes = 0;
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = used_blocks_.find(ptr);
  if (found == used_blocks_.end() || found->second->size < bytes) {
    std::fprintf(stderr, "sleepnet allocator: deallocate(%p, %zu): %s\n", ptr, bytes,
                 found == used_blocks_.end() ? "not a block in use (double free?)" : "larger than the block");
    std::abort();
  }
  Block* b = found->second;
  used_blocks_.erase(found);
  stats_.allocated_bytes -= static_cast<int64_t>(b->size);
  b->in_use = false;
  SLEEPNET_POISON(b->ptr, b->size);
  // Merge with free neighbours (they leave the size-ordered set while their size changes).
  if (Block* n = b->next; n && !n->in_use) {
    free_blocks_.erase(n);
    b->size += n->size;
    b->next = n->next;
    if (n->next) n->next->prev = b;
    delete n;
  }
  if (Block* p = b->prev; p && !p->in_use) {
    free_blocks_.erase(p);
    p->size += b->size;
    p->next = b->next;
    if (b->next) b->next->prev = p;
    delete b;
    b = p;
  }
  free_blocks_.insert(b);
  stats_.cached_bytes = stats_.reserved_bytes - stats_.allocated_bytes;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  trim_locked(0);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

// ---------------------------------------------------------------- the process-wide allocator

CachingAllocator::Options allocator_options_from_env(const char* allocator, const char* slack_mb,
                                                     const char* fill, bool asan) {
  CachingAllocator::Options o;
  o.mode = asan ? CachingAllocator::Mode::System : CachingAllocator::Mode::Caching;
  if (allocator && *allocator) {
    const std::string_view v(allocator);
    if (v == "system")
      o.mode = CachingAllocator::Mode::System;
    else if (v == "caching")
      o.mode = CachingAllocator::Mode::Caching;
    else
      throw Error(fmt::format("SLEEPNET_ALLOCATOR: expected 'caching' or 'system', got '{}'", v));
  }
  if (slack_mb && *slack_mb) {
    char* end = nullptr;
    const double mb = std::strtod(slack_mb, &end);
    if (*end != '\0' || !std::isfinite(mb) || mb < 0 || mb > 1e9)
      throw Error(fmt::format("SLEEPNET_ALLOCATOR_SLACK_MB: expected a number of MiB >= 0, got '{}'", slack_mb));
    o.slack_bytes = static_cast<int64_t>(mb * 1024 * 1024);
  }
  if (fill && *fill) {
    if (std::string_view(fill) != "nan")
      throw Error(fmt::format("SLEEPNET_ALLOCATOR_FILL: expected 'nan' (or unset), got '{}'", fill));
    o.fill_nan = true;
  }
  return o;
}

std::string allocator_stats_str(const AllocatorStats& s) {
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1 << 20); };
  return fmt::format(
      "allocated={:.1f}MiB reserved={:.1f}MiB cached={:.1f}MiB peak_allocated={:.1f}MiB peak_reserved={:.1f}MiB "
      "segments={} hits={} misses={} releases={}",
      mib(s.allocated_bytes), mib(s.reserved_bytes), mib(s.cached_bytes), mib(s.peak_allocated_bytes),
      mib(s.peak_reserved_bytes), s.segments, s.hits, s.misses, s.releases);
}

namespace {
CachingAllocator* make_storage_allocator() {
#ifdef SLEEPNET_ASAN
  constexpr bool asan = true;
#else
  constexpr bool asan = false;
#endif
  auto* a = new CachingAllocator(allocator_options_from_env(std::getenv("SLEEPNET_ALLOCATOR"),
                                                            std::getenv("SLEEPNET_ALLOCATOR_SLACK_MB"),
                                                            std::getenv("SLEEPNET_ALLOCATOR_FILL"), asan));
  const char* print = std::getenv("SLEEPNET_ALLOCATOR_STATS");
  if (print && *print && std::string_view(print) != "0")
    std::atexit([] {
      std::fprintf(stderr, "sleepnet allocator (%s): %s\n",
                   storage_allocator().mode() == CachingAllocator::Mode::System ? "system" : "caching",
                   allocator_stats_str(allocator_stats()).c_str());
    });
  return a;
}
}  // namespace

CachingAllocator& storage_allocator() {
  static CachingAllocator* const allocator = make_storage_allocator();  // never destroyed
  return *allocator;
}

void empty_cache() { storage_allocator().empty_cache(); }

AllocatorStats allocator_stats() { return storage_allocator().stats(); }

}  // namespace sleepnet
