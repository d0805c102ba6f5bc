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
// How long an idle worker spins before sleeping on the condition variable. Waking a sleeping
// worker costs tens to hundreds of microseconds on a VM (the idle vCPU is halted), which is the
// whole duration of a mid-sized GEMM; (1 ms was measured slower: the spinning worker takes the
// core V8's GC and compiler threads need). FRUGAL_SPIN_US overrides it (0..100000).
static long spinMicros() {
  static const long us = [] {
    const char* e = std::getenv("FRUGAL_SPIN_US");
    long v = e ? std::atol(e) : 100;
    return v < 0 ? 0L : v > 100000 ? 100000L : v;
  }();
  return us;
}

struct Pool {
  std::vector<std::thread> workers;
  // Job generation, a seqlock: odd while the caller writes the job fields, even once published.
  std::atomic<uint64_t> gen{0};
  std::atomic<int> pending{0};
  std::atomic<int> sleepers{0};
  std::atomic<bool> quit{false};
  // Static jobs: every worker runs fn(tid) once and the caller waits for all (`pending`).
  std::atomic<const std::function<void(int)>*> job{nullptr};
  std::atomic<int> jobN{0};
  // Chunked jobs: threads take chunk indices from `next` until `nChunks`; a worker joins only by
  // claiming the job in `claim` (high bits = generation, bit 15 = closed, low 15 bits = workers in),
  // so the caller never waits for a worker that has not arrived.
  std::atomic<bool> chunked{false};
  std::atomic<const std::function<void(long, int)>*> cjob{nullptr};
  std::atomic<long> nChunks{0};
  std::atomic<long> next{0};
  std::atomic<uint64_t> claim{0};
  static constexpr uint64_t kClosed = 1u << 15, kCount = kClosed - 1;
  std::mutex mu;
  std::condition_variable cv;

  bool idle(uint64_t g, uint64_t seen) const { return g == seen || (g & 1); }

  // `seen` is the generation at creation: a job published before this thread first runs still counts.
  void loop(int tid, uint64_t seen) {
    for (;;) {
      // Spin for the next job (back-to-back kernels), then sleep (see spinMicros).
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (idle(gen.load(std::memory_order_acquire), seen) && !quit.load(std::memory_order_relaxed)) {
#if FRUGAL_X86
        _mm_pause();
#endif
        if (++spins % 256 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(spinMicros())) {
          std::unique_lock<std::mutex> lk(mu);
          sleepers.fetch_add(1);
          while (idle(gen.load(), seen) && !quit.load()) cv.wait(lk);
          sleepers.fetch_sub(1);
          break;
        }
      }
      if (quit.load()) return;
      // Read the published job consistently (retry if the caller moved on meanwhile).
      const uint64_t g = gen.load(std::memory_order_acquire);
      if (g & 1) continue;
      const bool isChunked = chunked.load(std::memory_order_relaxed);
      const auto* sj = job.load(std::memory_order_relaxed);
      const int n = jobN.load(std::memory_order_relaxed);
      const auto* cj = cjob.load(std::memory_order_relaxed);
      const long count = nChunks.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (gen.load(std::memory_order_relaxed) != g) continue;
      seen = g;
      if (isChunked) {
        uint64_t c = claim.load(std::memory_order_acquire);
        bool in = false;
        while ((c >> 16) == (g & 0xFFFFFFFFFFFFull) && !(c & kClosed)) {
          if (claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) { in = true; break; }
        }
        if (in) {
          for (long i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) (*cj)(i, tid);
          claim.fetch_sub(1, std::memory_order_acq_rel);
        }
        continue;
      }
      if (tid < n) (*sj)(tid);
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

  // Publishes a job: gen odd, fields, gen even (release), wake sleepers. Returns the new generation.
  template <class Write>
  uint64_t publish(Write write) {
    gen.fetch_add(1, std::memory_order_acq_rel);
    write();
    const uint64_t g = gen.fetch_add(1, std::memory_order_seq_cst) + 1;
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lk(mu);
      cv.notify_all();
    }
    return g;
  }

  static void relax() {
#if FRUGAL_X86
    _mm_pause();
#else
    std::this_thread::yield();
#endif
  }

  // Waits until done(): spins briefly (a worker finishing its last chunk), then yields the core on
  // every check. On a loaded machine the worker being waited for may sit on this very core's run
  // queue; spinning out the caller's time slice would hold it off for milliseconds.
  template <class Done>
  static void waitFor(Done done) {
    for (int spins = 0; !done(); spins++) {
      if (spins < 4096) relax();
      else std::this_thread::yield();
    }
  }

  // Chunks 0..count-1 over the caller and whichever workers arrive in time: a worker that is
  // descheduled (another process, V8's GC threads) never holds the caller up.
  // Oversubscription guard (owner thread only). A worker preempted in the middle of its chunk
  // holds the caller for a scheduler time slice (milliseconds) — on a machine with more runnable
  // threads than cores that happens to most jobs and makes N threads slower than one. When 3 of
  // the last 8 chunked jobs stalled so, the next kSerialJobs jobs run on the caller alone, then
  // threads are tried again. An unloaded machine never stalls this long, so it never switches.
  static constexpr int kSerialJobs = 256;
  uint32_t stallBits = 0;
  int serialLeft = 0;
  // FRUGAL_POOL_GUARD=0 turns the guard off (benchmarks that must show whether it fired).
  const bool guardOn = [] { const char* e = std::getenv("FRUGAL_POOL_GUARD"); return !(e && e[0] == '0'); }();
  bool oversubscribed() {
    if (!guardOn) return false;
    if (serialLeft > 0) { serialLeft--; return true; }
    return false;
  }
  void noteStall(bool stalled) {
    stallBits = ((stallBits << 1) | (stalled ? 1u : 0u)) & 0xFFu;
    if (__builtin_popcount(stallBits) >= 3) { serialLeft = kSerialJobs; stallBits = 0; }
  }
  void noteWait(std::chrono::steady_clock::duration busy, std::chrono::steady_clock::duration waited) {
    noteStall(waited > std::chrono::milliseconds(1) && waited > busy / 2);
  }

  void runChunks(long count, const std::function<void(long, int)>& fn) {
    if (count <= 1 || workers.empty() || oversubscribed()) { for (long i = 0; i < count; i++) fn(i, 0); return; }
    const auto t0 = std::chrono::steady_clock::now();
    publish([&] {
      chunked.store(true, std::memory_order_relaxed);
      cjob.store(&fn, std::memory_order_relaxed);
      nChunks.store(count, std::memory_order_relaxed);
      next.store(0, std::memory_order_relaxed);
      claim.store(((gen.load(std::memory_order_relaxed) + 1) & 0xFFFFFFFFFFFFull) << 16, std::memory_order_relaxed);
    });
    for (long i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) fn(i, 0);
    claim.fetch_or(kClosed, std::memory_order_acq_rel);
    const auto t1 = std::chrono::steady_clock::now();
    waitFor([&] { return (claim.load(std::memory_order_acquire) & kCount) == 0; });
    noteWait(t1 - t0, std::chrono::steady_clock::now() - t1);
  }

  void run(int n, const std::function<void(int)>& fn) {
    if (n <= 1 || workers.empty()) { fn(0); return; }
    publish([&] {
      chunked.store(false, std::memory_order_relaxed);
      job.store(&fn, std::memory_order_relaxed);
      jobN.store(n, std::memory_order_relaxed);
      pending.store((int)workers.size(), std::memory_order_relaxed);
    });
    fn(0);
    waitFor([&] { return pending.load(std::memory_order_acquire) == 0; });
  }
  ~Pool() { stop(); }
};
// One caller at a time owns the workers; a concurrent caller (another JS thread) runs inline.
std::mutex g_owner;
Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers must not outlive a static destructor order
  return *p;
}
}  // namespace

void poolSetThreads(int n) { pool().resize(n); }
int poolThreads() { return (int)pool().workers.size() + 1; }
void poolRun(int n, const std::function<void(int)>& fn) {
  if (n > poolThreads()) n = poolThreads();
  std::unique_lock<std::mutex> lk(g_owner, std::try_to_lock);
  if (!lk.owns_lock()) { for (int t = 0; t < n; t++) fn(t); return; }
  pool().run(n, fn);
}

void poolRunChunks(long count, const std::function<void(long, int)>& fn) {
  std::unique_lock<std::mutex> lk(g_owner, std::try_to_lock);
  if (!lk.owns_lock() || poolThreads() <= 1) { for (long i = 0; i < count; i++) fn(i, 0); return; }
  pool().runChunks(count, fn);
}

bool poolTeam(int n, const std::function<void(int)>& fn) {
  if (n < 2 || n > poolThreads()) return false;
  std::unique_lock<std::mutex> lk(g_owner, std::try_to_lock);
  if (!lk.owns_lock()) return false;
  Pool& p = pool();
  if (p.oversubscribed()) return false;
  p.run(n, fn);
  return true;
}

void poolNoteTeamStall(bool stalled) {
  std::unique_lock<std::mutex> lk(g_owner, std::try_to_lock);
  if (lk.owns_lock()) pool().noteStall(stalled);
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
