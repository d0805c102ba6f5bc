// CPU feature detection, the persistent worker pool (spin, then block on a condition variable),
// and per-thread aligned scratch buffers for GEMM packing.
#include "common.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {

static Cpu detect() {
  Cpu c;
#if FRUGAL_HAVE_X86_KERNELS
  __builtin_cpu_init();
  c.avx2 = __builtin_cpu_supports("avx2");
  c.fma = __builtin_cpu_supports("fma");
  c.avx512f = __builtin_cpu_supports("avx512f");
  c.avx512bw = __builtin_cpu_supports("avx512bw");
  c.avx512vl = __builtin_cpu_supports("avx512vl");
  c.avx512dq = __builtin_cpu_supports("avx512dq");
  // avx512_bf16: CPUID leaf 7 sub-leaf 1, EAX bit 5 (GCC 12's __builtin_cpu_supports knows it too).
  unsigned a = 0, b = 0, cc = 0, d = 0;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(cc), "=d"(d) : "a"(7), "c"(1));
  c.avx512bf16 = (a >> 5) & 1;
  if (c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq && c.fma) c.isa = Isa::Avx512;
  else if (c.avx2 && c.fma) c.isa = Isa::Avx2;
  c.bf16 = c.isa == Isa::Avx512 && c.avx512bf16;
#endif
  return c;
}

static Cpu g_cpu = [] {
  Cpu c = detect();
  if (const char* cap = std::getenv("FRUGAL_NATIVE_ISA")) {
    std::string s(cap);
    if (s == "portable") { c.isa = Isa::Portable; c.bf16 = false; }
    else if (s == "avx2" && c.isa == Isa::Avx512) { c.isa = Isa::Avx2; c.bf16 = false; }
  }
  return c;
}();

const Cpu& cpu() { return g_cpu; }

bool capIsa(const std::string& name) {
  Cpu d = detect();
  if (name == "portable") { g_cpu.isa = Isa::Portable; g_cpu.bf16 = false; return true; }
  if (name == "avx2") { g_cpu.isa = d.isa == Isa::Portable ? Isa::Portable : Isa::Avx2; g_cpu.bf16 = false; return true; }
  if (name == "avx512" || name == "auto") { g_cpu = d; return true; }
  return false;
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

// ---- thread pool ----
namespace {
struct Pool {
  std::vector<std::thread> workers;
  std::atomic<uint64_t> gen{0};
  std::atomic<int> pending{0};
  std::atomic<int> sleepers{0};
  std::atomic<bool> quit{false};
  const std::function<void(int)>* job = nullptr;
  int jobN = 0;
  std::mutex mu;
  std::condition_variable cv;

  // `seen` is the generation at creation: a job published before this thread first runs still counts.
  void loop(int tid, uint64_t seen) {
    for (;;) {
      // Spin ~100 us for the next job (back-to-back kernels), then sleep. (1 ms was slower: the
      // spinning worker takes the core V8's GC and compiler threads need.)
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (gen.load(std::memory_order_acquire) == seen && !quit.load(std::memory_order_relaxed)) {
#if FRUGAL_X86
        _mm_pause();
#endif
        if (++spins % 256 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(100)) {
          std::unique_lock<std::mutex> lk(mu);
          sleepers.fetch_add(1);
          while (gen.load() == seen && !quit.load()) cv.wait(lk);
          sleepers.fetch_sub(1);
          break;
        }
      }
      if (quit.load()) return;
      seen = gen.load(std::memory_order_acquire);
      if (tid < jobN) (*job)(tid);
      pending.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu);
      quit.store(true);
    }
    cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
    quit.store(false);
  }

  void resize(int n) {
    if (n < 1) n = 1;
    if ((int)workers.size() == n - 1) return;
    stop();
    const uint64_t g0 = gen.load();
    for (int t = 1; t < n; t++) workers.emplace_back([this, t, g0] { loop(t, g0); });
  }

  void run(int n, const std::function<void(int)>& fn) {
    if (n <= 1 || workers.empty()) { fn(0); return; }
    job = &fn;
    jobN = n;
    pending.store((int)workers.size(), std::memory_order_release);
    gen.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lk(mu);
      cv.notify_all();
    }
    fn(0);
    while (pending.load(std::memory_order_acquire) != 0) {
#if FRUGAL_X86
      _mm_pause();
#else
      std::this_thread::yield();
#endif
    }
  }
  ~Pool() { stop(); }
};
Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers must not outlive a static destructor order
  return *p;
}
}  // namespace

void poolSetThreads(int n) { pool().resize(n); }
int poolThreads() { return (int)pool().workers.size() + 1; }
void poolRun(int n, const std::function<void(int)>& fn) {
  if (n > poolThreads()) n = poolThreads();
  // One caller at a time owns the workers; a concurrent caller (another JS thread) runs its shares inline.
  static std::mutex owner;
  std::unique_lock<std::mutex> lk(owner, std::try_to_lock);
  if (!lk.owns_lock()) { for (int t = 0; t < n; t++) fn(t); return; }
  pool().run(n, fn);
}

void* threadScratch(int slot, size_t bytes) {
  struct Buf { void* p = nullptr; size_t n = 0; ~Buf() { std::free(p); } };
  thread_local Buf bufs[4];
  Buf& b = bufs[slot & 3];
  if (b.n < bytes) {
    std::free(b.p);
    size_t n = (bytes + 4095) & ~size_t(4095);
    b.p = std::aligned_alloc(64, n);
    b.n = n;
  }
  return b.p;
}

}  // namespace frugal
