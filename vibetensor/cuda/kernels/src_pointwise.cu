// Pointwise kernels in the array's own dtype (float/half/bfloat16 in, float32 math): CuPy's generic
// bfloat16 elementwise path runs several times slower than the memory bound.
// Appended to src_rows.cu (which defines ld/st and the reductions) in one module.

// GELU: approx 0 = erf form, 1 = tanh form.
template <typename T>
__global__ void gelu_fwd(const T* x, T* y, long long n, int approx) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float v = ld(x, i), r;
    if (approx) r = 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    else r = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    st(y, i, r);
  }
}

template <typename T>
__global__ void gelu_bwd(const T* x, const T* g, T* dx, long long n, int approx) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float v = ld(x, i), d;
    if (approx) {
      float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
      float du = 0.7978845608028654f * (1.f + 3.f * 0.044715f * v * v);
      d = 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du;
    } else {
      d = 0.5f * (1.f + erff(v * 0.70710678118654752f)) + v * 0.3989422804014327f * __expf(-0.5f * v * v);
    }
    st(dx, i, ld(g, i) * d);
  }
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

// out[c] = sum over g of partial[g, c] (the second pass of the column sums above).
extern "C" __global__ void partial_sum(const float* partial, float* out, long long G, long long N) {
  long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (c >= N) return;
  float s = 0.f;
  for (long long g = 0; g < G; ++g) s += partial[g * N + c];
  out[c] = s;
}
