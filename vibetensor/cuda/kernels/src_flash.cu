// Flash-style attention on CUDA cores (float32 math, any of float/half/bfloat16 in memory): the
// (Tq x Tk) score matrix is never written to memory. Appended to src_rows.cu (ld/st helpers).
//
// Layout: q (B, H, Tq, D), k/v (B, H, Tk, D) with element strides (batch, head, token) and unit
// stride along D; o/dq/dk/dv are written through their own (batch, head, token) strides (os*: unit
// stride along D), so an output can mirror its input's layout; lse/delta are (B*H, Tq) float32.
// Causal masking is PyTorch's is_causal (top-left aligned): query i sees keys j <= i.
// One thread owns one row (a query row forward and for dQ, a key row for dK/dV); the other side's
// rows stream through shared memory in tiles and are read as broadcasts.

#define FL_ROWS 64   // rows per block (threads)
#define FL_TILE 32   // streamed rows per shared-memory tile
#define FL_CHUNK 8   // scores computed before one online-softmax rescale

struct Strides { long long b, h, t; };
#define FL_STRIDES(n) Strides n{n##b, n##h, n##t}

template <typename T>
__device__ __forceinline__ const T* row_ptr(const T* base, Strides s, int bh, int H, long long t) {
  return base + (long long)(bh / H) * s.b + (long long)(bh % H) * s.h + t * s.t;
}

template <typename T>
__device__ __forceinline__ T* out_ptr(T* base, Strides s, int bh, int H, long long t) {
  return base + (long long)(bh / H) * s.b + (long long)(bh % H) * s.h + t * s.t;
}

// Stream rows [r0, r0 + ROWS) of a (T, D) matrix into shared memory as float (zeros past the end).
template <typename T, int D, int ROWS = FL_TILE>
__device__ __forceinline__ void load_tile(float (*dst)[D], const T* base, Strides s, int bh, int H,
                                          long long r0, long long n) {
  for (int idx = threadIdx.x; idx < ROWS * D; idx += blockDim.x) {
    int j = idx / D, d = idx % D;
    long long r = r0 + j;
    dst[j][d] = r < n ? ld(row_ptr(base, s, bh, H, r), d) : 0.f;
  }
}

// A query row's own values (times mult) into registers; zeros for threads past the last row.
template <typename T, int D>
__device__ __forceinline__ void load_row(float* dst, const T* p, bool active, float mult) {
#pragma unroll
  for (int d = 0; d < D; ++d) dst[d] = active ? ld(p, d) * mult : 0.f;
}

// Keys the block's query rows need streamed (kend) and keys query row r itself sees (mine).
__device__ __forceinline__ void key_span(long long r, int Tq, int Tk, int causal, long long& kend, long long& mine) {
  long long last_row = min((long long)Tq, (long long)(blockIdx.x + 1) * FL_ROWS) - 1;
  kend = causal ? min((long long)Tk, last_row + 1) : (long long)Tk;
  mine = causal ? min((long long)Tk, r + 1) : (long long)Tk;
}

template <typename T, int D>
__global__ void flash_fwd(const T* q, const T* k, const T* v, T* o, float* lse, int H, int Tq, int Tk, long long qsb,
    long long qsh, long long qst, long long ksb, long long ksh, long long kst, long long vsb,
    long long vsh, long long vst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  __shared__ float Ks[FL_TILE][D];
  __shared__ float Vs[FL_TILE][D];
  int bh = blockIdx.y;
  long long r = (long long)blockIdx.x * FL_ROWS + threadIdx.x;
  bool active = r < Tq;
  float qr[D], acc[D];
  load_row<T, D>(qr, row_ptr(q, qs, bh, H, active ? r : 0), active, scale);
#pragma unroll
  for (int d = 0; d < D; ++d) acc[d] = 0.f;
  float m = VT_NEG_INF, l = 0.f;
  long long kend, mine;
  key_span(r, Tq, Tk, causal, kend, mine);
  for (long long k0 = 0; k0 < kend; k0 += FL_TILE) {
    __syncthreads();
    load_tile<T, D>(Ks, k, ks, bh, H, k0, Tk);
    load_tile<T, D>(Vs, v, vs, bh, H, k0, Tk);
    __syncthreads();
    if (!active) continue;
    int jn = (int)min((long long)FL_TILE, mine - k0);
    for (int j0 = 0; j0 < jn; j0 += FL_CHUNK) {
      float s[FL_CHUNK];
      float cm = m;
#pragma unroll
      for (int c = 0; c < FL_CHUNK; ++c) {
        float x = VT_NEG_INF;
        if (j0 + c < jn) {
          x = 0.f;
#pragma unroll
          for (int d = 0; d < D; ++d) x += qr[d] * Ks[j0 + c][d];
        }
        s[c] = x;
        cm = fmaxf(cm, x);
      }
      float corr = __expf(m - cm);  // m = -inf on the first chunk: corr = 0, acc and l are 0 anyway
      l *= corr;
#pragma unroll
      for (int d = 0; d < D; ++d) acc[d] *= corr;
#pragma unroll
      for (int c = 0; c < FL_CHUNK; ++c) {
        float p = (j0 + c < jn) ? __expf(s[c] - cm) : 0.f;
        l += p;
#pragma unroll
        for (int d = 0; d < D; ++d) acc[d] += p * Vs[j0 + c][d];
      }
      m = cm;
    }
  }
  if (active) {
    float inv = l > 0.f ? 1.f / l : 0.f;
    T* op = out_ptr(o, Strides{osb, osh, ost}, bh, H, r);
#pragma unroll
    for (int d = 0; d < D; ++d) st(op, d, acc[d] * inv);
    lse[(long long)bh * Tq + r] = l > 0.f ? m + logf(l) : VT_NEG_INF;
  }
}

// delta[row] = sum_d dO[row, d] * O[row, d] (both strided): one warp per row, so a warp's loads are
// consecutive elements of one row.
template <typename T, int D>
__global__ void flash_bwd_delta(const T* o, const T* dout, float* delta, int H, int Tq, long long gsb, long long gsh, long long gst,
    long long rows, long long osb, long long osh, long long ost) {
  FL_STRIDES(gs);
  FL_STRIDES(os);
  long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (i >= rows) return;
  int bh = (int)(i / Tq);
  long long r = i % Tq;
  const T* gp = row_ptr(dout, gs, bh, H, r);
  const T* op = row_ptr(o, os, bh, H, r);
  float s = 0.f;
#pragma unroll
  for (int d = lane; d < D; d += 32) s += ld(gp, d) * ld(op, d);
  s = warp_sum(s);
  if (lane == 0) delta[i] = s;
}

// dQ: one thread per query row; K and V stream through shared memory.
template <typename T, int D>
__global__ void flash_bwd_dq(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta, T* dq,
    int H, int Tq, int Tk, long long qsb, long long qsh, long long qst, long long ksb, long long ksh,
    long long kst, long long vsb, long long vsh, long long vst, long long gsb, long long gsh,
    long long gst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  FL_STRIDES(gs);
  __shared__ float Ks[FL_TILE][D];
  __shared__ float Vs[FL_TILE][D];
  int bh = blockIdx.y;
  long long r = (long long)blockIdx.x * FL_ROWS + threadIdx.x;
  bool active = r < Tq;
  float qr[D], gr[D], acc[D];
  load_row<T, D>(qr, row_ptr(q, qs, bh, H, active ? r : 0), active, scale);
  load_row<T, D>(gr, row_ptr(dout, gs, bh, H, active ? r : 0), active, 1.f);
#pragma unroll
  for (int d = 0; d < D; ++d) acc[d] = 0.f;
  float L = active ? lse[(long long)bh * Tq + r] : 0.f;
  float Di = active ? delta[(long long)bh * Tq + r] : 0.f;
  long long kend, mine;
  key_span(r, Tq, Tk, causal, kend, mine);
  for (long long k0 = 0; k0 < kend; k0 += FL_TILE) {
    __syncthreads();
    load_tile<T, D>(Ks, k, ks, bh, H, k0, Tk);
    load_tile<T, D>(Vs, v, vs, bh, H, k0, Tk);
    __syncthreads();
    if (!active) continue;
    int jn = (int)min((long long)FL_TILE, mine - k0);
    for (int j = 0; j < jn; ++j) {
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int d = 0; d < D; ++d) { s += qr[d] * Ks[j][d]; dp += gr[d] * Vs[j][d]; }
      float ds = __expf(s - L) * (dp - Di);
      const volatile float* kj = Ks[j];
#pragma unroll
      for (int d = 0; d < D; ++d) acc[d] += ds * kj[d];
    }
  }
  if (active) {
    T* out = out_ptr(dq, Strides{osb, osh, ost}, bh, H, r);
#pragma unroll
    for (int d = 0; d < D; ++d) st(out, d, acc[d] * scale);
  }
}

// dK, dV: one thread per key row (its k and v rows in shared memory, its dK/dV accumulators in
// registers); Q, dO, lse and delta stream through shared memory in tiles of FL_QTILE rows.
#define FL_QTILE 16
template <typename T, int D>
__global__ void flash_bwd_dkdv(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta, T* dk,
    T* dv, int H, int Tq, int Tk, long long qsb, long long qsh, long long qst, long long ksb,
    long long ksh, long long kst, long long vsb, long long vsh, long long vst, long long gsb,
    long long gsh, long long gst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  FL_STRIDES(gs);
  __shared__ float Qs[FL_QTILE][D];
  __shared__ float Gs[FL_QTILE][D];
  __shared__ float Ls[FL_QTILE], Ds[FL_QTILE];
  __shared__ float Kown[FL_ROWS][D + 1];  // +1: thread t reads row t without bank conflicts
  __shared__ float Vown[FL_ROWS][D + 1];
  int bh = blockIdx.y;
  long long c = (long long)blockIdx.x * FL_ROWS + threadIdx.x;
  bool active = c < Tk;
  float gk[D], gv[D];
  const T* kp = row_ptr(k, ks, bh, H, active ? c : 0);
  const T* vp = row_ptr(v, vs, bh, H, active ? c : 0);
#pragma unroll
  for (int d = 0; d < D; ++d) {
    Kown[threadIdx.x][d] = active ? ld(kp, d) * scale : 0.f;
    Vown[threadIdx.x][d] = active ? ld(vp, d) : 0.f;
    gk[d] = 0.f; gv[d] = 0.f;
  }
  // volatile: re-read the own rows from shared memory each time instead of hoisting 2*D registers
  const volatile float* krow = Kown[threadIdx.x];
  const volatile float* vrow = Vown[threadIdx.x];
  long long first_key = (long long)blockIdx.x * FL_ROWS;
  long long q0 = causal ? first_key : 0;  // queries before the block's first key see none of its keys
  q0 -= q0 % FL_QTILE;
  for (; q0 < Tq; q0 += FL_QTILE) {
    __syncthreads();
    load_tile<T, D, FL_QTILE>(Qs, q, qs, bh, H, q0, Tq);
    load_tile<T, D, FL_QTILE>(Gs, dout, gs, bh, H, q0, Tq);
    for (int j = threadIdx.x; j < FL_QTILE; j += blockDim.x) {
      long long i = q0 + j;
      Ls[j] = i < Tq ? lse[(long long)bh * Tq + i] : 0.f;
      Ds[j] = i < Tq ? delta[(long long)bh * Tq + i] : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    int jn = (int)min((long long)FL_QTILE, (long long)Tq - q0);
    for (int j = 0; j < jn; ++j) {
      if (causal && q0 + j < c) continue;
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int d = 0; d < D; ++d) { s += krow[d] * Qs[j][d]; dp += vrow[d] * Gs[j][d]; }
      float p = __expf(s - Ls[j]);
      float ds = p * (dp - Ds[j]);
      const volatile float* qj = Qs[j];  // reload rather than keep 2*D values live across the loops
      const volatile float* gj = Gs[j];
#pragma unroll
      for (int d = 0; d < D; ++d) { gv[d] += p * gj[d]; gk[d] += ds * qj[d]; }
    }
  }
  if (active) {
    T* ok = out_ptr(dk, Strides{osb, osh, ost}, bh, H, c);
    T* ov = out_ptr(dv, Strides{osb, osh, ost}, bh, H, c);
#pragma unroll
    for (int d = 0; d < D; ++d) { st(ok, d, gk[d] * scale); st(ov, d, gv[d]); }
  }
}
