// Pointwise kernels in the array's own dtype (float/half/bfloat16 in, float32 math): CuPy's generic
// bfloat16 elementwise path runs several times slower than the memory bound.
// Appended to src_rows.cu (which defines ld/st and the reductions) in one module.

// GELU: approx 0 = erf form, 1 = tanh form.
__device__ __forceinline__ float gelu_f(float v, int approx) {
  if (approx) return 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
}
__device__ __forceinline__ float gelu_d(float v, int approx) {  // d gelu / dv
  if (approx) {
    float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
    float du = 0.7978845608028654f * (1.f + 3.f * 0.044715f * v * v);
    return 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du;
  }
  return 0.5f * (1.f + erff(v * 0.70710678118654752f)) + v * 0.3989422804014327f * __expf(-0.5f * v * v);
}

template <typename T>
__global__ void gelu_fwd(const T* x, T* y, long long n, int approx) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(y, i, gelu_f(ld(x, i), approx));
}

template <typename T>
__global__ void gelu_bwd(const T* x, const T* g, T* dx, long long n, int approx) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(dx, i, ld(g, i) * gelu_d(ld(x, i), approx));
}

// y[r, c] += b[c] in place (the fresh output of a GEMM): the bias of linear without a second buffer.
template <typename T>
__global__ void bias_add(T* y, const T* b, long long n, long long N) {
  if (n < 0x7fffffffLL) {  // 32-bit indices: a 64-bit modulo per element costs more than the memory traffic
    unsigned nn = (unsigned)n, NN = (unsigned)N;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < nn; i += gridDim.x * blockDim.x)
      st(y, i, ld(y, i) + ld(b, i % NN));
    return;
  }
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(y, i, ld(y, i) + ld(b, i % N));
}

// Column partial sums of an (M, N) matrix: partial[g, c] = sum over rows r = g, g+G, ... (bias grads).
template <typename T>
__global__ void col_sum(const T* x, float* partial, long long M, long long N) {
  long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  int g = blockIdx.y, G = gridDim.y;
  if (c >= N) return;
  float s = 0.f;
  for (long long r = g; r < M; r += G) s += ld(x, r * N + c);
  partial[(long long)g * N + c] = s;
}

// out[c] = sum over g of partial[g, c] (the second pass of the column sums above): one warp per column.
// gridDim.y stacked (G, N) inputs give gridDim.y stacked outputs of N (layer norm's weight and bias).
extern "C" __global__ void partial_sum(const float* partial, float* out, long long G, long long N) {
  partial += blockIdx.y * G * N;
  out += blockIdx.y * N;
  long long c = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (c >= N) return;
  float s = 0.f;
  for (long long g = lane; g < G; g += 32) s += partial[g * N + c];
  s = warp_sum(s);
  if (lane == 0) out[c] = s;
}

// dtype casts float32 <-> float16/bfloat16, four elements per thread (16-byte float32 side, 8-byte half
// side: CuPy's astype moves one element per thread at about half the memory bound). Both pointers
// must be 16-byte aligned; the last n % 4 elements are done by the first threads.
template <typename T> struct Pack4;
template <> struct Pack4<float> {
  static __device__ __forceinline__ void load(const float* p, float* a) {
    float4 v = *reinterpret_cast<const float4*>(p); a[0] = v.x; a[1] = v.y; a[2] = v.z; a[3] = v.w;
  }
  static __device__ __forceinline__ void store(float* p, const float* a) {
    *reinterpret_cast<float4*>(p) = make_float4(a[0], a[1], a[2], a[3]);
  }
};
// The two 2-byte types differ only in their pair type and conversions.
#define VT_PACK4_HALF(T, T2, TO_F2, FROM_F2)                                        \
  template <> struct Pack4<T> {                                                     \
    static __device__ __forceinline__ void load(const T* p, float* a) {             \
      uint2 u = *reinterpret_cast<const uint2*>(p);                                 \
      float2 lo = TO_F2(*reinterpret_cast<T2*>(&u.x));                              \
      float2 hi = TO_F2(*reinterpret_cast<T2*>(&u.y));                              \
      a[0] = lo.x; a[1] = lo.y; a[2] = hi.x; a[3] = hi.y;                           \
    }                                                                               \
    static __device__ __forceinline__ void store(T* p, const float* a) {            \
      T2 lo = FROM_F2(a[0], a[1]), hi = FROM_F2(a[2], a[3]);                        \
      uint2 u;                                                                      \
      u.x = *reinterpret_cast<unsigned*>(&lo);                                      \
      u.y = *reinterpret_cast<unsigned*>(&hi);                                      \
      *reinterpret_cast<uint2*>(p) = u;                                             \
    }                                                                               \
  };
VT_PACK4_HALF(__nv_bfloat16, __nv_bfloat162, __bfloat1622float2, __floats2bfloat162_rn)
VT_PACK4_HALF(__half, __half2, __half22float2, __floats2half2_rn)

template <typename S, typename D>
__global__ void cast4(const S* x, D* y, long long n) {
  long long n4 = n >> 2, i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long k = i; k < n4; k += (long long)gridDim.x * blockDim.x) {
    float a[4];
    Pack4<S>::load(x + 4 * k, a);
    Pack4<D>::store(y + 4 * k, a);
  }
  if (i < (n & 3)) st(y, 4 * n4 + i, ld(x, 4 * n4 + i));
}

// Up to three casts in one launch (an autocast linear's input, weight and bias): quads [0, q0) are array
// 0's, then array 1's, then array 2's; each array's n % 4 tail by the first threads. Unused slots have n = 0.
template <typename S, typename D>
__global__ void cast4x3(const S* x0, D* y0, long long n0, const S* x1, D* y1, long long n1, const S* x2, D* y2,
                        long long n2) {
  long long q0 = n0 >> 2, q1 = n1 >> 2, q2 = n2 >> 2, i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long k = i; k < q0 + q1 + q2; k += (long long)gridDim.x * blockDim.x) {
    const S* x = x0;
    D* y = y0;
    long long j = k;
    if (j >= q0) {
      j -= q0;
      x = x1; y = y1;
      if (j >= q1) { j -= q1; x = x2; y = y2; }
    }
    float a[4];
    Pack4<S>::load(x + 4 * j, a);
    Pack4<D>::store(y + 4 * j, a);
  }
  if (i < (n0 & 3)) st(y0, 4 * q0 + i, ld(x0, 4 * q0 + i));
  if (i < (n1 & 3)) st(y1, 4 * q1 + i, ld(x1, 4 * q1 + i));
  if (i < (n2 & 3)) st(y2, 4 * q2 + i, ld(x2, 4 * q2 + i));
}

// GELU forward/backward four elements per thread (16-byte aligned arrays; the n % 4 tail by the first threads).
template <typename T>
__global__ void gelu_fwd4(const T* x, T* y, long long n, int approx) {
  long long n4 = n >> 2, i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long k = i; k < n4; k += (long long)gridDim.x * blockDim.x) {
    float a[4];
    Pack4<T>::load(x + 4 * k, a);
#pragma unroll
    for (int j = 0; j < 4; ++j) a[j] = gelu_f(a[j], approx);
    Pack4<T>::store(y + 4 * k, a);
  }
  if (i < (n & 3)) st(y, 4 * n4 + i, gelu_f(ld(x, 4 * n4 + i), approx));
}

template <typename T>
__global__ void gelu_bwd4(const T* x, const T* g, T* dx, long long n, int approx) {
  long long n4 = n >> 2, i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long k = i; k < n4; k += (long long)gridDim.x * blockDim.x) {
    float a[4], b[4];
    Pack4<T>::load(x + 4 * k, a);
    Pack4<T>::load(g + 4 * k, b);
#pragma unroll
    for (int j = 0; j < 4; ++j) a[j] = b[j] * gelu_d(a[j], approx);
    Pack4<T>::store(dx + 4 * k, a);
  }
  if (i < (n & 3)) st(dx, 4 * n4 + i, ld(g, 4 * n4 + i) * gelu_d(ld(x, 4 * n4 + i), approx));
}

// Concatenation of up to four C-contiguous pieces seen as (outer, w_i) rows of U units (U: 16, 8, 4, 2 or
// 1 bytes, the widest that divides every row width and pointer): one launch instead of one copy per piece.
template <typename U>
__global__ void cat4(const U* p0, const U* p1, const U* p2, const U* p3, long long w0, long long w1,
                     long long w2, long long w3, U* out, long long outer) {
  long long W = w0 + w1 + w2 + w3, total = outer * W;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / W, c = i - r * W;
    const U* src = p3;
    long long w = w3;
    if (c < w0) { src = p0; w = w0; }
    else if ((c -= w0) < w1) { src = p1; w = w1; }
    else if ((c -= w1) < w2) { src = p2; w = w2; }
    else c -= w2;
    out[i] = src[r * w + c];
  }
}

// c = a + alpha * b (op 0) or a * b (op 1) of same-shape contiguous arrays, four elements per thread,
// float32 math: one RawKernel launch costs less host time than CuPy's elementwise call, and mixed
// float32/half operands (a residual stream plus an autocast output) need no separate cast launch.
template <typename A, typename B, typename C>
__global__ void binary4(const A* a, const B* b, C* c, long long n, float alpha, int op) {
  long long n4 = n >> 2, i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long k = i; k < n4; k += (long long)gridDim.x * blockDim.x) {
    float x[4], y[4];
    Pack4<A>::load(a + 4 * k, x);
    Pack4<B>::load(b + 4 * k, y);
#pragma unroll
    for (int j = 0; j < 4; ++j) x[j] = op ? x[j] * y[j] : x[j] + alpha * y[j];
    Pack4<C>::store(c + 4 * k, x);
  }
  if (i < (n & 3)) {
    float x = ld(a, 4 * n4 + i), y = ld(b, 4 * n4 + i);
    st(c, 4 * n4 + i, op ? x * y : x + alpha * y);
  }
}

// Embedding lookup: row r of out is row ids[r] of w, both seen as rows of W units U (the widest of 16..1
// bytes that divides the row and both pointers): one launch instead of CuPy's take plus four launches of
// range checks. An id outside [0, V) writes zeros and sets *bad (raised at the next flush, as every
// deferred CUDA index check).
template <typename U, typename I>
__global__ void embed_rows(const I* ids, const U* w, U* out, long long n, long long W, long long V, bool* bad) {
  long long total = n * W;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / W, c = i - r * W;
    long long id = (long long)ids[r];
    if (id < 0 || id >= V) {
      *bad = true;
      out[i] = U();
    } else {
      out[i] = w[id * W + c];
    }
  }
}

// Embedding gradient: out (V, D) float32, zeroed by the caller; out[ids[r], :] += g[r, :] read in g's type
// (atomics: repeated ids accumulate). Ids outside [0, V) (the forward flagged them) and ``pad`` get nothing.
template <typename T, typename I>
__global__ void embed_bwd(const I* ids, const T* g, float* out, long long n, long long D, long long V, long long pad) {
  long long total = n * D;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / D, c = i - r * D;
    long long id = (long long)ids[r];
    if (id >= 0 && id < V && id != pad) atomicAdd(out + id * D + c, ld(g, i));
  }
}
