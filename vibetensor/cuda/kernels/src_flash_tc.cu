// Flash attention on tensor cores (sm_80+, float16/bfloat16 in memory, float32 accumulation):
// mma.sync m16n8k16 through inline PTX, so no header beyond cuda_fp16/cuda_bf16 is needed.
// Appended to src_rows.cu and src_flash.cu (Strides, row_ptr, VT_NEG_INF).
//
// Each warp owns 16 rows (query rows forward and for dQ, key rows for dK/dV); a block is 4 warps
// (64 rows). The other side's rows stream through shared memory in tiles of TC_TILE rows. Fragment
// layouts are the PTX ISA's for m16n8k16: lane = 4*g + t holds A(g | g+8, 2t..2t+1 | +8),
// B(2t..2t+1 | +8, g) and C(g | g+8, 2t..2t+1). Score accumulators (C layout) become the A operand
// of the next product without leaving registers. Probabilities and dS are rounded to the input
// dtype for their products (as FlashAttention-2 does); everything else accumulates in float32.
// B operands come from shared memory four registers per ldmatrix.x4 (a quarter of the 32-bit loads of
// one register each); masks compare 32-bit tile columns against per-row limits set once per tile. All
// three kernels copy the next tile by cp.async while they compute on this one (two stages; rows not
// 16-byte aligned take in-place loads); the forward's key tile is 64 rows up to D = 64 and 32 above, so
// that two stages fit 48 KB of static shared memory. The dQ kernel computes delta = rowsum(dO * O) for
// the dK/dV kernel after it. BENCHMARKS.md, fifteenth and sixteenth sessions, has the H100 figures.

#define TC_WARPS 4
#define TC_ROWS (16 * TC_WARPS)

template <typename T> struct TC;
// TC<T>: pack two floats into one register of T pairs; c += a @ b on one m16n8k16 tile (PTX type PT).
#define VT_TC(T, T2, CVT, UNPK, PT)                                                                                  \
  template <> struct TC<T> {                                                                                   \
    static __device__ __forceinline__ unsigned pack(float a, float b) {                                        \
      T2 h = CVT(a, b);                                                                                        \
      return *reinterpret_cast<unsigned*>(&h);                                                                 \
    }                                                                                                          \
    static __device__ __forceinline__ float2 unpack(unsigned x) {                                              \
      return UNPK(*reinterpret_cast<T2*>(&x));                                                                 \
    }                                                                                                          \
    static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {        \
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PT "." PT ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "   \
                   "{%8,%9}, {%0,%1,%2,%3};\n"                                                                 \
                   : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                            \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                            \
    }                                                                                                          \
  };
VT_TC(__half, __half2, __floats2half2_rn, __half22float2, "f16")
VT_TC(__nv_bfloat16, __nv_bfloat162, __floats2bfloat162_rn, __bfloat1622float2, "bf16")

// B operands of a product whose (k x n) tile is stored k-major -- rows r0..r0+15 of s, columns c0..c0+15 --
// transposed on the way by one ldmatrix.x4: (b0, b1) for columns c0..c0+7 and (b2, b3) for c0+8..c0+15,
// with b0 = (r0 + 2t, r0 + 2t + 1 ; c0 + g) and b1 its rows + 8.
__device__ __forceinline__ void sh_colpairs2(const unsigned short* s, int ld, int r0, int c0, unsigned& b0, unsigned& b1,
                                             unsigned& b2, unsigned& b3) {
  int l = threadIdx.x & 31;
  unsigned addr = (unsigned)__cvta_generic_to_shared(s + (r0 + (l & 15)) * ld + c0 + (l >> 4) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3) : "r"(addr));
}
// B operands of A @ B^T where B is a row-major (n x k) shared tile: rows n0..n0+15, columns k0..k0+15, by
// one ldmatrix.x4 (no transpose): (b0, b1) for rows n0..n0+7 and (b2, b3) for rows n0+8..n0+15, with
// b0 = (row n0 + g ; columns k0 + 2t, k0 + 2t + 1) and b1 its columns + 8.
__device__ __forceinline__ void sh_rowpairs2(const unsigned short* s, int ld, int n0, int k0, unsigned& b0, unsigned& b1,
                                             unsigned& b2, unsigned& b3) {
  int l = threadIdx.x & 31;
  unsigned addr = (unsigned)__cvta_generic_to_shared(s + (n0 + (l & 7) + (l >> 4) * 8) * ld + k0 + ((l >> 3) & 1) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3) : "r"(addr));
}

// Rows [r0, r0 + ROWS) of a (T, D) matrix at base (this block's batch/head already applied; rows
// st elements apart) into shared memory as raw 16-bit values, zeros past n. 16-byte vector loads
// when base and the row stride allow (D is a multiple of 8), else element by element.
template <int D, int ROWS>
__device__ __forceinline__ void tc_load_tile(unsigned short* dst, const unsigned short* base, long long st,
                                             long long r0, long long n) {
  constexpr int LD = D + 8, V = D / 8;
  if ((((unsigned long long)base | (unsigned long long)(st * 2)) & 15) == 0) {
    for (int idx = threadIdx.x; idx < ROWS * V; idx += blockDim.x) {
      int j = idx / V, c = (idx % V) * 8;
      long long r = r0 + j;
      uint4 x = make_uint4(0, 0, 0, 0);
      if (r < n) x = *reinterpret_cast<const uint4*>(base + r * st + c);
      *reinterpret_cast<uint4*>(dst + j * LD + c) = x;
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * D; idx += blockDim.x) {
      int j = idx / D, d = idx % D;
      long long r = r0 + j;
      dst[j * LD + d] = r < n ? base[r * st + d] : 0;
    }
  }
}

// tc_load_tile by cp.async (sm_80+): the copies run while the block computes on the other stage. Needs
// 16-byte aligned rows (tc_aligned); rows past n are zero-filled (source size 0, row 0's address).
__device__ __forceinline__ bool tc_aligned(const unsigned short* base, long long st) {
  return (((unsigned long long)base | (unsigned long long)(st * 2)) & 15) == 0;
}
template <int D, int ROWS>
__device__ __forceinline__ void tc_load_tile_async(unsigned short* dst, const unsigned short* base, long long st,
                                                   long long r0, long long n) {
  constexpr int LD = D + 8, V = D / 8;
  for (int idx = threadIdx.x; idx < ROWS * V; idx += blockDim.x) {
    int j = idx / V, c = (idx % V) * 8;
    long long r = r0 + j;
    const unsigned short* src = base + (r < n ? r : 0) * st + c;
    unsigned sdst = (unsigned)__cvta_generic_to_shared(dst + j * LD + c);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sdst), "l"(src), "r"(r < n ? 16 : 0));
  }
}
// one float by cp.async (4 bytes; zero-filled when !ok, from a valid address)
__device__ __forceinline__ void cp_async_f32(float* dst, const float* src, bool ok) {
  unsigned sdst = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(sdst), "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// K and V rows [k0, k0 + TILE) into one stage: by cp.async (one commit group), else in place.
template <int D, int TILE>
__device__ __forceinline__ void tc_kv_load(unsigned short* ks, unsigned short* vs, const unsigned short* kbase,
                                           long long kst, const unsigned short* vbase, long long vst, long long k0,
                                           long long Tk, bool async) {
  if (async) {
    tc_load_tile_async<D, TILE>(ks, kbase, kst, k0, Tk);
    tc_load_tile_async<D, TILE>(vs, vbase, vst, k0, Tk);
    cp_async_commit();
  } else {
    tc_load_tile<D, TILE>(ks, kbase, kst, k0, Tk);
    tc_load_tile<D, TILE>(vs, vbase, vst, k0, Tk);
  }
}
// The forward's and dQ's key loop, between its two barriers: tile k0 ready in stage `stage`. Two stages
// (async): tile k0 was prefetched; start the next one into the other stage and wait for this one's copies
// only. One stage: load tile k0 in place.
template <int D, int TILE, int LDT>
__device__ __forceinline__ void tc_kv_next(unsigned short (*Ks)[LDT], unsigned short (*Vs)[LDT],
                                           const unsigned short* kbase, long long kst, const unsigned short* vbase,
                                           long long vst, long long k0, long long kend, long long Tk, int stage,
                                           bool async) {
  if (!async) {
    tc_kv_load<D, TILE>(Ks[0], Vs[0], kbase, kst, vbase, vst, k0, Tk, false);
  } else if (k0 + TILE < kend) {
    tc_kv_load<D, TILE>(Ks[stage ^ 1], Vs[stage ^ 1], kbase, kst, vbase, vst, k0 + TILE, Tk, true);
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
}

// Causal forward and dQ blocks: the last row tiles see the most keys, so they are scheduled first (blocks
// start roughly in blockIdx order), leaving the short ones for the tail of the grid.
#ifndef VT_TC_HEAVY_FIRST
#define VT_TC_HEAVY_FIRST 1
#endif
__device__ __forceinline__ long long tc_row_tile(int causal) {
  return (VT_TC_HEAVY_FIRST && causal) ? (long long)(gridDim.x - 1 - blockIdx.x) : (long long)blockIdx.x;
}

template <typename T>
__device__ __forceinline__ const unsigned short* bh_base(const T* p, Strides s, int bh, int H) {
  return reinterpret_cast<const unsigned short*>(p + (long long)(bh / H) * s.b + (long long)(bh % H) * s.h);
}

// A fragments of 16 rows x D of a strided matrix, straight from global memory (once per block).
template <typename T, int D>
__device__ __forceinline__ void tc_load_a(unsigned (*a)[4], const T* base, Strides s, int bh, int H, long long row0,
                                          long long n) {
  int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const unsigned short* ra = row0 + g < n ? reinterpret_cast<const unsigned short*>(row_ptr(base, s, bh, H, row0 + g)) : nullptr;
  const unsigned short* rb = row0 + g + 8 < n ? reinterpret_cast<const unsigned short*>(row_ptr(base, s, bh, H, row0 + g + 8)) : nullptr;
  if ((((unsigned long long)ra | (unsigned long long)rb) & 3) == 0) {  // rows on 4 bytes: one load per register
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      int c = kk * 16 + 2 * t;
      a[kk][0] = ra ? *reinterpret_cast<const unsigned*>(ra + c) : 0u;
      a[kk][1] = rb ? *reinterpret_cast<const unsigned*>(rb + c) : 0u;
      a[kk][2] = ra ? *reinterpret_cast<const unsigned*>(ra + c + 8) : 0u;
      a[kk][3] = rb ? *reinterpret_cast<const unsigned*>(rb + c + 8) : 0u;
    }
    return;
  }
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    int c = kk * 16 + 2 * t;
    a[kk][0] = ra ? ((unsigned)ra[c] | ((unsigned)ra[c + 1] << 16)) : 0u;
    a[kk][1] = rb ? ((unsigned)rb[c] | ((unsigned)rb[c + 1] << 16)) : 0u;
    a[kk][2] = ra ? ((unsigned)ra[c + 8] | ((unsigned)ra[c + 9] << 16)) : 0u;
    a[kk][3] = rb ? ((unsigned)rb[c + 8] | ((unsigned)rb[c + 9] << 16)) : 0u;
  }
}

// p[c], p[c + 1] = x, y (rounded to T as st() does): one 32-bit store where p + c is 4-byte aligned
template <typename T>
__device__ __forceinline__ void st_pair(T* p, int c, float x, float y) {
  if ((((unsigned long long)(p + c)) & 3) == 0) {
    *reinterpret_cast<unsigned*>(p + c) = TC<T>::pack(x, y);
  } else {
    st(p, c, x);
    st(p, c + 1, y);
  }
}

// acc[n] (16 x 8 per n) = A (16 x D, fragments) @ B^T where B is a (TILE x D) row-major shared tile.
template <typename T, int D, int TILE>
__device__ __forceinline__ void tc_abt(float (*acc)[4], const unsigned (*a)[4], const unsigned short* b) {
  constexpr int LD = D + 8;
#pragma unroll
  for (int n = 0; n < TILE / 8; n += 2) {
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    acc[n + 1][0] = acc[n + 1][1] = acc[n + 1][2] = acc[n + 1][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      unsigned b0, b1, b2, b3;
      sh_rowpairs2(b, LD, n * 8, kk * 16, b0, b1, b2, b3);
      TC<T>::mma(acc[n], a[kk], b0, b1);
      TC<T>::mma(acc[n + 1], a[kk], b2, b3);
    }
  }
}

// out[dn] (16 x 8 per dn) += P (16 x TILE, C-layout scores) @ V where V is a (TILE x D) shared tile.
template <typename T, int D, int TILE>
__device__ __forceinline__ void tc_pv(float (*out)[4], const float (*p)[4], const unsigned short* v) {
  constexpr int LD = D + 8;
#pragma unroll
  for (int kk = 0; kk < TILE / 16; ++kk) {
    unsigned a[4] = {TC<T>::pack(p[2 * kk][0], p[2 * kk][1]), TC<T>::pack(p[2 * kk][2], p[2 * kk][3]),
                     TC<T>::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]), TC<T>::pack(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dn = 0; dn < D / 8; dn += 2) {
      unsigned b0, b1, b2, b3;
      sh_colpairs2(v, LD, kk * 16, dn * 8, b0, b1, b2, b3);
      TC<T>::mma(out[dn], a, b0, b1);
      TC<T>::mma(out[dn + 1], a, b2, b3);
    }
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffff, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffff, v, 1);
  return v + __shfl_xor_sync(0xffffffff, v, 2);
}

// Key tile of the forward: 64 rows up to D = 64; 32 above, where two stages of 64 would not fit the 48 KB of
// static shared memory (measured against one in-place stage of 64: BENCHMARKS.md, sixteenth session).
#define TC_FWD_TILE 64
#ifndef VT_TC_FWD_TILE_BIG
#define VT_TC_FWD_TILE_BIG 32
#endif
template <typename T, int D>
__global__ void __launch_bounds__(128) flash_fwd_tc(const T* q, const T* k, const T* v, T* o, float* lse, int H, int Tq,
    int Tk, long long qsb, long long qsh, long long qst, long long ksb, long long ksh, long long kst, long long vsb,
    long long vsh, long long vst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  constexpr int TILE = D <= 64 ? TC_FWD_TILE : VT_TC_FWD_TILE_BIG, LD = D + 8;
  // two stages of K/V tiles where they fit the 48 KB of static shared memory: tile i + 1 is copied
  // (cp.async) while tile i is computed on; else one stage, loaded in place
  constexpr int STAGES = 2 * 2 * TILE * LD * 2 <= 48 * 1024 ? 2 : 1;
  __shared__ __align__(16) unsigned short Ks[STAGES][TILE * LD], Vs[STAGES][TILE * LD];
  int bh = blockIdx.y, w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const long long tile = tc_row_tile(causal);
  long long row0 = tile * TC_ROWS + w * 16;
  long long ra = row0 + g, rb = row0 + g + 8;
  unsigned qa[D / 16][4];
  tc_load_a<T, D>(qa, q, qs, bh, H, row0, Tq);
  const unsigned short *kbase = bh_base(k, ks, bh, H), *vbase = bh_base(v, vs, bh, H);
  float acc[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.f;
  float ma = VT_NEG_INF, mb = VT_NEG_INF, la = 0.f, lb = 0.f;  // la/lb: this lane's partial row sums
  long long last_row = min((long long)Tq, (tile + 1) * TC_ROWS) - 1;
  long long kend = causal ? min((long long)Tk, last_row + 1) : (long long)Tk;
  // the keys each of this lane's two rows sees end before ea / eb (Tk, or the row + 1 when causal)
  long long ea = causal ? min((long long)Tk, ra + 1) : (long long)Tk, eb = causal ? min((long long)Tk, rb + 1) : (long long)Tk;
  const bool async = STAGES == 2 && tc_aligned(kbase, ks.t) && tc_aligned(vbase, vs.t);  // uniform per block
  if (async && kend > 0) tc_kv_load<D, TILE>(Ks[0], Vs[0], kbase, ks.t, vbase, vs.t, 0, Tk, true);
  int stage = 0;
  for (long long k0 = 0; k0 < kend; k0 += TILE, stage ^= (int)async) {
    __syncthreads();  // every warp is done with the stage about to be refilled
    tc_kv_next<D, TILE>(Ks, Vs, kbase, ks.t, vbase, vs.t, k0, kend, Tk, stage, async);
    __syncthreads();
    if (row0 >= Tq || (causal && k0 > row0 + 15)) continue;  // this warp's rows see none of the tile
    const unsigned short *Kt = Ks[stage], *Vt = Vs[stage];
    float s[TILE / 8][4];
    tc_abt<T, D, TILE>(s, qa, Kt);
    float xa = VT_NEG_INF, xb = VT_NEG_INF;
    // tile columns each row sees: [0, va) and [0, vb) -- one 32-bit compare per score
    int va = (int)max(0LL, min((long long)TILE, ea - k0)), vb = (int)max(0LL, min((long long)TILE, eb - k0));
#pragma unroll
    for (int n = 0; n < TILE / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int kc = n * 8 + 2 * t + (e & 1);
        float x = kc < (e < 2 ? va : vb) ? s[n][e] * scale : VT_NEG_INF;
        s[n][e] = x;
        if (e < 2) xa = fmaxf(xa, x); else xb = fmaxf(xb, x);
      }
    float na = fmaxf(ma, quad_max(xa)), nb = fmaxf(mb, quad_max(xb));
    float ca = ma == VT_NEG_INF ? 0.f : __expf(ma - na), cb = mb == VT_NEG_INF ? 0.f : __expf(mb - nb);
    float sa = 0.f, sb = 0.f;
#pragma unroll
    for (int n = 0; n < TILE / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float m = e < 2 ? na : nb;
        float p = m == VT_NEG_INF ? 0.f : __expf(s[n][e] - m);
        s[n][e] = p;
        if (e < 2) sa += p; else sb += p;
      }
    la = la * ca + sa;
    lb = lb * cb + sb;
    ma = na;
    mb = nb;
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) { acc[dn][0] *= ca; acc[dn][1] *= ca; acc[dn][2] *= cb; acc[dn][3] *= cb; }
    tc_pv<T, D, TILE>(acc, s, Vt);
  }
  la = quad_sum(la);
  lb = quad_sum(lb);
  float ia = la > 0.f ? 1.f / la : 0.f, ib = lb > 0.f ? 1.f / lb : 0.f;
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
    int c = dn * 8 + 2 * t;
    if (ra < Tq) st_pair(out_ptr(o, Strides{osb, osh, ost}, bh, H, ra), c, acc[dn][0] * ia, acc[dn][1] * ia);
    if (rb < Tq) st_pair(out_ptr(o, Strides{osb, osh, ost}, bh, H, rb), c, acc[dn][2] * ib, acc[dn][3] * ib);
  }
  if (t == 0) {
    if (ra < Tq) lse[(long long)bh * Tq + ra] = la > 0.f ? ma + logf(la) : VT_NEG_INF;
    if (rb < Tq) lse[(long long)bh * Tq + rb] = lb > 0.f ? mb + logf(lb) : VT_NEG_INF;
  }
}

// dQ = scale * dS @ K with dS = P * (dO V^T - delta), P = exp(scale * Q K^T - lse); one warp per 16 query rows.
// The backward kernels' tiles: 32 rows, two stages (the next tile copied by cp.async while this one is
// computed on) when rows are 16-byte aligned; VT_TC_BWD_STAGES=1 gives the in-place loads of before.
#define TC_BWD_TILE 32
#ifndef VT_TC_BWD_STAGES
#define VT_TC_BWD_STAGES 2
#endif
template <typename T, int D>
__global__ void __launch_bounds__(128) flash_bwd_dq_tc(const T* q, const T* k, const T* v, const T* dout,
    const float* lse, float* delta, T* dq, int H, int Tq, int Tk, long long qsb, long long qsh, long long qst,
    long long ksb, long long ksh, long long kst, long long vsb, long long vsh, long long vst, long long gsb,
    long long gsh, long long gst, float scale, int causal, long long osb, long long osh,
    long long ost, const T* o, long long Osb, long long Osh, long long Ost) {
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  FL_STRIDES(gs);
  constexpr int TILE = TC_BWD_TILE, LD = D + 8, STAGES = VT_TC_BWD_STAGES;
  __shared__ __align__(16) unsigned short Ks[STAGES][TILE * LD], Vs[STAGES][TILE * LD];
  int bh = blockIdx.y, w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const long long tile = tc_row_tile(causal);
  long long row0 = tile * TC_ROWS + w * 16;
  long long ra = row0 + g, rb = row0 + g + 8;
  unsigned qa[D / 16][4], ga[D / 16][4];
  tc_load_a<T, D>(qa, q, qs, bh, H, row0, Tq);
  tc_load_a<T, D>(ga, dout, gs, bh, H, row0, Tq);
  float La = ra < Tq ? lse[(long long)bh * Tq + ra] : 0.f, Lb = rb < Tq ? lse[(long long)bh * Tq + rb] : 0.f;
  // delta = rowsum(dO * O) of this warp's rows, from dO's fragments and O read in the same layout; written
  // for the dK/dV kernel, which runs next on the stream (no separate delta launch)
  float Da = 0.f, Db = 0.f;
  {
    Strides ost_{Osb, Osh, Ost};
    const unsigned* oa = ra < Tq ? reinterpret_cast<const unsigned*>(row_ptr(o, ost_, bh, H, ra)) : nullptr;
    const unsigned* ob = rb < Tq ? reinterpret_cast<const unsigned*>(row_ptr(o, ost_, bh, H, rb)) : nullptr;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      int c = kk * 8 + t;  // 32-bit pairs: columns 16 kk + 2t (and + 8 below)
      if (oa) {
        float2 x0 = TC<T>::unpack(oa[c]), x1 = TC<T>::unpack(oa[c + 4]);
        float2 y0 = TC<T>::unpack(ga[kk][0]), y1 = TC<T>::unpack(ga[kk][2]);
        Da += x0.x * y0.x + x0.y * y0.y + x1.x * y1.x + x1.y * y1.y;
      }
      if (ob) {
        float2 x0 = TC<T>::unpack(ob[c]), x1 = TC<T>::unpack(ob[c + 4]);
        float2 y0 = TC<T>::unpack(ga[kk][1]), y1 = TC<T>::unpack(ga[kk][3]);
        Db += x0.x * y0.x + x0.y * y0.y + x1.x * y1.x + x1.y * y1.y;
      }
    }
    Da = quad_sum(Da);
    Db = quad_sum(Db);
    if (t == 0) {
      if (ra < Tq) delta[(long long)bh * Tq + ra] = Da;
      if (rb < Tq) delta[(long long)bh * Tq + rb] = Db;
    }
  }
  const unsigned short *kbase = bh_base(k, ks, bh, H), *vbase = bh_base(v, vs, bh, H);
  float acc[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.f;
  long long last_row = min((long long)Tq, (tile + 1) * TC_ROWS) - 1;
  long long kend = causal ? min((long long)Tk, last_row + 1) : (long long)Tk;
  // keys each of this lane's rows sees end before ea / eb (none for a row past Tq), as in the forward
  long long ea = ra < Tq ? (causal ? min((long long)Tk, ra + 1) : (long long)Tk) : 0;
  long long eb = rb < Tq ? (causal ? min((long long)Tk, rb + 1) : (long long)Tk) : 0;
  const bool async = STAGES == 2 && tc_aligned(kbase, ks.t) && tc_aligned(vbase, vs.t);  // uniform per block
  if (async && kend > 0) tc_kv_load<D, TILE>(Ks[0], Vs[0], kbase, ks.t, vbase, vs.t, 0, Tk, true);
  int stage = 0;
  for (long long k0 = 0; k0 < kend; k0 += TILE, stage ^= (int)async) {
    __syncthreads();  // every warp is done with the stage about to be refilled
    tc_kv_next<D, TILE>(Ks, Vs, kbase, ks.t, vbase, vs.t, k0, kend, Tk, stage, async);
    __syncthreads();
    if (row0 >= Tq || (causal && k0 > row0 + 15)) continue;
    const unsigned short *Kt = Ks[stage], *Vt = Vs[stage];
    float s[TILE / 8][4], dp[TILE / 8][4];
    tc_abt<T, D, TILE>(s, qa, Kt);
    tc_abt<T, D, TILE>(dp, ga, Vt);
    int va = (int)max(0LL, min((long long)TILE, ea - k0)), vb = (int)max(0LL, min((long long)TILE, eb - k0));
#pragma unroll
    for (int n = 0; n < TILE / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        bool live = n * 8 + 2 * t + (e & 1) < (e < 2 ? va : vb);
        float p = live ? __expf(s[n][e] * scale - (e < 2 ? La : Lb)) : 0.f;
        s[n][e] = p * (dp[n][e] - (e < 2 ? Da : Db));
      }
    // dQ += dS @ K: K's tile is the B operand stored k-major (key rows), as V is in the forward
    tc_pv<T, D, TILE>(acc, s, Kt);
  }
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
    int c = dn * 8 + 2 * t;
    if (ra < Tq) st_pair(out_ptr(dq, Strides{osb, osh, ost}, bh, H, ra), c, acc[dn][0] * scale, acc[dn][1] * scale);
    if (rb < Tq) st_pair(out_ptr(dq, Strides{osb, osh, ost}, bh, H, rb), c, acc[dn][2] * scale, acc[dn][3] * scale);
  }
}

// dV = P^T @ dO and dK = scale * dS^T @ Q; one warp per 16 key rows (their K and V as A fragments),
// query rows of Q and dO streaming through shared memory with their lse and delta.
template <typename T, int D>
__global__ void __launch_bounds__(128) flash_bwd_dkdv_tc(const T* q, const T* k, const T* v, const T* dout,
    const float* lse, const float* delta, T* dk, T* dv, int H, int Tq, int Tk, long long qsb, long long qsh,
    long long qst, long long ksb, long long ksh, long long kst, long long vsb, long long vsh, long long vst,
    long long gsb, long long gsh, long long gst, float scale, int causal, long long osb, long long osh,
    long long ost) {
  FL_STRIDES(qs);
  FL_STRIDES(ks);
  FL_STRIDES(vs);
  FL_STRIDES(gs);
  constexpr int TILE = TC_BWD_TILE, LD = D + 8, STAGES = VT_TC_BWD_STAGES;
  __shared__ __align__(16) unsigned short Qs[STAGES][TILE * LD], Gs[STAGES][TILE * LD];
  __shared__ __align__(16) float Ls[STAGES][TILE], Ds[STAGES][TILE];
  int bh = blockIdx.y, w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  long long key0 = (long long)blockIdx.x * TC_ROWS + w * 16;
  long long ka = key0 + g, kb = key0 + g + 8;
  unsigned kfr[D / 16][4], vfr[D / 16][4];
  tc_load_a<T, D>(kfr, k, ks, bh, H, key0, Tk);
  tc_load_a<T, D>(vfr, v, vs, bh, H, key0, Tk);
  const unsigned short *qbase = bh_base(q, qs, bh, H), *gbase = bh_base(dout, gs, bh, H);
  float gk[D / 8][4], gv[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn)
#pragma unroll
    for (int e = 0; e < 4; ++e) gk[dn][e] = gv[dn][e] = 0.f;
  long long q0 = causal ? (long long)blockIdx.x * TC_ROWS : 0;  // earlier queries see none of these keys
  q0 -= q0 % TILE;
  const float *lrow = lse + (long long)bh * Tq, *drow = delta + (long long)bh * Tq;
  const bool async = STAGES == 2 && tc_aligned(qbase, qs.t) && tc_aligned(gbase, gs.t);  // uniform per block
  // tile qt's Q, dO rows and their lse/delta into stage st: by cp.async, else in place
  auto load = [&](int st, long long qt) {
    if (async) {
      tc_load_tile_async<D, TILE>(Qs[st], qbase, qs.t, qt, Tq);
      tc_load_tile_async<D, TILE>(Gs[st], gbase, gs.t, qt, Tq);
      for (int j = threadIdx.x; j < TILE; j += blockDim.x) {
        long long i = qt + j;
        cp_async_f32(&Ls[st][j], lrow + (i < Tq ? i : 0), i < Tq);
        cp_async_f32(&Ds[st][j], drow + (i < Tq ? i : 0), i < Tq);
      }
      cp_async_commit();
    } else {
      tc_load_tile<D, TILE>(Qs[st], qbase, qs.t, qt, Tq);
      tc_load_tile<D, TILE>(Gs[st], gbase, gs.t, qt, Tq);
      for (int j = threadIdx.x; j < TILE; j += blockDim.x) {
        long long i = qt + j;
        Ls[st][j] = i < Tq ? lrow[i] : 0.f;
        Ds[st][j] = i < Tq ? drow[i] : 0.f;
      }
    }
  };
  if (async && q0 < Tq) load(0, q0);
  int stage = 0;
  for (; q0 < Tq; q0 += TILE, stage ^= (int)async) {
    __syncthreads();  // every warp is done with the stage about to be refilled
    if (async) {
      if (q0 + TILE < Tq) {
        load(stage ^ 1, q0 + TILE);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
    } else {
      load(0, q0);
    }
    __syncthreads();
    if (key0 >= Tk || (causal && q0 + TILE - 1 < key0)) continue;  // no query of the tile sees these keys
    const unsigned short *Qt = Qs[stage], *Gt = Gs[stage];
    const float *Lt = Ls[stage], *Dt = Ds[stage];
    float s[TILE / 8][4], dp[TILE / 8][4];
    tc_abt<T, D, TILE>(s, kfr, Qt);   // S^T (keys x queries)
    tc_abt<T, D, TILE>(dp, vfr, Gt);  // dP^T = V dO^T
    // tile columns (queries) each of this lane's key rows sees: [lo, hi) -- from the key itself when causal,
    // up to the last query; none for a key row past Tk
    int hq = (int)min((long long)TILE, Tq - q0);
    int loa = causal ? (int)max(0LL, min((long long)TILE, ka - q0)) : 0, hia = ka < Tk ? hq : 0;
    int lob = causal ? (int)max(0LL, min((long long)TILE, kb - q0)) : 0, hib = kb < Tk ? hq : 0;
#pragma unroll
    for (int n = 0; n < TILE / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int j = n * 8 + 2 * t + (e & 1);
        bool live = j >= (e < 2 ? loa : lob) && j < (e < 2 ? hia : hib);
        float p = live ? __expf(s[n][e] * scale - Lt[j]) : 0.f;
        s[n][e] = p;
        dp[n][e] = p * (dp[n][e] - Dt[j]);
      }
    tc_pv<T, D, TILE>(gv, s, Gt);   // dV += P^T dO
    tc_pv<T, D, TILE>(gk, dp, Qt);  // dK += dS^T Q
  }
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
    int c = dn * 8 + 2 * t;
    if (ka < Tk) {
      Strides os{osb, osh, ost};
      T* pk = out_ptr(dk, os, bh, H, ka); T* pv = out_ptr(dv, os, bh, H, ka);
      st_pair(pk, c, gk[dn][0] * scale, gk[dn][1] * scale);
      st_pair(pv, c, gv[dn][0], gv[dn][1]);
    }
    if (kb < Tk) {
      Strides os{osb, osh, ost};
      T* pk = out_ptr(dk, os, bh, H, kb); T* pv = out_ptr(dv, os, bh, H, kb);
      st_pair(pk, c, gk[dn][2] * scale, gk[dn][3] * scale);
      st_pair(pv, c, gv[dn][2], gv[dn][3]);
    }
  }
}
