// A size-keyed cache of large CPU tensor blocks, installed as c10's CPU allocator
// (`TLAB_HEAP=pool`; see src/heap/mod.rs for why and for the figures).
//
// A forward pass allocates the same sizes in the same order every batch. Blocks of
// `min_block` bytes and more get their own anonymous mapping and go back to a free list
// of their size when freed, so the next batch finds them already faulted in (a request
// takes a free block of its size, else the smallest free one up to twice as large). Each
// mapping is separate, so nothing fragments; and the pool never maps more than twice the
// peak of its live bytes: a miss first unmaps cached blocks of the least recently used
// sizes. Twice, because a pass's live set changes sizes as it goes (8+3+5 MiB, later
// 8+2+6): the blocks of all its sizes add up to more than its peak.
// Smaller blocks go to c10's own alloc_cpu/free_cpu. Every block has one deleter, as
// oneDNN's scratchpads (c10's raw_allocate/raw_deallocate) require.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

// The bound on mapped bytes, in peaks of live bytes (see the top).
constexpr size_t kSlack = 2;
// Holds the mapping's length in front of the data (0: from alloc_cpu) and keeps c10's
// 64-byte alignment.
constexpr size_t kHeader = 64;
constexpr size_t kPage = 4096;
constexpr size_t kHugePage = 2u << 20;

struct FreeList {
  std::vector<char*> blocks;
  uint64_t last_use = 0;
};

struct Pool final : at::Allocator {
  std::mutex mu;
  std::unordered_map<size_t, FreeList> free;
  size_t live = 0, cached = 0, peak = 0;
  uint64_t tick = 0, hits = 0, misses = 0, unmapped = 0;
  size_t min_block = 1u << 20;
  bool huge_pages = false;

  at::DataPtr allocate(size_t n) override;
  at::DeleterFnPtr raw_deleter() const override;
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
  // Returns a block of at least `len` bytes; sets `len` to the block's length.
  char* take(size_t& len);
  void give_back(char* base);
  void trim();
};

Pool& pool() {
  // Never destroyed: tensors may be freed during exit, after statics' destructors.
  static Pool* p = new Pool();
  return *p;
}

void unmap(const std::vector<std::pair<char*, size_t>>& blocks) {
  for (auto& [base, len] : blocks) {
    munmap(base, len);
  }
}

void release(void* data) {
  char* base = static_cast<char*>(data) - kHeader;
  if (*reinterpret_cast<size_t*>(base) == 0) {
    c10::free_cpu(base);
  } else {
    pool().give_back(base);
  }
}

at::DeleterFnPtr Pool::raw_deleter() const {
  return &release;
}

at::DataPtr Pool::allocate(size_t n) {
  char* base;
  size_t len = 0;
  if (n + kHeader < min_block) {
    base = static_cast<char*>(c10::alloc_cpu(n + kHeader));
  } else {
    len = (n + kHeader + kPage - 1) / kPage * kPage;
    base = take(len);
  }
  *reinterpret_cast<size_t*>(base) = len;
  char* data = base + kHeader;
  return {data, data, &release, at::Device(at::DeviceType::CPU)};
}

char* Pool::take(size_t& len) {
  std::vector<std::pair<char*, size_t>> evicted;
  bool huge;
  {
    std::lock_guard<std::mutex> lock(mu);
    ++tick;
    // A free block of this size, else the smallest free one up to twice as large: a
    // ResNet50 pass (batch 32, 200x200) then maps 372 MB of blocks for later passes, not 533.
    auto it = free.find(len);
    if (it == free.end() || it->second.blocks.empty()) {
      it = free.end();
      for (auto f = free.begin(); f != free.end(); ++f) {
        if (!f->second.blocks.empty() && f->first > len && f->first <= 2 * len &&
            (it == free.end() || f->first < it->first)) {
          it = f;
        }
      }
    }
    if (it != free.end()) {
      char* base = it->second.blocks.back();
      it->second.blocks.pop_back();
      it->second.last_use = tick;
      len = it->first;
      cached -= len;
      live += len;
      peak = live > peak ? live : peak;
      ++hits;
      return base;
    }
    ++misses;
    live += len;
    peak = live > peak ? live : peak;
    // Stay within the bound: drop cached blocks, least recently used sizes first.
    while (cached > 0 && live + cached > kSlack * peak) {
      auto victim = free.end();
      for (auto f = free.begin(); f != free.end(); ++f) {
        if (!f->second.blocks.empty() && (victim == free.end() || f->second.last_use < victim->second.last_use)) {
          victim = f;
        }
      }
      evicted.emplace_back(victim->second.blocks.back(), victim->first);
      victim->second.blocks.pop_back();
      cached -= victim->first;
      ++unmapped;
      if (victim->second.blocks.empty()) {
        free.erase(victim);
      }
    }
    huge = huge_pages;
  }
  unmap(evicted);
  void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    std::lock_guard<std::mutex> lock(mu);
    live -= len;
    TORCH_CHECK_WITH(OutOfMemoryError, false, "tlab heap pool: cannot map ", len, " bytes");
  }
  if (huge && len >= kHugePage) {
    madvise(base, len, MADV_HUGEPAGE);
  }
  return static_cast<char*>(base);
}

void Pool::give_back(char* base) {
  const size_t len = *reinterpret_cast<size_t*>(base);
  std::lock_guard<std::mutex> lock(mu);
  live -= len;
  cached += len;
  FreeList& list = free[len];
  list.blocks.push_back(base);
  list.last_use = ++tick;
}

void Pool::trim() {
  std::vector<std::pair<char*, size_t>> all;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [len, list] : free) {
      for (char* base : list.blocks) {
        all.emplace_back(base, len);
      }
    }
    unmapped += all.size();
    free.clear();
    cached = 0;
    // The next job's own peak bounds the cache from here.
    peak = live;
  }
  unmap(all);
}

// Above c10's own registration (priority 0), so either allocator can be put back.
constexpr uint8_t kPriority = 1;

}  // namespace

extern "C" {

// Installs the pool as libtorch's CPU allocator (`on`), or puts c10's default back and
// unmaps the cache. Blocks still live go back to whichever allocator made them.
void tlab_pool_install(int on, size_t min_block, int huge_pages) {
  Pool& p = pool();
  if (on) {
    {
      std::lock_guard<std::mutex> lock(p.mu);
      p.min_block = min_block;
      p.huge_pages = huge_pages != 0;
    }
    c10::SetCPUAllocator(&p, kPriority);
  } else {
    c10::SetCPUAllocator(c10::GetDefaultCPUAllocator(), kPriority);
    p.trim();
  }
}

// Unmaps the cached blocks; the pool stays installed.
void tlab_pool_trim() {
  pool().trim();
}

// live, cached and peak bytes; hits, misses and blocks unmapped.
void tlab_pool_stats(uint64_t out[6]) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  out[0] = p.live;
  out[1] = p.cached;
  out[2] = p.peak;
  out[3] = p.hits;
  out[4] = p.misses;
  out[5] = p.unmapped;
}

}  // extern "C"
