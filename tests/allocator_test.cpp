// allocator_test.cpp: the caching allocator behind Storage (tensor/allocator.h): reuse and its
// stats, splitting and merging of blocks, alignment, no two live blocks overlapping (also from
// several threads at once), empty_cache, the slack bound, the system fallback and the environment
// switches. Each test uses its own CachingAllocator, so the results do not depend on what the
// process-wide one holds (except the tests named Storage*, which go through Tensor).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "tensor/allocator.h"
#include "tensor/tensor.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

using namespace sleepnet;

namespace {
using Mode = CachingAllocator::Mode;
constexpr int64_t MiB = int64_t(1) << 20;

CachingAllocator::Options caching(int64_t slack_mib = 16) {
  CachingAllocator::Options o;
  o.mode = Mode::Caching;
  o.slack_bytes = slack_mib * MiB;
  return o;
}

bool aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

// A live allocation filled with a pattern derived from its id, to detect overlapping blocks.
struct Live {
  unsigned char* p;
  size_t bytes;
  unsigned char tag;
};
void stamp(const Live& l) { std::memset(l.p, l.tag, l.bytes); }
bool intact(const Live& l) {  // every byte equals the first, and the first is the tag
  return l.bytes == 0 || (l.p[0] == l.tag && std::memcmp(l.p, l.p + 1, l.bytes - 1) == 0);
}

// Deterministic pseudo-random sizes: mostly small, some over the 1 MiB large-request line.
uint64_t next(uint64_t& s) {
  s = s * 6364136223846793005ULL + 1442695040888963407ULL;
  return s >> 33;
}
size_t random_size(uint64_t& s) {
  switch (next(s) % 4) {
    case 0: return next(s) % 200;                            // tiny (including 0)
    case 1: return next(s) % 60000;                          // small
    case 2: return next(s) % (3 * CachingAllocator::kSmallRequest);  // around the line
    default: return 64 * (1 + next(s) % 64);                 // exact 64-byte multiples
  }
}

// Allocates, checks and frees random blocks; every live block keeps its pattern until freed.
void churn(CachingAllocator& a, uint64_t seed, int rounds) {
  std::vector<Live> live;
  for (int r = 0; r < rounds; ++r) {
    if (live.empty() || next(seed) % 3 != 0) {
      const size_t n = random_size(seed);
      auto* p = static_cast<unsigned char*>(a.allocate(n));
      ASSERT_TRUE(aligned64(p));
      live.push_back({p, n, static_cast<unsigned char>(next(seed))});
      stamp(live.back());
    } else {
      const size_t i = next(seed) % live.size();
      ASSERT_TRUE(intact(live[i])) << "a live block was overwritten: blocks overlap";
      a.deallocate(live[i].p, live[i].bytes);
      live[i] = live.back();
      live.pop_back();
    }
  }
  for (const Live& l : live) {
    ASSERT_TRUE(intact(l)) << "a live block was overwritten: blocks overlap";
    a.deallocate(l.p, l.bytes);
  }
}
}  // namespace

TEST(Allocator, BlockSizeIsRoundedUpTo64Bytes) {
  EXPECT_EQ(CachingAllocator::block_size(0), 64u);
  EXPECT_EQ(CachingAllocator::block_size(1), 64u);
  EXPECT_EQ(CachingAllocator::block_size(64), 64u);
  EXPECT_EQ(CachingAllocator::block_size(65), 128u);
  EXPECT_EQ(CachingAllocator::block_size(4000), 4032u);
  EXPECT_THROW(CachingAllocator::block_size(SIZE_MAX), Error);
}

TEST(Allocator, FreedBlockIsReusedAndCountedAsHit) {
  CachingAllocator a(caching());
  void* p = a.allocate(1000);
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.hits, 0);
  EXPECT_EQ(s.allocated_bytes, 1024);
  EXPECT_EQ(s.segments, 1);
  EXPECT_EQ(s.reserved_bytes, static_cast<int64_t>(CachingAllocator::kSmallSegment));
  a.deallocate(p, 1000);
  EXPECT_EQ(a.stats().allocated_bytes, 0);
  EXPECT_EQ(a.stats().cached_bytes, static_cast<int64_t>(CachingAllocator::kSmallSegment));

  void* q = a.allocate(1000);  // same size again: same memory, no new segment
  EXPECT_EQ(q, p);
  s = a.stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.segments, 1);
  a.deallocate(q, 1000);

  // A training step's pattern: the same sizes every step. After the first step, all hits.
  const std::vector<size_t> step = {3 * MiB, 5000, 2 * MiB + 7, 64, 3 * MiB};
  for (int it = 0; it < 4; ++it) {
    std::vector<void*> ptrs;
    for (size_t n : step) ptrs.push_back(a.allocate(n));
    for (size_t i = 0; i < step.size(); ++i) a.deallocate(ptrs[i], step[i]);
    if (it == 0) s = a.stats();
  }
  EXPECT_EQ(a.stats().misses, s.misses) << "steps after the first mapped new memory";
  EXPECT_EQ(a.stats().hits, s.hits + 3 * static_cast<int64_t>(step.size()));
  EXPECT_EQ(a.stats().allocated_bytes, 0);
}

TEST(Allocator, BlocksAreSplitAndMergedAgain) {
  CachingAllocator a(caching());
  // Three small blocks come from one shared segment, one after the other.
  char* p1 = static_cast<char*>(a.allocate(1000));
  char* p2 = static_cast<char*>(a.allocate(1000));
  char* p3 = static_cast<char*>(a.allocate(1000));
  EXPECT_EQ(a.stats().segments, 1);
  EXPECT_EQ(p2, p1 + 1024);
  EXPECT_EQ(p3, p2 + 1024);
  // Free the middle one: a 2000-byte request does not fit there, a 1024-byte one does.
  a.deallocate(p2, 1000);
  char* big = static_cast<char*>(a.allocate(2000));
  EXPECT_NE(big, p2);
  a.deallocate(big, 2000);
  EXPECT_EQ(a.allocate(1024), p2);
  a.deallocate(p2, 1024);
  // Free the neighbours too: the segment is one free block again, and serves a whole-segment request.
  a.deallocate(p1, 1000);
  a.deallocate(p3, 1000);
  EXPECT_EQ(a.allocate(CachingAllocator::kSmallSegment), p1);
  EXPECT_EQ(a.stats().segments, 1);
  EXPECT_EQ(a.stats().misses, 1);
  a.deallocate(p1, CachingAllocator::kSmallSegment);
}

TEST(Allocator, EveryBlockIs64ByteAligned) {
  for (Mode mode : {Mode::Caching, Mode::System}) {
    CachingAllocator::Options o = caching();
    o.mode = mode;
    CachingAllocator a(o);
    std::vector<std::pair<void*, size_t>> ptrs;
    for (size_t n : {size_t(0), size_t(1), size_t(4), size_t(63), size_t(65), size_t(1000), size_t(4097),
                     size_t(1 << 20), size_t(3 << 20) + 5}) {
      void* p = a.allocate(n);
      EXPECT_TRUE(aligned64(p)) << n << " bytes";
      std::memset(p, 0xab, n);  // the whole request is writable (ASan checks the bounds)
      ptrs.emplace_back(p, n);
    }
    for (auto [p, n] : ptrs) a.deallocate(p, n);
    EXPECT_EQ(a.stats().allocated_bytes, 0);
  }
}

TEST(Allocator, LiveBlocksNeverOverlap) {
  CachingAllocator a(caching());
  churn(a, 1, 3000);
  EXPECT_EQ(a.stats().allocated_bytes, 0);
  EXPECT_GT(a.stats().hits, 0);
}

TEST(Allocator, SeveralThreadsAllocateAndFreeConcurrently) {
  CachingAllocator a(caching());
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) threads.emplace_back([&a, t] { churn(a, 100 + t, 1000); });
  for (auto& th : threads) th.join();
  const AllocatorStats s = a.stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.cached_bytes, s.reserved_bytes);
  EXPECT_GT(s.hits + s.misses, 4 * 500);
  // Blocks freed by another thread than the one that allocated them.
  std::vector<void*> ptrs(64);
  for (auto& p : ptrs) p = a.allocate(3000);
  std::thread other([&] {
    for (void* p : ptrs) a.deallocate(p, 3000);
  });
  other.join();
  EXPECT_EQ(a.stats().allocated_bytes, 0);
}

TEST(Allocator, EmptyCacheGivesBackEveryFreeSegment) {
  CachingAllocator a(caching());
  void* big = a.allocate(4 * MiB);
  void* small = a.allocate(100);
  void* kept = a.allocate(5 * MiB);
  EXPECT_EQ(a.stats().segments, 3);
  a.deallocate(big, 4 * MiB);
  a.deallocate(small, 100);
  EXPECT_EQ(a.stats().reserved_bytes, int64_t(5 + 4 + 2) * MiB);
  a.empty_cache();
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.segments, 1);  // the one still in use stays
  EXPECT_EQ(s.releases, 2);
  EXPECT_EQ(s.reserved_bytes, 5 * MiB);
  EXPECT_EQ(s.cached_bytes, 0);
  a.deallocate(kept, 5 * MiB);
  a.empty_cache();
  EXPECT_EQ(a.stats().reserved_bytes, 0);
  EXPECT_EQ(a.stats().segments, 0);
  EXPECT_EQ(a.stats().peak_reserved_bytes, int64_t(5 + 4 + 2) * MiB);
  a.reset_peak_stats();
  EXPECT_EQ(a.stats().peak_reserved_bytes, 0);
}

TEST(Allocator, CacheStaysWithinPeakInUsePlusSlack) {
  // Slack 0: an 8 MiB free segment cannot serve 16 MiB; before mapping 16 MiB, the peak in use
  // becomes 16 MiB, so holding 8 + 16 would exceed it: the 8 MiB segment goes back first.
  CachingAllocator tight(caching(0));
  tight.deallocate(tight.allocate(8 * MiB), 8 * MiB);
  void* p = tight.allocate(16 * MiB);
  EXPECT_EQ(tight.stats().releases, 1);
  EXPECT_EQ(tight.stats().reserved_bytes, 16 * MiB);
  tight.deallocate(p, 16 * MiB);
  // With 16 MiB of slack, 8 + 16 <= 16 + 16: the 8 MiB segment is kept for reuse.
  CachingAllocator loose(caching(16));
  loose.deallocate(loose.allocate(8 * MiB), 8 * MiB);
  p = loose.allocate(16 * MiB);
  EXPECT_EQ(loose.stats().releases, 0);
  EXPECT_EQ(loose.stats().reserved_bytes, 24 * MiB);
  loose.deallocate(p, 16 * MiB);
  // Random sizes with no slack: correct blocks, and once nothing is in use, nothing is held after
  // empty_cache (every segment merged back into one free block).
  CachingAllocator a(caching(0));
  churn(a, 7, 2000);
  EXPECT_GT(a.stats().releases, 0);
  a.empty_cache();
  EXPECT_EQ(a.stats().reserved_bytes, 0) << allocator_stats_str(a.stats());
  EXPECT_EQ(a.stats().segments, 0);
}

TEST(Allocator, SystemModeCachesNothing) {
  CachingAllocator::Options o;
  o.mode = Mode::System;
  CachingAllocator a(o);
  EXPECT_EQ(a.mode(), Mode::System);
  for (int i = 0; i < 3; ++i) {
    void* p = a.allocate(3 * MiB);
    EXPECT_TRUE(aligned64(p));
    EXPECT_EQ(a.stats().allocated_bytes, 3 * MiB);
    a.deallocate(p, 3 * MiB);
  }
  const AllocatorStats s = a.stats();
  EXPECT_EQ(s.hits, 0);
  EXPECT_EQ(s.misses, 3);
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.cached_bytes, 0);
  EXPECT_EQ(s.peak_allocated_bytes, 3 * MiB);
  churn(a, 3, 500);
  EXPECT_EQ(a.stats().allocated_bytes, 0);
}

TEST(Allocator, FillNanMakesFreshStorageNan) {
  CachingAllocator::Options o = caching();
  o.fill_nan = true;
  CachingAllocator a(o);
  auto* f = static_cast<float*>(a.allocate(100 * sizeof(float)));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(std::isnan(f[i])) << i;
  for (int i = 0; i < 100; ++i) f[i] = 0.f;
  a.deallocate(f, 100 * sizeof(float));
  f = static_cast<float*>(a.allocate(100 * sizeof(float)));  // reused: NaN again, not the old zeros
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(std::isnan(f[i])) << i;
  a.deallocate(f, 100 * sizeof(float));
}

TEST(Allocator, FreeingForeignPointerAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  CachingAllocator a(caching());
  void* p = a.allocate(64);
  a.deallocate(p, 64);
  EXPECT_DEATH(a.deallocate(p, 64), "not a block in use");
  float x = 0.f;
  EXPECT_DEATH(a.deallocate(&x, 4), "not a block in use");
}

#ifdef TEST_ASAN
TEST(Allocator, FreeBlocksArePoisonedUnderAsan) {
  CachingAllocator a(caching());
  auto* p = static_cast<char*>(a.allocate(256));
  EXPECT_FALSE(__asan_address_is_poisoned(p));
  EXPECT_FALSE(__asan_address_is_poisoned(p + 255));
  EXPECT_TRUE(__asan_address_is_poisoned(p + 256));  // the rest of the segment is free
  a.deallocate(p, 256);
  EXPECT_TRUE(__asan_address_is_poisoned(p));  // a use after free would be reported
  p = static_cast<char*>(a.allocate(256));
  EXPECT_FALSE(__asan_address_is_poisoned(p));
  a.deallocate(p, 256);
}
#endif

TEST(Allocator, EnvironmentSwitches) {
  using Opt = CachingAllocator::Options;
  EXPECT_EQ(allocator_options_from_env(nullptr, nullptr, nullptr, false).mode, Mode::Caching);
  EXPECT_EQ(allocator_options_from_env(nullptr, nullptr, nullptr, true).mode, Mode::System);  // ASan
  EXPECT_EQ(allocator_options_from_env("", nullptr, nullptr, false).mode, Mode::Caching);
  EXPECT_EQ(allocator_options_from_env("system", nullptr, nullptr, false).mode, Mode::System);
  EXPECT_EQ(allocator_options_from_env("caching", nullptr, nullptr, true).mode, Mode::Caching);
  const Opt o = allocator_options_from_env(nullptr, "32", "nan", false);
  EXPECT_EQ(o.slack_bytes, 32 * MiB);
  EXPECT_TRUE(o.fill_nan);
  EXPECT_EQ(allocator_options_from_env(nullptr, "0.5", nullptr, false).slack_bytes, MiB / 2);
  EXPECT_EQ(allocator_options_from_env(nullptr, nullptr, nullptr, false).slack_bytes, Opt{}.slack_bytes);
  EXPECT_FALSE(allocator_options_from_env(nullptr, nullptr, nullptr, false).fill_nan);
  auto message = [](const char* alloc, const char* slack, const char* fill) {
    try {
      allocator_options_from_env(alloc, slack, fill, false);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("malloc", nullptr, nullptr).find("SLEEPNET_ALLOCATOR: expected 'caching' or 'system'"),
            std::string::npos);
  EXPECT_NE(message(nullptr, "-1", nullptr).find("SLEEPNET_ALLOCATOR_SLACK_MB"), std::string::npos);
  EXPECT_NE(message(nullptr, "16MB", nullptr).find("SLEEPNET_ALLOCATOR_SLACK_MB"), std::string::npos);
  EXPECT_NE(message(nullptr, nullptr, "zero").find("SLEEPNET_ALLOCATOR_FILL"), std::string::npos);
}

TEST(Allocator, StorageUsesTheProcessAllocatorAsTheEnvironmentSays) {
  CachingAllocator& global = storage_allocator();
  const char* env = std::getenv("SLEEPNET_ALLOCATOR");
  if (env && std::string(env) == "system") {
    EXPECT_EQ(global.mode(), Mode::System);
  } else if (env && std::string(env) == "caching") {
    EXPECT_EQ(global.mode(), Mode::Caching);
  }
  const int64_t before = allocator_stats().allocated_bytes;
  {
    Tensor t = Tensor::empty({1000});  // 4000 bytes -> a 4032-byte block
    EXPECT_EQ(allocator_stats().allocated_bytes, before + 4032);
    EXPECT_TRUE(aligned64(t.data()));
  }
  EXPECT_EQ(allocator_stats().allocated_bytes, before);
}

TEST(Allocator, StorageZerosAreZeroOnReusedMemory) {
  // A block that held non-zero values comes back for the next tensor of that size: zeros() and
  // full() must still fill it.
  for (int i = 0; i < 3; ++i) Tensor::full({4096}, 7.f);
  Tensor z = Tensor::zeros({4096});
  for (float v : z.to_vector()) ASSERT_EQ(v, 0.f);
  empty_cache();  // shorthand reaches the process-wide allocator
  EXPECT_LE(allocator_stats().cached_bytes, allocator_stats().reserved_bytes);
}
