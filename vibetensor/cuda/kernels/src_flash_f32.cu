// Flash attention in float32 on CUDA cores, register-tiled like an SGEMM (appended to src_rows.cu and
// src_flash.cu: Strides, row_ptr). Same arguments, layouts and lse/delta as src_flash.cu's kernels, float only.
//
// Why: src_flash.cu gives each thread one whole row, so every FMA waits on a shared-memory load (~4
// TFLOP/s). Here a block of 256 threads owns 64 rows and streams the other side in tiles of 64 rows
// through shared memory. Thread (ty, tx) = (tid / 16, tid % 16) computes a 4 x 4 piece of each 64 x 64
// product: rows ty*4 + i of the owned side, columns tx + 16*j of the streamed side. Each step loads four
// float4s of each operand for 64 FMAs. The owned side's loads are broadcasts (one row per 16 lanes); the
// streamed side is stored with its 16-byte units XOR-swizzled by row, so 8 lanes reading 8 rows at one
// column hit 8 different bank groups. A product with the scores (P or dS, through shared memory) then
// accumulates a 4 x D/16 piece: rows ty*4 + i, columns tx*D/16 + e.
// Dynamic shared memory: up to ~101 KB (dK/dV, D = 64); flash.py raises the kernels' limit. Causal query
// blocks run longest first, so a launch ends on short blocks (at the train_gpt shapes this measured the
// same as in order, within 4%: BENCHMARKS.md, tenth session).

#define TF_ROWS 64
#define TF_PS (TF_ROWS + 4)  // score tile row stride: rows ty*4 and ty*4 + 4 land 16 banks apart

// Offset of element (r, d) of a swizzled (64 x D) tile.
template <int D>
__device__ __forceinline__ int swz(int r, int d) {
  constexpr int M = (D / 4 < 8 ? D / 4 : 8) - 1;
  return r * D + ((((d >> 2) ^ (r & M))) << 2) + (d & 3);
}

template <int N> __device__ __forceinline__ void lds(float (&o)[N], const float* p);
template <> __device__ __forceinline__ void lds<4>(float (&o)[4], const float* p) {
  float4 v = *reinterpret_cast<const float4*>(p);
  o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w;
}
template <> __device__ __forceinline__ void lds<2>(float (&o)[2], const float* p) {
  float2 v = *reinterpret_cast<const float2*>(p);
  o[0] = v.x; o[1] = v.y;
}
template <> __device__ __forceinline__ void lds<1>(float (&o)[1], const float* p) { o[0] = *p; }

// Rows [r0, r0 + 64) of a strided (n x D) matrix into shared memory times mult (zeros past n):
// row-major with row stride D + 4 (owned rows: the two half warps' broadcast rows ty*4 and ty*4 + 4
// then sit in different banks) or swizzled (streamed rows). Each thread issues all its float4 loads
// before its first store, so a tile costs one memory latency, not one per element (flash.py makes
// sure rows and strides are 16-byte aligned).
template <int D, bool SWZ>
__device__ __forceinline__ void tile_in(float* dst, const float* base, Strides s, int bh, int H, long long r0,
                                        long long n, float mult) {
  constexpr int PER = TF_ROWS * D / 4 / 256;  // float4s per thread
  const float* b0 = base + (long long)(bh / H) * s.b + (long long)(bh % H) * s.h;
  float4 x[PER];
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    int idx = threadIdx.x + u * 256, j = idx / (D / 4), d = (idx % (D / 4)) * 4;
    long long r = r0 + j;
    x[u] = r < n ? *reinterpret_cast<const float4*>(b0 + r * s.t + d) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    int idx = threadIdx.x + u * 256, j = idx / (D / 4), d = (idx % (D / 4)) * 4;
    float4 v = make_float4(x[u].x * mult, x[u].y * mult, x[u].z * mult, x[u].w * mult);
    *reinterpret_cast<float4*>(dst + (SWZ ? swz<D>(j, d) : j * (D + 4) + d)) = v;
  }
}

// s[i][j] = sum_d A[ty*4 + i][d] * B[tx + 16*j][d]: A row-major with stride D + 4 (owned rows), B
// swizzled (streamed).
template <int D>
__device__ __forceinline__ void tile_dot(float (&s)[4][4], const float* A, const float* B, int ty, int tx) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
#pragma unroll 4
  for (int d = 0; d < D; d += 4) {
    float a[4][4], b[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) lds<4>(a[i], A + (ty * 4 + i) * (D + 4) + d);
#pragma unroll
    for (int j = 0; j < 4; ++j) lds<4>(b[j], B + swz<D>(tx + 16 * j, d));
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[i][j] += a[i][e] * b[j][e];
  }
}

// acc[i][e] += sum_c P[ty*4 + i][c] * X[c][tx*(D/16) + e] over the 64 tile rows c: P a (64 x TF_PS)
// score tile, X a (64 x D) tile, swizzled or row-major (stride D + 4).
template <int D, bool SWZ>
__device__ __forceinline__ void tile_acc(float (&acc)[4][D / 16], const float* P, const float* X, int ty, int tx) {
  constexpr int DC = D / 16;
#pragma unroll 2
  for (int c = 0; c < TF_ROWS; c += 4) {
    float p[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) lds<4>(p[i], P + (ty * 4 + i) * TF_PS + c);
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      float x[DC];
      lds<DC>(x, X + (SWZ ? swz<D>(c + t, tx * DC) : (c + t) * (D + 4) + tx * DC));
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int e = 0; e < DC; ++e) acc[i][e] += p[i][t] * x[e];
    }
  }
}

__device__ __forceinline__ float max16(float x) {  // over the 16 lanes of one ty (a half warp)
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float sum16(float x) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// acc[i][e] (rows ty*4 + i, columns tx*DC + e) times mult into out's row r0 + ty*4 + i, rows below n.
template <int D>
__device__ __forceinline__ void rows_out(float* out, Strides s, int bh, int H, long long r0, long long n,
                                         const float (&acc)[4][D / 16], const float (&mult)[4], int ty, int tx) {
  constexpr int DC = D / 16;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    long long r = r0 + ty * 4 + i;
    if (r < n) {
      float* p = out_ptr(out, s, bh, H, r);
#pragma unroll
      for (int e = 0; e < DC; ++e) st(p, tx * DC + e, acc[i][e] * mult[i]);
    }
  }
}

// Forward: block (x, bh) owns query rows [64x, 64x + 64); K and V stream in tiles of 64 keys.
// Shared: Q (row-major, times scale) | K (swizzled) | V (row-major) | P (64 x TF_PS).
template <int D>
__global__ void __launch_bounds__(256)
flash_fwd_f32(const float* q, const float* k, const float* v, float* o, float* lse, int H,
    int Tq, int Tk, long long qsb, long long qsh, long long qst, long long ksb, long long ksh, long long kst,
    long long vsb, long long vsh, long long vst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  constexpr int DC = D / 16;
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  extern __shared__ __align__(16) float sm[];
  float* Qs = sm;
  float* Ks = Qs + TF_ROWS * (D + 4);
  float* Vs = Ks + TF_ROWS * D;
  float* Ps = Vs + TF_ROWS * (D + 4);
  int bh = blockIdx.y, tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  long long q0 = (long long)(causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * TF_ROWS;  // causal: longest first
  tile_in<D, false>(Qs, q, qs, bh, H, q0, Tq, scale);
  float acc[4][DC], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = VT_NEG_INF; l[i] = 0.f;
#pragma unroll
    for (int e = 0; e < DC; ++e) acc[i][e] = 0.f;
  }
  long long kend = causal ? min((long long)Tk, q0 + TF_ROWS) : (long long)Tk;
  for (long long k0 = 0; k0 < kend; k0 += TF_ROWS) {
    __syncthreads();  // the previous tile's readers of K, V and P are done
    tile_in<D, true>(Ks, k, ks, bh, H, k0, Tk, 1.f);
    tile_in<D, false>(Vs, v, vs, bh, H, k0, Tk, 1.f);
    __syncthreads();
    float s[4][4];
    tile_dot<D>(s, Qs, Ks, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      long long r = q0 + ty * 4 + i;
      float mx = VT_NEG_INF;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        long long c = k0 + tx + 16 * j;
        if (c >= Tk || (causal && c > r)) s[i][j] = VT_NEG_INF;
        mx = fmaxf(mx, s[i][j]);
      }
      float mn = fmaxf(m[i], max16(mx));
      float base = mn == VT_NEG_INF ? 0.f : mn;  // a row with no key yet: keep exp(-inf - base) = 0
      float corr = __expf(m[i] - base);
      m[i] = mn;
      l[i] *= corr;
#pragma unroll
      for (int e = 0; e < DC; ++e) acc[i][e] *= corr;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float p = __expf(s[i][j] - base);
        l[i] += p;
        Ps[(ty * 4 + i) * TF_PS + tx + 16 * j] = p;
      }
    }
    __syncthreads();
    tile_acc<D, false>(acc, Ps, Vs, ty, tx);
  }
  float inv[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float L = sum16(l[i]);
    inv[i] = L > 0.f ? 1.f / L : 0.f;
    long long r = q0 + ty * 4 + i;
    if (tx == 0 && r < Tq) lse[(long long)bh * Tq + r] = L > 0.f ? m[i] + logf(L) : VT_NEG_INF;
  }
  rows_out<D>(o, Strides{osb, osh, ost}, bh, H, q0, Tq, acc, inv, ty, tx);
}

// dQ: block (x, bh) owns query rows [64x, 64x + 64); K and V stream. dS = P * (dP - delta) goes
// through shared memory into dQ += dS K.
// Shared: Q (times scale) | dO (row-major) | K | V (swizzled) | dS (64 x TF_PS).
template <int D>
__global__ void __launch_bounds__(256)
flash_bwd_dq_f32(const float* q, const float* k, const float* v, const float* dout,
    const float* lse, const float* delta, float* dq, int H, int Tq, int Tk, long long qsb, long long qsh,
    long long qst, long long ksb, long long ksh, long long kst, long long vsb, long long vsh, long long vst,
    long long gsb, long long gsh, long long gst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  constexpr int DC = D / 16;
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  FL_STRIDES(gs);
  extern __shared__ __align__(16) float sm[];
  float* Qs = sm;
  float* Gs = Qs + TF_ROWS * (D + 4);
  float* Ks = Gs + TF_ROWS * (D + 4);
  float* Vs = Ks + TF_ROWS * D;
  float* Ss = Vs + TF_ROWS * D;
  int bh = blockIdx.y, tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  long long q0 = (long long)(causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * TF_ROWS;  // causal: longest first
  tile_in<D, false>(Qs, q, qs, bh, H, q0, Tq, scale);
  tile_in<D, false>(Gs, dout, gs, bh, H, q0, Tq, 1.f);
  float acc[4][DC], L[4], Di[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    long long r = q0 + ty * 4 + i;
    L[i] = r < Tq ? lse[(long long)bh * Tq + r] : 0.f;
    Di[i] = r < Tq ? delta[(long long)bh * Tq + r] : 0.f;
#pragma unroll
    for (int e = 0; e < DC; ++e) acc[i][e] = 0.f;
  }
  long long kend = causal ? min((long long)Tk, q0 + TF_ROWS) : (long long)Tk;
  for (long long k0 = 0; k0 < kend; k0 += TF_ROWS) {
    __syncthreads();
    tile_in<D, true>(Ks, k, ks, bh, H, k0, Tk, 1.f);
    tile_in<D, true>(Vs, v, vs, bh, H, k0, Tk, 1.f);
    __syncthreads();
    float s[4][4], dp[4][4];
    tile_dot<D>(s, Qs, Ks, ty, tx);
    tile_dot<D>(dp, Gs, Vs, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      long long r = q0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        long long c = k0 + tx + 16 * j;
        bool on = r < Tq && c < Tk && !(causal && c > r);
        Ss[(ty * 4 + i) * TF_PS + tx + 16 * j] = on ? __expf(s[i][j] - L[i]) * (dp[i][j] - Di[i]) : 0.f;
      }
    }
    __syncthreads();
    tile_acc<D, true>(acc, Ss, Ks, ty, tx);
  }
  float mult[4] = {scale, scale, scale, scale};
  rows_out<D>(dq, Strides{osb, osh, ost}, bh, H, q0, Tq, acc, mult, ty, tx);
}

// dK, dV: block (x, bh) owns key rows [64x, 64x + 64); Q, dO, lse and delta stream in tiles of 64
// queries (causal: from the block's first key on). The transposed scores P^T and dS^T go through
// shared memory into dV += P^T dO and dK += dS^T Q.
// Shared: K (times scale) | V (row-major) | Q | dO (swizzled) | P^T | dS^T (64 x TF_PS) | lse | delta.
template <int D>
__global__ void __launch_bounds__(256)
flash_bwd_dkdv_f32(const float* q, const float* k, const float* v, const float* dout,
    const float* lse, const float* delta, float* dk, float* dv, int H, int Tq, int Tk, long long qsb, long long qsh,
    long long qst, long long ksb, long long ksh, long long kst, long long vsb, long long vsh, long long vst,
    long long gsb, long long gsh, long long gst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  constexpr int DC = D / 16;
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  FL_STRIDES(gs);
  extern __shared__ __align__(16) float sm[];
  float* Ks = sm;
  float* Vs = Ks + TF_ROWS * (D + 4);
  float* Qs = Vs + TF_ROWS * (D + 4);
  float* Gs = Qs + TF_ROWS * D;
  float* Pt = Gs + TF_ROWS * D;
  float* St = Pt + TF_ROWS * TF_PS;
  float* Ls = St + TF_ROWS * TF_PS;
  float* Dl = Ls + TF_ROWS;
  int bh = blockIdx.y, tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  long long c0 = (long long)blockIdx.x * TF_ROWS;
  tile_in<D, false>(Ks, k, ks, bh, H, c0, Tk, scale);
  tile_in<D, false>(Vs, v, vs, bh, H, c0, Tk, 1.f);
  float gk[4][DC], gv[4][DC];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < DC; ++e) { gk[i][e] = 0.f; gv[i][e] = 0.f; }
  for (long long r0 = causal ? c0 : 0; r0 < Tq; r0 += TF_ROWS) {
    __syncthreads();
    tile_in<D, true>(Qs, q, qs, bh, H, r0, Tq, 1.f);
    tile_in<D, true>(Gs, dout, gs, bh, H, r0, Tq, 1.f);
    for (int j = threadIdx.x; j < TF_ROWS; j += blockDim.x) {
      long long r = r0 + j;
      Ls[j] = r < Tq ? lse[(long long)bh * Tq + r] : 0.f;
      Dl[j] = r < Tq ? delta[(long long)bh * Tq + r] : 0.f;
    }
    __syncthreads();
    float s[4][4], dp[4][4];
    tile_dot<D>(s, Ks, Qs, ty, tx);
    tile_dot<D>(dp, Vs, Gs, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      long long c = c0 + ty * 4 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        int jj = tx + 16 * j;
        long long r = r0 + jj;
        bool on = r < Tq && c < Tk && !(causal && c > r);
        float p = on ? __expf(s[i][j] - Ls[jj]) : 0.f;
        Pt[(ty * 4 + i) * TF_PS + jj] = p;
        St[(ty * 4 + i) * TF_PS + jj] = p * (dp[i][j] - Dl[jj]);
      }
    }
    __syncthreads();
    tile_acc<D, true>(gv, Pt, Gs, ty, tx);
    tile_acc<D, true>(gk, St, Qs, ty, tx);
  }
  float one[4] = {1.f, 1.f, 1.f, 1.f}, sc[4] = {scale, scale, scale, scale};
  rows_out<D>(dk, Strides{osb, osh, ost}, bh, H, c0, Tk, gk, sc, ty, tx);
  rows_out<D>(dv, Strides{osb, osh, ost}, bh, H, c0, Tk, gv, one, ty, tx);
}
