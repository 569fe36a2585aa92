// The abraxas step as one compiled loop for the CPU: the same float32
// operations, in the same order, as the torch backend (the kernels'
// references in hera.kernels), so both give the same bits. Python calls
// run_steps once per chunk of steps. The random numbers are
// hera.kernels.counter_random's, computed here: a pure function of the
// agent's seed, the step, the stream and the element.
//
// Built with -ffp-contract=off: a fused multiply-add would round once where
// the reference rounds twice.
//
// It includes no torch or Python header: a plain C function over raw
// pointers, loaded with ctypes, so that it compiles in about a second and
// one build serves every torch and Python version.
//
// It reads no synapse tables: a synapse's target, delay and place in the
// weight buffer follow from the geometry (hera_family_abraxas.connectivity),
// so the loops visit only the slots that exist, a target column's cells at
// a time, and the sheet keeps no tables (for big, 5.6 GB less to build and
// to stream through the cache). The order of the visits differs from the
// tables' but no result depends on it: every slot's update is its own, and
// what slots add up (the ring's fixed point, synaptic scaling's total) are
// integer sums.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Params {
  int64_t inputs, neurons, first, slots, cells, output_start, length;
  int64_t width, height, depth, reach, axon;  // reach: the dendrite, in columns
  float decay_m, threshold, theta_plus, decay_theta, theta_minus, theta_floor, decay_trace,
      decay_post, noise;
  int32_t refractory_steps;
  float a_plus, a_minus, w_max, scale, inv_scale, trace_offset;
  double budget;
  int64_t cap;
};

// hera.kernels.counter_random, as its package docstring defines it.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t stream_key(uint64_t seed, uint64_t step, uint64_t stream) {
  return splitmix64(seed ^ splitmix64(step * 256 + stream));
}

inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
}

// The streams of a step (model.NOISE_STREAM, model.INPUT_STREAM).
constexpr uint64_t kNoiseStream = 0, kInputStream = 1;
// float32(1 / sqrt(21845)) and the mean of four uniform bytes.
constexpr float kNormalScale = 0x1.bb688cp-8f;
constexpr int32_t kNormalOffset = 510;

// Element i of the stream whose key has halves lo and hi.
inline uint32_t draw(uint32_t lo, uint32_t hi, int64_t i) {
  return mix32(mix32(static_cast<uint32_t>(i) + lo) ^ hi);
}

// fill_normal: the four bytes' sum, centred, times kNormalScale.
void fill_normal(float* out, int64_t n, uint64_t key) {
  const uint32_t lo = static_cast<uint32_t>(key), hi = static_cast<uint32_t>(key >> 32);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t x = draw(lo, hi, i);
    const int32_t total = static_cast<int32_t>((x & 255u) + ((x >> 8) & 255u) +
                                               ((x >> 16) & 255u) + (x >> 24));
    out[i] = static_cast<float>(total - kNormalOffset) * kNormalScale;
  }
}

// fill_uniform: the top 24 bits times 2**-24, exact.
void fill_uniform(float* out, int64_t n, uint64_t key) {
  const uint32_t lo = static_cast<uint32_t>(key), hi = static_cast<uint32_t>(key >> 32);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<float>(draw(lo, hi, i) >> 8) * 0x1p-24f;
  }
}

// The candidate membrane (the winner is reset later) and the margin over
// the threshold of every neuron, taking this step's row of the ring as the
// current and clearing it. Restrict-qualified locals let the compiler
// vectorize the loop (it cannot see that the float arrays do not overlap).
void membranes(float* __restrict__ membrane, float* __restrict__ margin,
               float* __restrict__ current, int32_t* __restrict__ row,
               const float* __restrict__ z, const int32_t* __restrict__ refractory,
               const float* __restrict__ thresholds, int64_t n, const Params& p) {
  const float inv_scale = p.inv_scale, decay = p.decay_m, noise = p.noise;
  const float threshold = p.threshold;
  for (int64_t j = 0; j < n; ++j) {
    const float c = static_cast<float>(row[j]) * inv_scale;
    current[j] = c;
    row[j] = 0;
    float v = membrane[j] * decay;
    v = v + c;
    v = v + z[j] * noise;
    v = refractory[j] > 0 ? 0.0f : v;
    membrane[j] = v;
    margin[j] = v - (threshold + thresholds[j]);
  }
}

inline int32_t quantize(float w, float scale) {
  return static_cast<int32_t>(std::floor(w * scale + 0.5f));
}

inline float clamp(float w, float w_max) {
  // torch.clamp(min=0, max=w_max): max first, then min.
  w = w < 0.0f ? 0.0f : w;
  return w > w_max ? w_max : w;
}

// ring[(t + delay) % L][target] += quantize(weight), wrapping like int32 adds.
inline void add_to_ring(int32_t* ring, int64_t neurons, int64_t row, int32_t target, int32_t units) {
  auto* cell = reinterpret_cast<uint32_t*>(ring + row * neurons + target);
  *cell += static_cast<uint32_t>(units);
}

// Calls visit(column, slot, delay, own) for every column whose cells neuron
// n has synapses with: `column` is that column's first neuron, `slot` the
// first of the K slots of that offset, `delay` its conduction delay, `own`
// n's cell where the column is n's own (no synapse onto itself), else -1.
// Outgoing (sign +1): the columns n's spikes reach. Incoming (sign -1): the
// columns whose spikes reach n, through their slots of that offset.
template <typename Visit>
inline void for_each_column(const Params& p, int64_t n, int64_t sign, Visit&& visit) {
  const int64_t cells = p.cells, w = p.width, h = p.height, r = p.reach, span = 2 * r + 1;
  const int64_t cell = n % cells, x = (n / cells) % w, y = (n / (cells * w)) % h,
                layer = n / (cells * w * h);
  for (int64_t projection = 0; projection < 3; ++projection) {
    // lateral, forward (the next layer), feedback (the layer before)
    const int64_t other = layer + sign * (projection == 2 ? -1 : projection);
    if (other < 0 || other >= p.depth) continue;
    for (int64_t dy = -r; dy <= r; ++dy) {
      const int64_t oy = y + sign * dy;
      if (oy < 0 || oy >= h) continue;
      for (int64_t dx = -r; dx <= r; ++dx) {
        const int64_t ox = x + sign * dx;
        if (ox < 0 || ox >= w) continue;
        const int64_t far = std::max(dx < 0 ? -dx : dx, dy < 0 ? -dy : dy);
        const int64_t delay = 1 + std::min(p.axon - 1, far);
        const int64_t slot = ((projection * span + dy + r) * span + dx + r) * cells;
        const bool self = projection == 0 && dy == 0 && dx == 0;
        visit(((other * h + oy) * w + ox) * cells, slot, delay, self ? cell : int64_t{-1});
      }
    }
  }
}

}  // namespace

// Advances `steps` steps in place. Arrays (all contiguous):
// state: membrane f32[N], refractory i32[N], thresholds f32[N], current f32[N],
//        pre_trace f32[I+N], post_trace f32[N], ring i32[L, N],
//        input_rates f32[I], output_counts i64[N - output_start],
//        given u8[I] (input spikes given for the first step: cleared after it),
//        activity i64[I+N] (spikes of each input and neuron, counted up: not
//        part of the agent's state, for watching it)
// weights: the weight buffer f32[I*F + N*K] (input weights, then neurons')
// values: 15 doubles, sizes: 10 integers (see cpu_backend.py), the
// geometry among them; the caller checks the buffers against them.
// `raster` (u8[steps, I], or null) gives input spikes for each step, added to
// those the input rates draw, as `given` does for the first step.
// `seed` is the agent's (its low 64 bits are used). Returns the new step counter.
extern "C" int64_t hera_abraxas_run_steps(void* const* state, float* weights,
                                          const double* values, const int64_t* sizes,
                                          int64_t seed, int64_t t, int64_t steps,
                                          const uint8_t* raster) {
  Params p;
  p.inputs = sizes[0]; p.width = sizes[1]; p.height = sizes[2]; p.depth = sizes[3];
  p.cells = sizes[4]; p.reach = sizes[5]; p.axon = sizes[6];
  p.output_start = sizes[7]; p.refractory_steps = static_cast<int32_t>(sizes[8]);
  p.cap = sizes[9];
  p.first = p.width * p.height * p.cells;
  p.neurons = p.first * p.depth;
  p.slots = 3 * (2 * p.reach + 1) * (2 * p.reach + 1) * p.cells;
  p.length = p.axon + 1;
  p.decay_m = static_cast<float>(values[0]); p.threshold = static_cast<float>(values[1]);
  p.theta_plus = static_cast<float>(values[2]); p.decay_theta = static_cast<float>(values[3]);
  p.decay_trace = static_cast<float>(values[4]); p.noise = static_cast<float>(values[5]);
  p.a_plus = static_cast<float>(values[6]); p.a_minus = static_cast<float>(values[7]);
  p.w_max = static_cast<float>(values[8]); p.budget = values[9];
  p.scale = static_cast<float>(values[10]); p.inv_scale = static_cast<float>(1.0 / values[10]);
  p.theta_minus = static_cast<float>(values[11]);
  p.decay_post = static_cast<float>(values[12]);
  p.theta_floor = static_cast<float>(values[13]);
  p.trace_offset = static_cast<float>(values[14]);

  float* membrane = static_cast<float*>(state[0]);
  int32_t* refractory = static_cast<int32_t*>(state[1]);
  float* thresholds = static_cast<float*>(state[2]);
  float* current = static_cast<float*>(state[3]);
  float* pre_trace = static_cast<float*>(state[4]);
  float* post_trace = static_cast<float*>(state[5]);
  int32_t* ring = static_cast<int32_t*>(state[6]);
  const float* input_rates = static_cast<const float*>(state[7]);
  int64_t* output_counts = static_cast<int64_t*>(state[8]);
  uint8_t* given = static_cast<uint8_t*>(state[9]);
  int64_t* activity = static_cast<int64_t*>(state[10]);

  const int64_t N = p.neurons, I = p.inputs, F = p.first, K = p.slots, C = p.cells;
  float* input_weights = weights;
  float* neuron_weights = weights + I * F;
  // a neuron's incoming synapses: their places and potentiated weights
  std::vector<int64_t> place(I + K);
  std::vector<float> spikes(N), margin(N), input_spikes(I), fresh(I + K), z(N), u(I);
  std::vector<int64_t> fired, fired_inputs;
  const std::vector<int64_t> none;
  const float cap_f = static_cast<float>(static_cast<double>(p.cap));
  const uint64_t agent = static_cast<uint64_t>(seed);

  // ctypes releases the GIL for this call: the loop touches array memory
  // only, and other Python threads (the control channel, output writers) run
  // while it does.
  for (int64_t step = 0; step < steps; ++step, ++t) {
    fill_normal(z.data(), N, stream_key(agent, static_cast<uint64_t>(t), kNoiseStream));
    fill_uniform(u.data(), I, stream_key(agent, static_cast<uint64_t>(t), kInputStream));
    fired_inputs.clear();
    const uint8_t* forced = raster ? raster + step * I : nullptr;
    for (int64_t i = 0; i < I; ++i) {
      const bool spike = u[i] < input_rates[i] || (forced && forced[i]) ||
                         (step == 0 && given[i]);
      input_spikes[i] = spike ? 1.0f : 0.0f;
      if (spike) {
        fired_inputs.push_back(i);
        ++activity[i];
      }
    }
    if (step == 0) std::fill(given, given + I, uint8_t{0});

    // lif_wta_step: every membrane and margin, then the winner of each
    // group, then the updates. take_slot is fused into the membranes.
    int32_t* row = ring + (t % p.length) * N;
    membranes(membrane, margin.data(), current, row, z.data(), refractory, thresholds, N, p);
    fired.clear();
    for (int64_t g = 0; g < N; g += p.cells) {
      float best = 0.0f;
      int64_t winner = -1;
      for (int64_t j = g; j < g + p.cells; ++j) {
        // The first of the largest margins >= 0.
        if (margin[j] >= 0.0f && (winner < 0 || margin[j] > best)) {
          best = margin[j];
          winner = j;
        }
      }
      if (winner >= 0) fired.push_back(winner);
    }
    std::fill(spikes.begin(), spikes.end(), 0.0f);
    for (int64_t j : fired) {
      spikes[j] = 1.0f;
      ++activity[I + j];
    }
    for (int64_t j = 0; j < N; ++j) {
      const bool fire = spikes[j] != 0.0f;
      membrane[j] = fire ? 0.0f : membrane[j];
      const int32_t r = refractory[j] - 1;
      refractory[j] = fire ? p.refractory_steps : (r < 0 ? 0 : r);
      // torch's clamp(min=floor): a difference of equals is +0, never -0
      const float theta = thresholds[j] * p.decay_theta + p.theta_plus * spikes[j] - p.theta_minus;
      thresholds[j] = theta < p.theta_floor ? p.theta_floor : theta;
    }

    // potentiate_incoming, with synaptic scaling in fixed point; a rate of
    // 0 skips its events, as in the torch backend
    for (int64_t j : p.a_plus > 0 ? fired : none) {
      int64_t total = 0, count = 0;
      auto potentiate = [&](int64_t f, int64_t source) {
        const float x = pre_trace[source] - p.trace_offset;
        const float w = clamp(weights[f] + x * p.a_plus, p.w_max);
        place[count] = f;
        fresh[count++] = w;
        total += static_cast<int64_t>(std::floor(w * p.scale + 0.5f));
      };
      if (j < F)  // every input channel reaches the first layer
        for (int64_t i = 0; i < I; ++i) potentiate(i * F + j, i);
      const int64_t cell = j % C;
      for_each_column(p, j, -1, [&](int64_t column, int64_t slot, int64_t, int64_t own) {
        // source column + c's slot of this offset aimed at j's cell
        const int64_t at = I * F + column * K + slot + cell;
        for (int64_t c = 0; c < C; ++c)
          if (c != own) potentiate(at + c * K, I + column + c);
      });
      const bool over = p.budget > 0 && total > p.cap;
      const float factor = over ? cap_f / static_cast<float>(total) : 1.0f;
      for (int64_t i = 0; i < count; ++i) weights[place[i]] = over ? fresh[i] * factor : fresh[i];
    }
    // depress_rows: neurons, then input channels
    for (int64_t s : p.a_minus > 0 ? fired : none) {
      float* row = neuron_weights + s * K;
      for_each_column(p, s, +1, [&](int64_t column, int64_t slot, int64_t, int64_t own) {
        float* w = row + slot;
        const float* trace = post_trace + column;
        for (int64_t c = 0; c < C; ++c)
          if (c != own) w[c] = clamp(w[c] - trace[c] * p.a_minus, p.w_max);
      });
    }
    for (int64_t s : p.a_minus > 0 ? fired_inputs : none) {
      float* w = input_weights + s * F;
      for (int64_t k = 0; k < F; ++k) w[k] = clamp(w[k] - post_trace[k] * p.a_minus, p.w_max);
    }
    // deliver_spikes with the learned weights
    for (int64_t s : fired) {
      const float* row = neuron_weights + s * K;
      for_each_column(p, s, +1, [&](int64_t column, int64_t slot, int64_t delay, int64_t own) {
        const float* w = row + slot;
        const int64_t at = (t % p.length + delay) % p.length;
        for (int64_t c = 0; c < C; ++c)
          if (c != own)
            add_to_ring(ring, N, at, static_cast<int32_t>(column + c), quantize(w[c], p.scale));
      });
    }
    const int64_t next = (t % p.length + 1) % p.length;
    for (int64_t s : fired_inputs) {
      const float* w = input_weights + s * F;
      for (int64_t k = 0; k < F; ++k)
        add_to_ring(ring, N, next, static_cast<int32_t>(k), quantize(w[k], p.scale));
    }
    // decay_accumulate of the traces; output counts
    for (int64_t i = 0; i < I; ++i) pre_trace[i] = pre_trace[i] * p.decay_trace + input_spikes[i];
    for (int64_t j = 0; j < N; ++j) {
      pre_trace[I + j] = pre_trace[I + j] * p.decay_trace + spikes[j];
      post_trace[j] = post_trace[j] * p.decay_post + spikes[j];
    }
    for (int64_t j = p.output_start; j < N; ++j)
      output_counts[j - p.output_start] += static_cast<int64_t>(spikes[j]);
  }
  return t;
}

// Input rates from the values a program gives (hera_feed_array), as the line
// of numbers does it: rate = max_rate * clip(value, 0, 1) in double precision,
// rounded to float once; NaN is 0; the channels past `n` get the idle rate.
// Here rather than in NumPy: NumPy's wide vector kernels slow the next step.
extern "C" void hera_abraxas_input_rates(const double* values, int64_t n, float* rates,
                                         int64_t inputs, double max_rate, double idle) {
  for (int64_t i = 0; i < n; ++i) {
    double v = values[i];
    v = v > 0.0 ? v : 0.0;  // NaN and -0.0 compare false: +0.0, as Python's max(0.0, v)
    v = v < 1.0 ? v : 1.0;
    rates[i] = static_cast<float>(max_rate * v);
  }
  for (int64_t i = n; i < inputs; ++i) rates[i] = static_cast<float>(idle);
}
