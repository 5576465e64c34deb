// tensor/allocator.h: the caching allocator behind every tensor's Storage.
//
// Why: a training step allocates the same tensors, of the same sizes, every step (activations in
// the forward pass, gradients in the backward pass) and frees them all by the end of the step.
// glibc serves large blocks with mmap and gives them back with munmap, so without a cache every
// step page-faults its activations in again: 8-10 % of the CPU time of a MobileNetV2 step, ~20 % of
// an inference from a cold heap (bench/README.md, "Where the time goes").
//
// How (PyTorch's CUDA caching allocator, cut to what a CPU needs):
//   - memory comes from the system in SEGMENTS (mmap): a request of 1 MiB or more gets a segment
//     of its own size (rounded up to a 4 KiB page), smaller requests share 2 MiB segments;
//   - a segment is cut into BLOCKS, 64-byte multiples. allocate() takes the smallest free block that
//     is large enough (best fit) and splits off what it does not need as a new free block;
//     deallocate() marks the block free and merges it with free neighbours in its segment. Nothing
//     goes back to the system there, so the next training step finds its memory already mapped
//     (a "hit"); only a request that no free block fits maps a new segment (a "miss");
//   - bounded: before mapping a new segment, wholly free segments are given back (largest first)
//     while what we hold would exceed the peak bytes in use so far plus a slack (16 MiB, or
//     SLEEPNET_ALLOCATOR_SLACK_MB), so a process holds about what it needs at its peak and no more.
//     A failed mmap gives back every wholly free segment and tries again. empty_cache() gives back
//     every wholly free segment (e.g. after training, before a long inference-only phase).
//   - one mutex: allocations are per tensor, not per element, so it is never held for long.
//
// Why not free lists of blocks by size class (exact size, or a coarse class)? Measured by replaying
// the allocation traces of bench/e2e_main (MobileNetV2 training, issue 6): memory freed in one
// class cannot serve another, so keeping every step's blocks needs ~43 % more memory than the peak
// in use (+70 MiB at config a, +190 MiB at b), coarse classes do not help, and bounding that cache
// brings most page faults back. Splitting and merging serve the same steps from at most ~16 MiB
// over the peak in use, with no new mappings after the first steps.
//
// Blocks are 64-byte aligned (a cache line; what the kernels' vector loads like). Reused memory is
// NOT zero: a fresh Tensor::empty() holds garbage, as with malloc (zeros() and friends fill).
//
// Environment, read once, when the first tensor is allocated:
//   SLEEPNET_ALLOCATOR=system       plain std::aligned_alloc / std::free, no cache (for comparisons,
//                                   and for memory checkers such as valgrind)
//   SLEEPNET_ALLOCATOR=caching      the cache (the default, except under AddressSanitizer)
//   SLEEPNET_ALLOCATOR_SLACK_MB=N   the cache may hold N MiB beyond the peak in use (default 16)
//   SLEEPNET_ALLOCATOR_FILL=nan     fill every allocated block with NaN: code that wrongly relies
//                                   on fresh storage being zero shows up as NaN (what PyTorch's
//                                   fill_uninitialized_memory does in its deterministic mode)
//   SLEEPNET_ALLOCATOR_STATS=1      print the stats to stderr when the program exits
//
// AddressSanitizer: a cache hides use-after-free bugs (a freed block stays mapped and is handed out
// again), so ASan builds default to the system allocator, where ASan sees every free. When the
// cache is chosen explicitly there (tests/allocator_test.cpp does), free blocks are poisoned
// (ASAN_POISON_MEMORY_REGION) until they are handed out again.
//
// Stats mirror torch.cuda.memory_stats(): bytes in use ("allocated"), held from the system
// ("reserved"), their peaks, and hit/miss counts. tests/allocator_test.cpp shows the use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

namespace sleepnet {

struct AllocatorStats {
  int64_t allocated_bytes = 0;       // blocks handed out and not yet freed (block sizes)
  int64_t reserved_bytes = 0;        // segments held from the system (in use + cached)
  int64_t cached_bytes = 0;          // reserved - allocated: free blocks kept for reuse
  int64_t peak_allocated_bytes = 0;  // peak of allocated_bytes
  int64_t peak_reserved_bytes = 0;   // peak of reserved_bytes
  int64_t segments = 0;              // segments held now
  int64_t hits = 0;                  // allocations served from a held segment
  int64_t misses = 0;                // allocations that mapped a new segment (system mode: all)
  int64_t releases = 0;              // segments given back to the system
};

class CachingAllocator {
 public:
  enum class Mode { Caching, System };
  struct Options {
    Mode mode = Mode::Caching;
    // Hold at most (peak bytes in use so far + slack) from the system, as far as wholly free
    // segments can be given back.
    int64_t slack_bytes = int64_t(16) << 20;
    bool fill_nan = false;  // fill every allocated block with NaN (debugging aid, see above)
  };
  static constexpr size_t kAlignment = 64;           // every block starts on a cache line
  static constexpr size_t kSmallRequest = 1 << 20;   // below this, requests share segments ...
  static constexpr size_t kSmallSegment = 2 << 20;   // ... of this size
  static constexpr size_t kPage = 4096;              // large segments are rounded up to pages
  static constexpr size_t kMinSplit = 512;           // smaller leftovers stay with the block

  explicit CachingAllocator(Options options);
  // Gives back every free segment. Blocks still in use are left mapped (and must not be freed
  // after this); the process-wide allocator is never destroyed.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // At least `bytes` bytes (0 is fine), 64-byte aligned. Throws sleepnet::Error when the system
  // cannot provide them even after the cache is emptied.
  void* allocate(size_t bytes);
  // Frees what allocate(bytes) returned; `bytes` must be the same. nullptr is ignored. A pointer
  // this allocator did not hand out aborts the program with a message (a double free, or
  // memory from elsewhere: memory corruption, not a recoverable error).
  void deallocate(void* ptr, size_t bytes);
  void empty_cache();  // every wholly free segment back to the system
  AllocatorStats stats() const;
  void reset_peak_stats();  // peaks := current values (the slack rule keeps its own peak)
  Mode mode() const { return options_.mode; }
  const Options& options() const { return options_; }

  // The block size a request of `bytes` needs: rounded up to 64 bytes, at least 64.
  static size_t block_size(size_t bytes);

 private:
  // A piece of a segment, free or in use. prev/next are its neighbours in the same segment, in
  // address order (nullptr at the segment's ends), so a block with neither is a whole segment.
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    bool in_use = false;
    Block* prev = nullptr;
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : std::less<const char*>()(a->ptr, b->ptr);
    }
  };

  Block* map_segment_locked(size_t size);     // a new segment as one block (throws on failure)
  void release_segment_locked(Block* block);  // a wholly free segment back to the system
  void trim_locked(int64_t limit);            // release free segments while reserved > limit
  void note_peaks_locked();

  Options options_;
  mutable std::mutex mutex_;
  std::set<Block*, BySizeThenAddress> free_blocks_;  // every free block, smallest first
  std::unordered_map<void*, Block*> used_blocks_;     // block start -> block, for blocks in use
  int64_t high_water_bytes_ = 0;                      // peak allocated_bytes, for the slack rule
  AllocatorStats stats_;
};

// The process-wide allocator every Storage uses, configured from the environment on first use
// (never destroyed, so tensors in static objects can still be freed at exit).
CachingAllocator& storage_allocator();
// Shorthands for storage_allocator().empty_cache() / .stats(), named as in PyTorch.
void empty_cache();
AllocatorStats allocator_stats();
std::string allocator_stats_str(const AllocatorStats& s);  // one line, sizes in MiB

// Parses the environment variables above (nullptr = unset) into options. Throws sleepnet::Error
// naming the variable and the accepted values for anything else. `asan` selects the default mode.
CachingAllocator::Options allocator_options_from_env(const char* allocator, const char* slack_mb,
                                                     const char* fill, bool asan);

}  // namespace sleepnet
