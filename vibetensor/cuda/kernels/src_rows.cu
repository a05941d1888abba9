// Row-wise fused kernels: one block per row, float32 accumulation.
// layer_norm fwd/bwd, rms_norm fwd/bwd, softmax (optionally scaled + causal) fwd/bwd,
// cross-entropy fwd/bwd with ignore_index and label smoothing.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define VT_NEG_INF (-__int_as_float(0x7f800000))  // NVRTC has no INFINITY macro

template <typename T> __device__ __forceinline__ float ld(const T* p, long long i) { return (float)p[i]; }
template <> __device__ __forceinline__ float ld<__half>(const __half* p, long long i) { return __half2float(p[i]); }
template <typename T> __device__ __forceinline__ void st(T* p, long long i, float v) { p[i] = (T)v; }
template <> __device__ __forceinline__ void st<__half>(__half* p, long long i, float v) { p[i] = __float2half(v); }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16* p, long long i) {
  return __bfloat162float(p[i]);
}
template <> __device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16* p, long long i, float v) {
  p[i] = __float2bfloat16(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
  return v;
}
// Block-wide reductions (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ float block_sum(float v) {
  __shared__ float sh[32];
  __shared__ float res;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float x = (lane < (blockDim.x >> 5)) ? sh[lane] : 0.f;
    x = warp_sum(x);
    if (lane == 0) res = x;
  }
  __syncthreads();
  return res;
}
__device__ float block_max(float v) {
  __shared__ float sh[32];
  __shared__ float res;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float x = (lane < (blockDim.x >> 5)) ? sh[lane] : VT_NEG_INF;
    x = warp_max(x);
    if (lane == 0) res = x;
  }
  __syncthreads();
  return res;
}

// ---------------------------------------------------------------- layer norm
template <typename T>
__global__ void ln_fwd(const T* x, const float* w, const float* b, T* y, float* stats, long long N, float eps) {
  long long r = blockIdx.x;
  const T* xr = x + r * N;
  T* yr = y + r * N;
  float s = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) s += ld(xr, i);
  float mu = block_sum(s) / (float)N;
  float q = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) { float d = ld(xr, i) - mu; q += d * d; }
  float rs = rsqrtf(block_sum(q) / (float)N + eps);
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    float v = (ld(xr, i) - mu) * rs;
    if (w) v = v * w[i];
    if (b) v = v + b[i];
    st(yr, i, v);
  }
  if (threadIdx.x == 0) { stats[r] = mu; stats[gridDim.x + r] = rs; }  // the row means, then the rstds
}

// dx = rstd * (dy*w - mean(dy*w) - xhat * mean(dy*w*xhat)). ``stats`` (M means, then M rstds): the forward's
// when ``kept``, else recomputed here from x the same way (and written there for the dweight/dbias pass).
template <typename T>
__global__ void ln_bwd_dx(const T* dy, const T* x, const float* w, float* stats, int kept, T* dx, long long N,
                          float eps) {
  long long r = blockIdx.x;
  const T* xr = x + r * N; const T* dyr = dy + r * N; T* dxr = dx + r * N;
  float mu, rs;
  if (kept) {
    mu = stats[r];
    rs = stats[gridDim.x + r];
  } else {
    float s = 0.f;
    for (long long i = threadIdx.x; i < N; i += blockDim.x) s += ld(xr, i);
    mu = block_sum(s) / (float)N;
    float q = 0.f;
    for (long long i = threadIdx.x; i < N; i += blockDim.x) { float d = ld(xr, i) - mu; q += d * d; }
    rs = rsqrtf(block_sum(q) / (float)N + eps);
  }
  float a = 0.f, c = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    float g = ld(dyr, i) * (w ? w[i] : 1.f);
    float xh = (ld(xr, i) - mu) * rs;
    a += g; c += g * xh;
  }
  a = block_sum(a) / (float)N;
  c = block_sum(c) / (float)N;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    float g = ld(dyr, i) * (w ? w[i] : 1.f);
    float xh = (ld(xr, i) - mu) * rs;
    st(dxr, i, rs * (g - a - xh * c));
  }
  if (!kept && threadIdx.x == 0) { stats[r] = mu; stats[gridDim.x + r] = rs; }
}

// Column partial sums for dweight/dbias: partial[g, c] over rows r = g, g+G, ...
template <typename T>
__global__ void ln_bwd_dwb(const T* dy, const T* x, const float* stats, int ln, float* pw, int with_b, long long M,
                           long long N) {
  // layer norm (ln): stats holds M means, then M rstds; rms norm: M rstds
  const float* mean = ln ? stats : nullptr;
  const float* rstd = ln ? stats + M : stats;
  long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  int g = blockIdx.y, G = gridDim.y;
  if (c >= N) return;
  float* pb = with_b ? pw + (long long)G * N : nullptr;  // the bias partials follow the weight's (one buffer)
  float sw = 0.f, sb = 0.f;
  for (long long r = g; r < M; r += G) {
    float d = ld(dy, r * N + c);
    sb += d;
    if (mean) sw += d * (ld(x, r * N + c) - mean[r]) * rstd[r];
    else sw += d * ld(x, r * N + c) * rstd[r];  // rms norm: xhat = x * rstd
  }
  pw[(long long)g * N + c] = sw;
  if (pb) pb[(long long)g * N + c] = sb;
}

// Warp-per-row layer norm for rows up to 32*V elements (the common hidden sizes): the row lives in
// registers, reductions are warp shuffles, no __syncthreads; four rows per 128-thread block.
template <typename T, int V>
__global__ void ln_fwd_warp(const T* x, const float* w, const float* b, T* y, float* stats, long long M, int N,
                            float eps) {
  long long r = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= M) return;
  const T* xr = x + r * N;
  T* yr = y + r * N;
  float v[V], s = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) { int i = lane + 32 * j; v[j] = i < N ? ld(xr, i) : 0.f; s += v[j]; }
  float mu = warp_sum(s) / (float)N, q = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) { float d = lane + 32 * j < N ? v[j] - mu : 0.f; q += d * d; }
  float rs = rsqrtf(warp_sum(q) / (float)N + eps);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    int i = lane + 32 * j;
    if (i < N) {
      float o = (v[j] - mu) * rs;
      if (w) o = o * w[i];
      if (b) o = o + b[i];
      st(yr, i, o);
    }
  }
  if (lane == 0) { stats[r] = mu; stats[M + r] = rs; }
}

template <typename T, int V>
__global__ void ln_bwd_dx_warp(const T* dy, const T* x, const float* w, float* stats, int kept, T* dx, long long M,
                               int N, float eps) {
  long long r = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= M) return;
  const T* xr = x + r * N; const T* dyr = dy + r * N; T* dxr = dx + r * N;
  float v[V], g[V], s = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    int i = lane + 32 * j;
    v[j] = i < N ? ld(xr, i) : 0.f;
    g[j] = i < N ? ld(dyr, i) * (w ? w[i] : 1.f) : 0.f;
    s += v[j];
  }
  float mu, rs;
  if (kept) {  // the forward's statistics (ln_fwd_warp computes them exactly as below)
    mu = stats[r];
    rs = stats[M + r];
  } else {
    mu = warp_sum(s) / (float)N;
    float q = 0.f;
#pragma unroll
    for (int j = 0; j < V; ++j) { float d = lane + 32 * j < N ? v[j] - mu : 0.f; q += d * d; }
    rs = rsqrtf(warp_sum(q) / (float)N + eps);
  }
  float a = 0.f, c = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) { v[j] = (v[j] - mu) * rs; a += g[j]; c += g[j] * v[j]; }  // v becomes xhat
  a = warp_sum(a) / (float)N;
  c = warp_sum(c) / (float)N;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    int i = lane + 32 * j;
    if (i < N) st(dxr, i, rs * (g[j] - a - v[j] * c));
  }
  if (!kept && lane == 0) { stats[r] = mu; stats[M + r] = rs; }
}

// ---------------------------------------------------------------- rms norm
template <typename T>
__global__ void rms_fwd(const T* x, const float* w, T* y, float* rstd, long long N, float eps) {
  long long r = blockIdx.x;
  const T* xr = x + r * N; T* yr = y + r * N;
  float q = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) { float v = ld(xr, i); q += v * v; }
  float rs = rsqrtf(block_sum(q) / (float)N + eps);
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    float v = ld(xr, i) * rs;
    st(yr, i, w ? v * w[i] : v);
  }
  if (threadIdx.x == 0) rstd[r] = rs;
}

// dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w; recomputes rstd (written out for dweight)
template <typename T>
__global__ void rms_bwd_dx(const T* dy, const T* x, const float* w, float* rstd, T* dx, long long N, float eps) {
  long long r = blockIdx.x;
  const T* xr = x + r * N; const T* dyr = dy + r * N; T* dxr = dx + r * N;
  float q = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) { float v = ld(xr, i); q += v * v; }
  float rs = rsqrtf(block_sum(q) / (float)N + eps);
  float c = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x)
    c += ld(dyr, i) * (w ? w[i] : 1.f) * ld(xr, i) * rs;
  c = block_sum(c) / (float)N;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    float g = ld(dyr, i) * (w ? w[i] : 1.f);
    st(dxr, i, rs * (g - ld(xr, i) * rs * c));
  }
  if (threadIdx.x == 0) rstd[r] = rs;
}

// ---------------------------------------------------------------- softmax (+ scale, causal)
// Row r of a [rows, N] matrix; with causal, row r is query (r % T) of a T x N block: keys > query masked.
// TI/TO: input and output types differ for attention (float32 scores in, half/bfloat16 probabilities out).
template <typename TI, typename TO>
__global__ void softmax_fwd(const TI* x, TO* y, long long N, float scale, int causal, long long T_q, long long offs) {
  long long r = blockIdx.x;
  const TI* xr = x + r * N; TO* yr = y + r * N;
  long long lim = causal ? ((r % T_q) + offs + 1) : N;
  if (lim > N) lim = N;
  float m = VT_NEG_INF;
  for (long long i = threadIdx.x; i < lim; i += blockDim.x) m = fmaxf(m, ld(xr, i) * scale);
  m = block_max(m);
  float s = 0.f;
  for (long long i = threadIdx.x; i < lim; i += blockDim.x) s += __expf(ld(xr, i) * scale - m);
  float inv = 1.f / block_sum(s);
  for (long long i = threadIdx.x; i < N; i += blockDim.x)
    st(yr, i, i < lim ? __expf(ld(xr, i) * scale - m) * inv : 0.f);
}

// dx = scale * y * (dy - sum(dy * y)); dy may be wider than y (float32 dP against half probabilities)
template <typename TY, typename TD, typename TO>
__global__ void softmax_bwd(const TY* y, const TD* dy, TO* dx, long long N, float scale) {
  long long r = blockIdx.x;
  const TY* yr = y + r * N; const TD* dyr = dy + r * N; TO* dxr = dx + r * N;
  float s = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) s += ld(yr, i) * ld(dyr, i);
  s = block_sum(s);
  for (long long i = threadIdx.x; i < N; i += blockDim.x)
    st(dxr, i, scale * ld(yr, i) * (ld(dyr, i) - s));
}

// Warp-per-row variants for rows of up to 32 * VPT elements (attention scores): the row stays in
// registers, one read and one write, shuffles instead of block barriers. 4 rows per 128-thread block.
template <typename TI, typename TO, int VPT>
__global__ void softmax_fwd_warp(const TI* x, TO* y, long long M, long long N, float scale, int causal,
                                 long long T_q, long long offs) {
  long long r = blockIdx.x * 4LL + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= M) return;
  const TI* xr = x + r * N; TO* yr = y + r * N;
  long long lim = causal ? ((r % T_q) + offs + 1) : N;
  if (lim > N) lim = N;
  float v[VPT];
  float m = VT_NEG_INF;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    long long c = lane + 32LL * i;
    v[i] = c < lim ? ld(xr, c) * scale : VT_NEG_INF;
    m = fmaxf(m, v[i]);
  }
  m = warp_max(m);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) { v[i] = (lane + 32LL * i < lim) ? __expf(v[i] - m) : 0.f; s += v[i]; }
  float inv = 1.f / warp_sum(s);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    long long c = lane + 32LL * i;
    if (c < N) st(yr, c, v[i] * inv);
  }
}

template <typename TY, typename TD, typename TO, int VPT>
__global__ void softmax_bwd_warp(const TY* y, const TD* dy, TO* dx, long long M, long long N, float scale) {
  long long r = blockIdx.x * 4LL + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= M) return;
  const TY* yr = y + r * N; const TD* dyr = dy + r * N; TO* dxr = dx + r * N;
  float a[VPT], b[VPT];
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    long long c = lane + 32LL * i;
    a[i] = c < N ? ld(yr, c) : 0.f;
    b[i] = c < N ? ld(dyr, c) : 0.f;
    s += a[i] * b[i];
  }
  s = warp_sum(s);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    long long c = lane + 32LL * i;
    if (c < N) st(dxr, c, scale * a[i] * (b[i] - s));
  }
}

// ---------------------------------------------------------------- cross entropy
// loss[r] = (1-eps)(lse - x_t) + eps (lse - mean(x)); 0 where target == ignore (or out of range: the
// reduction flags it); stats[r] = lse, kept for the backward.
template <typename T>
__global__ void xent_fwd(const T* x, const long long* tgt, float* loss, float* stats, long long C,
                         long long ignore, float smooth) {
  long long r = blockIdx.x;
  const T* xr = x + r * C;
  long long t = tgt[r];
  float m = VT_NEG_INF;
  for (long long i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, ld(xr, i));
  m = block_max(m);
  float s = 0.f, sx = 0.f;
  for (long long i = threadIdx.x; i < C; i += blockDim.x) { float v = ld(xr, i); s += __expf(v - m); sx += v; }
  s = block_sum(s);
  sx = block_sum(sx);
  if (threadIdx.x == 0) {
    float l = m + logf(s);
    stats[r] = l;
    if (t == ignore || t < 0 || t >= C) loss[r] = 0.f;
    else loss[r] = (1.f - smooth) * (l - ld(xr, t)) + smooth * (l - sx / (float)C);
  }
}

// One block over the R per-row losses: out[0] = their sum (mean: over the rows whose target is not
// ignore_index; 0/0 = nan when there are none, as PyTorch), stats[R] = that count (the backward's
// divisor), bad[0] = some counted target lies outside [0, C) (raised at the next deferred-check flush).
// One launch in place of CuPy's sum, count, division, cast and range check.
template <typename T>
__global__ void xent_reduce(const float* loss, const long long* tgt, float* stats, T* out, bool* bad,
                            long long R, long long C, long long ignore, int mean) {
  float s = 0.f, n = 0.f, b = 0.f;
  for (long long r = threadIdx.x; r < R; r += blockDim.x) {
    long long t = tgt[r];
    s += loss[r];
    if (t != ignore) { n += 1.f; if (t < 0 || t >= C) b = 1.f; }
  }
  s = block_sum(s);
  n = block_sum(n);
  b = block_max(b);
  if (threadIdx.x == 0) {
    stats[R] = n;
    bad[0] = b > 0.f;
    st(out, 0, mean ? s / n : s);
  }
}

// dx = g_r * (softmax - (1-eps) onehot - eps/C); rows with the ignore target get 0. g_mode 0: g per row,
// 1: g[0] for every row, 2: g[0] / stats[R] (reduction "mean", the count xent_reduce wrote).
template <typename T>
__global__ void xent_bwd(const T* x, const long long* tgt, const float* stats, const float* g, T* dx,
                         long long R, long long C, long long ignore, float smooth, int g_mode) {
  long long r = blockIdx.x;
  const T* xr = x + r * C; T* dxr = dx + r * C;
  long long t = tgt[r];
  float gr = g_mode == 0 ? g[r] : (g_mode == 1 ? g[0] : g[0] / stats[R]);
  bool skip = (t == ignore);
  float l = stats[r];
  for (long long i = threadIdx.x; i < C; i += blockDim.x) {
    float v = skip ? 0.f : gr * (__expf(ld(xr, i) - l) - (i == t ? 1.f - smooth : 0.f) - smooth / (float)C);
    st(dxr, i, v);
  }
}

// ---------------------------------------------------------------- AdamW over many tensors
// Block b updates chunk (b_off[b] .. +chunk) of tensor b_tid[b]; pointer tables hold float32 buffers.
// The step count lives on the device (step[0], advanced by adamw_step_inc before each update) so a
// captured CUDA graph replays with the right bias corrections.
extern "C" __global__ void adamw_step_inc(float* step) { step[0] += 1.f; }

extern "C" __global__ void adamw_multi(const unsigned long long* P, const unsigned long long* G,
                                       const unsigned long long* M, const unsigned long long* V,
                                       const long long* sizes, const int* b_tid, const long long* b_off,
                                       long long chunk, float lr, float b1, float b2, float eps, float wd,
                                       const float* step) {
  int tid = b_tid[blockIdx.x];
  long long start = b_off[blockIdx.x];
  long long n = sizes[tid];
  long long end = start + chunk < n ? start + chunk : n;
  float t = step[0];
  float bc1 = 1.f - powf(b1, t), bc2 = 1.f - powf(b2, t);
  float* p = (float*)P[tid]; const float* g = (const float*)G[tid];
  float* m = (float*)M[tid]; float* v = (float*)V[tid];
#pragma unroll 4
  for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
    float gi = g[i];
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi; v[i] = vi;
    float pi = p[i] * (1.f - lr * wd);
    p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
}
