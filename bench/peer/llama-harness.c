// Frugal's llama.cpp benchmark peer: drives the prebuilt llama.cpp libraries of node-llama-cpp the
// way llama.cpp's own llama-bench does (a persistent ggml threadpool attached to the context), so
// n threads spin up once, not per llama_decode. Compiled at bench time by bench/llamacpp.ts against
// the headers of the exact llama.cpp source node-llama-cpp ships (llama/gitRelease.bundle); no
// llama.cpp code is part of Frugal.
//
// usage: llama-harness MODEL.gguf THREADS BACKEND_DIR
// stdin, one command per line; each reply is one line "ok ..." or "error ...":
//   decode P S FILE      tokens FILE (i32) [P+S]: prompt P in one batch, then S single-token steps
//                        (logits of the last token each call); replies "ok SECONDS" for the S steps
//   prefill B T FILE     B sequences of T tokens (i32 [B*T]) in one batch, logits at every position
//   logits T FILE OUT    logits of every position of one sequence written to OUT (f32 [T, V])
//   parallel N P G FILE OUT  N sequences decoded together, as llama.cpp's server runs N parallel
//                        slots: the N prompts (i32 [N*P] in FILE) in one batch, then G-1 steps of
//                        one batch holding each sequence's next token (greedy argmax over the
//                        vocab); writes the N*G tokens to OUT (i32); replies "ok PREFILL_S DECODE_S"
//   info                 "ok n_vocab cpu_backend_name"
//   quit
// Contexts: KV cache f32, flash attention off (precision matched to Frugal's f32 latent cache).
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

typedef struct ggml_threadpool* (*threadpool_new_fn)(struct ggml_threadpool_params*);

static struct llama_model* model;
static struct ggml_threadpool* pool;
static int n_threads, n_vocab;
static struct llama_context* ctx_decode;   // one sequence
static int ctx_decode_n;
static struct llama_context* ctx_prefill;  // B sequences
static int ctx_prefill_b, ctx_prefill_t;
static struct llama_context* ctx_par;      // N parallel sequences
static int ctx_par_n, ctx_par_len;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void quiet_log(enum ggml_log_level level, const char* text, void* data) {
  (void)data;
  if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int32_t* read_tokens(const char* file, long n) {
  FILE* f = fopen(file, "rb");
  if (!f) return NULL;
  int32_t* t = malloc(sizeof(int32_t) * (size_t)n);
  size_t got = fread(t, sizeof(int32_t), (size_t)n, f);
  fclose(f);
  if ((long)got != n) { free(t); return NULL; }
  for (long i = 0; i < n; i++) if (t[i] < 0 || t[i] >= n_vocab) { free(t); return NULL; }
  return t;
}

static struct llama_context* make_ctx(int n_ctx, int n_batch, int n_seq) {
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = (uint32_t)n_ctx;
  cp.n_batch = cp.n_ubatch = (uint32_t)n_batch;
  cp.n_seq_max = (uint32_t)n_seq;
  cp.n_threads = cp.n_threads_batch = n_threads;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.kv_unified = false;
  cp.no_perf = true;
  struct llama_context* c = llama_init_from_model(model, cp);
  if (c) llama_attach_threadpool(c, pool, NULL);
  return c;
}

static struct llama_context* decode_ctx(int n) {
  if (ctx_decode && ctx_decode_n >= n) return ctx_decode;
  if (ctx_decode) llama_free(ctx_decode);
  ctx_decode_n = n < 256 ? 256 : n;
  ctx_decode = make_ctx(ctx_decode_n, ctx_decode_n, 1);
  return ctx_decode;
}

// Tokens [from, to) of sequence seq at positions from.., logits for all or only the last.
static int add_and_decode(struct llama_context* c, struct llama_batch* b, const int32_t* tok, int from, int to, int seq, int all) {
  b->n_tokens = 0;
  for (int i = from; i < to; i++) {
    int k = b->n_tokens++;
    b->token[k] = tok[i];
    b->pos[k] = i;
    b->n_seq_id[k] = 1;
    b->seq_id[k][0] = seq;
    b->logits[k] = (int8_t)(all || i == to - 1);
  }
  return llama_decode(c, *b);
}

static void cmd_decode(int P, int S, const char* file) {
  int32_t* tok = read_tokens(file, P + S);
  if (!tok) { printf("error cannot read %d tokens from %s\n", P + S, file); return; }
  struct llama_context* c = decode_ctx(P + S);
  if (!c) { printf("error context\n"); free(tok); return; }
  llama_memory_clear(llama_get_memory(c), true);
  struct llama_batch b = llama_batch_init(P > 1 ? P : 1, 0, 1);
  if (add_and_decode(c, &b, tok, 0, P, 0, 0)) { printf("error prompt decode\n"); goto done; }
  double t0 = now();
  for (int i = P; i < P + S; i++) {
    if (add_and_decode(c, &b, tok, i, i + 1, 0, 1)) { printf("error decode at %d\n", i); goto done; }
    (void)llama_get_logits_ith(c, -1);
  }
  printf("ok %.9f\n", now() - t0);
done:
  llama_batch_free(b);
  free(tok);
}

static void cmd_prefill(int B, int T, const char* file) {
  int32_t* tok = read_tokens(file, (long)B * T);
  if (!tok) { printf("error cannot read %d tokens from %s\n", B * T, file); return; }
  if (!ctx_prefill || ctx_prefill_b != B || ctx_prefill_t != T) {
    if (ctx_prefill) llama_free(ctx_prefill);
    ctx_prefill = make_ctx(B * T, B * T, B);
    ctx_prefill_b = B; ctx_prefill_t = T;
  }
  struct llama_context* c = ctx_prefill;
  if (!c) { printf("error context\n"); free(tok); return; }
  llama_memory_clear(llama_get_memory(c), true);
  struct llama_batch b = llama_batch_init(B * T, 0, 1);
  for (int s = 0; s < B; s++)
    for (int i = 0; i < T; i++) {
      int k = b.n_tokens++;
      b.token[k] = tok[s * T + i]; b.pos[k] = i; b.n_seq_id[k] = 1; b.seq_id[k][0] = s; b.logits[k] = 1;
    }
  double t0 = now();
  int rc = llama_decode(c, b);
  double dt = now() - t0;
  if (rc) printf("error prefill decode %d\n", rc);
  else printf("ok %.9f\n", dt);
  llama_batch_free(b);
  free(tok);
}

static int argmax_row(const float* x) {
  int best = 0;
  for (int j = 1; j < n_vocab; j++) if (x[j] > x[best]) best = j;
  return best;
}

static void cmd_parallel(int N, int P, int G, const char* file, const char* out) {
  int32_t* tok = read_tokens(file, (long)N * P);
  if (!tok) { printf("error cannot read %d tokens from %s\n", N * P, file); return; }
  int32_t* gen = malloc(sizeof(int32_t) * (size_t)N * G);
  const int nb = N * P > N ? N * P : N;
  if (!ctx_par || ctx_par_n != N || ctx_par_len < P + G) {
    if (ctx_par) llama_free(ctx_par);
    // Per-sequence KV (kv_unified off): n_ctx is split evenly over the N sequences.
    ctx_par = make_ctx(N * (P + G), nb, N);
    ctx_par_n = N; ctx_par_len = P + G;
  }
  struct llama_context* c = ctx_par;
  if (!c) { printf("error context\n"); free(tok); free(gen); return; }
  llama_memory_clear(llama_get_memory(c), true);
  struct llama_batch b = llama_batch_init(nb, 0, 1);
  double t0 = now(), t1 = 0;
  for (int s = 0; s < N; s++)
    for (int i = 0; i < P; i++) {
      int k = b.n_tokens++;
      b.token[k] = tok[s * P + i]; b.pos[k] = i; b.n_seq_id[k] = 1; b.seq_id[k][0] = s; b.logits[k] = (int8_t)(i == P - 1);
    }
  if (llama_decode(c, b)) { printf("error prompt decode\n"); goto done; }
  for (int s = 0; s < N; s++) gen[s * G] = argmax_row(llama_get_logits_ith(c, s * P + P - 1));
  t1 = now();
  for (int g = 1; g < G; g++) {
    b.n_tokens = 0;
    for (int s = 0; s < N; s++) {
      int k = b.n_tokens++;
      b.token[k] = gen[s * G + g - 1]; b.pos[k] = P + g - 1; b.n_seq_id[k] = 1; b.seq_id[k][0] = s; b.logits[k] = 1;
    }
    if (llama_decode(c, b)) { printf("error decode at step %d\n", g); goto done; }
    for (int s = 0; s < N; s++) gen[s * G + g] = argmax_row(llama_get_logits_ith(c, s));
  }
  double t2 = now();
  FILE* f = fopen(out, "wb");
  if (!f) { printf("error cannot write %s\n", out); goto done; }
  fwrite(gen, sizeof(int32_t), (size_t)N * G, f);
  fclose(f);
  printf("ok %.9f %.9f\n", t1 - t0, t2 - t1);
done:
  llama_batch_free(b);
  free(tok);
  free(gen);
}

static void cmd_logits(int T, const char* file, const char* out) {
  int32_t* tok = read_tokens(file, T);
  if (!tok) { printf("error cannot read %d tokens from %s\n", T, file); return; }
  struct llama_context* c = decode_ctx(T);
  llama_memory_clear(llama_get_memory(c), true);
  struct llama_batch b = llama_batch_init(T, 0, 1);
  FILE* f = NULL;
  if (add_and_decode(c, &b, tok, 0, T, 0, 1)) { printf("error decode\n"); goto done; }
  f = fopen(out, "wb");
  if (!f) { printf("error cannot write %s\n", out); goto done; }
  for (int i = 0; i < T; i++) fwrite(llama_get_logits_ith(c, i), sizeof(float), (size_t)n_vocab, f);
  fclose(f);
  printf("ok\n");
done:
  llama_batch_free(b);
  free(tok);
}

int main(int argc, char** argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s MODEL.gguf THREADS BACKEND_DIR\n", argv[0]); return 2; }
  n_threads = atoi(argv[2]);
  llama_log_set(quiet_log, NULL);
  ggml_backend_load_all_from_path(argv[3]);
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (!cpu) { fprintf(stderr, "no CPU backend in %s\n", argv[3]); return 1; }
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
  threadpool_new_fn tp_new = (threadpool_new_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
  if (!tp_new) { fprintf(stderr, "the CPU backend has no ggml_threadpool_new\n"); return 1; }
  llama_backend_init();
  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  model = llama_model_load_from_file(argv[1], mp);
  if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
  n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  struct ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
  pool = tp_new(&tpp);
  if (!pool) { fprintf(stderr, "threadpool of %d threads failed\n", n_threads); return 1; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  char line[4096], a[2048], o[2048];
  int x, y, z;
  while (fgets(line, sizeof line, stdin)) {
    if (sscanf(line, "decode %d %d %2047s", &x, &y, a) == 3 && x >= 1 && y >= 1) cmd_decode(x, y, a);
    else if (sscanf(line, "prefill %d %d %2047s", &x, &y, a) == 3 && x >= 1 && y >= 1) cmd_prefill(x, y, a);
    else if (sscanf(line, "logits %d %2047s %2047s", &x, a, o) == 3 && x >= 1) cmd_logits(x, a, o);
    else if (sscanf(line, "parallel %d %d %d %2047s %2047s", &x, &y, &z, a, o) == 5 && x >= 1 && x <= 256 && y >= 1 && z >= 1) cmd_parallel(x, y, z, a, o);
    else if (strncmp(line, "info", 4) == 0) printf("ok %d %s\n", n_vocab, ggml_backend_reg_name(reg));
    else if (strncmp(line, "quit", 4) == 0) break;
    else printf("error unknown command\n");
  }
  if (ctx_decode) llama_free(ctx_decode);
  if (ctx_prefill) llama_free(ctx_prefill);
  if (ctx_par) llama_free(ctx_par);
  llama_model_free(model);
  return 0;
}
