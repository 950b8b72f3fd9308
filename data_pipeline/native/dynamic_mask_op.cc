// DynamicMask: the masked-LM masking of data_pipeline/dynamic_masking.py as
// one CPU kernel. Same inputs, same random words (a hashed counter, see
// `HashedBits` here and `hashed_bits` there) and the same rule, so the two
// give identical masks (tests/data_pipeline/test_dynamic_masking.py checks
// it); this one costs a few microseconds per example instead of ~20.
//
// Per row: eligible tokens are the non-special ones; whole-word groups are
// maximal runs of eligible tokens split at word starts (every eligible token
// its own group without whole-word masking); the budget is
// min(P, max(1, round(n_eligible * prob))) (0 without eligible tokens; the
// product in double precision, rounded half to even, as static masking does:
// `masked_lm_prob` is a float64 input, not a float attr, for that). Groups
// are tried in increasing order of (key, group index), key = 24 random bits
// per group; a group larger than the budget left is skipped. The selected
// tokens, in position order, fill prediction slots 0, 1, ...; slot k's token
// becomes [MASK] (80%), a random candidate id (10%) or stays (10%), decided
// by the random words of slot k.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;

constexpr uint32_t kGolden = 0x9E3779B9u;
// round(0.8 * 2^24) and round(0.9 * 2^24), upward: u24 < these <=> u < 0.8, 0.9.
constexpr uint32_t kMaskBelow = 13421773u;
constexpr uint32_t kRandomBelow = 15099495u;

inline uint32_t Mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// The two key words of random stream `stream` (0: group order, 1: replacement
// kind, 2: replacement id) for a 2 x int64 seed.
struct StreamKey {
  uint32_t a, b;
};

StreamKey MakeStreamKey(int64_t seed0, int64_t seed1, uint32_t stream) {
  const uint64_t s0 = static_cast<uint64_t>(seed0);
  const uint64_t s1 = static_cast<uint64_t>(seed1);
  uint32_t h = Mix32(static_cast<uint32_t>(s1 >> 32) + kGolden * (stream + 1));
  h = Mix32(static_cast<uint32_t>(s1) + h);
  h = Mix32(static_cast<uint32_t>(s0 >> 32) + h);
  const uint32_t a = Mix32(static_cast<uint32_t>(s0) + h);
  return {a, Mix32(a + kGolden)};
}

inline uint32_t HashedBits(const StreamKey& key, uint32_t index) {
  return Mix32(Mix32(index * kGolden + key.a) ^ key.b);
}

class DynamicMaskOp : public OpKernel {
 public:
  explicit DynamicMaskOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_predictions", &max_predictions_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("whole_word", &whole_word_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mask_id", &mask_id_));
    OP_REQUIRES(ctx, max_predictions_ >= 1,
                InvalidArgument("max_predictions must be >= 1, got ",
                                max_predictions_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& ids_t = ctx->input(0);
    const Tensor& starts_t = ctx->input(1);
    const Tensor& seed_t = ctx->input(2);
    const Tensor& special_t = ctx->input(3);
    const Tensor& candidates_t = ctx->input(4);
    const Tensor& prob_t = ctx->input(5);
    OP_REQUIRES(ctx, prob_t.NumElements() == 1,
                InvalidArgument("masked_lm_prob must be a scalar, got shape ",
                                prob_t.shape().DebugString()));
    const double masked_lm_prob = prob_t.flat<double>()(0);
    OP_REQUIRES(ctx, ids_t.dims() == 2,
                InvalidArgument("input_ids must be [batch, length], got shape ",
                                ids_t.shape().DebugString()));
    OP_REQUIRES(ctx, starts_t.shape() == ids_t.shape(),
                InvalidArgument("word_starts shape ",
                                starts_t.shape().DebugString(),
                                " differs from input_ids shape ",
                                ids_t.shape().DebugString()));
    OP_REQUIRES(ctx, seed_t.NumElements() == 2,
                InvalidArgument("seed must have 2 elements, got ",
                                seed_t.NumElements()));
    OP_REQUIRES(ctx, candidates_t.NumElements() >= 1,
                InvalidArgument("candidates must not be empty"));
    const int64_t batch = ids_t.dim_size(0);
    const int64_t length = ids_t.dim_size(1);
    const int preds = max_predictions_;
    const auto ids = ids_t.matrix<int32_t>();
    const auto starts = starts_t.matrix<int32_t>();
    const auto seed = seed_t.flat<int64_t>();
    const auto special = special_t.flat<bool>();
    const auto candidates = candidates_t.flat<int32_t>();
    const int64_t vocab = special.size();
    const uint64_t num_candidates = candidates.size();

    Tensor* out_ids_t = nullptr;
    Tensor* positions_t = nullptr;
    Tensor* masked_ids_t = nullptr;
    Tensor* weights_t = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ids_t.shape(), &out_ids_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({batch, preds}),
                                             &positions_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({batch, preds}),
                                             &masked_ids_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({batch, preds}),
                                             &weights_t));
    auto out_ids = out_ids_t->matrix<int32_t>();
    auto positions = positions_t->matrix<int32_t>();
    auto masked_ids = masked_ids_t->matrix<int32_t>();
    auto weights = weights_t->matrix<float>();
    out_ids = ids;
    positions.setZero();
    masked_ids.setZero();
    weights.setZero();

    const StreamKey order_key = MakeStreamKey(seed(0), seed(1), 0);
    const StreamKey kind_key = MakeStreamKey(seed(0), seed(1), 1);
    const StreamKey pick_key = MakeStreamKey(seed(0), seed(1), 2);

    const int32_t* all_ids = ids_t.flat<int32_t>().data();
    const int32_t* all_starts = starts_t.flat<int32_t>().data();
    const bool* is_special = special.data();
    // One branch-free pass (vectorised); the error names the first culprit.
    bool outside = false;
    for (int64_t i = 0; i < batch * length; ++i) {
      outside |= static_cast<uint32_t>(all_ids[i]) >=
                 static_cast<uint64_t>(vocab);
    }
    if (outside) {
      for (int64_t i = 0; i < batch * length; ++i) {
        const int32_t id = all_ids[i];
        OP_REQUIRES(ctx, id >= 0 && id < vocab,
                    InvalidArgument("input_ids[", i / length, ", ",
                                    i % length, "] = ", id,
                                    " is outside the vocabulary [0, ", vocab,
                                    ")"));
      }
    }

    // Per row: group g starts at token group_start[g] and holds
    // eligible_before[g + 1] - eligible_before[g] eligible tokens (groups are
    // runs of eligible tokens), eligible_before[g] counted before its start.
    std::vector<int32_t> group_start(length + 1), eligible_before(length + 1);
    std::vector<uint64_t> order(length), rest(length);
    std::vector<uint8_t> selected(length);
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t* row = all_ids + b * length;
      const int32_t* row_starts = all_starts + b * length;
      int64_t num_groups = 0, num_eligible = 0;
      bool previous = false;
      for (int64_t t = 0; t < length; ++t) {
        const bool eligible = !is_special[row[t]];
        const bool opens = eligible && (!whole_word_ || !previous ||
                                        row_starts[t] != 0);
        group_start[num_groups] = static_cast<int32_t>(t);
        eligible_before[num_groups] = static_cast<int32_t>(num_eligible);
        num_groups += opens;
        num_eligible += eligible;
        previous = eligible;
      }
      if (num_eligible == 0) continue;
      eligible_before[num_groups] = static_cast<int32_t>(num_eligible);
      int64_t budget = static_cast<int64_t>(std::nearbyint(
          static_cast<double>(num_eligible) * masked_lm_prob));
      budget = std::min<int64_t>(preds, std::max<int64_t>(1, budget));

      // Groups in increasing (key, index) order until the budget is spent.
      // Sorting all of them is wasted work: first only the groups whose key
      // is below a threshold that about budget + 8 of them pass (they come
      // first in the order), then, if the budget is not spent yet, the rest.
      const uint64_t wanted = static_cast<uint64_t>(budget) + 8;
      const uint32_t threshold =
          wanted >= static_cast<uint64_t>(num_groups)
              ? (1u << 24)
              : static_cast<uint32_t>((wanted << 24) / num_groups);
      int64_t num_first = 0, num_rest = 0;
      for (int64_t g = 0; g < num_groups; ++g) {
        const uint32_t key =
            HashedBits(order_key, static_cast<uint32_t>(b * length + g)) >> 8;
        const uint64_t item = (static_cast<uint64_t>(key) << 32) |
                              static_cast<uint64_t>(g);
        const bool first = key < threshold;
        order[num_first] = item;
        rest[num_rest] = item;
        num_first += first;
        num_rest += !first;
      }
      std::fill(selected.begin(), selected.end(), 0);
      int64_t remaining = budget;
      for (const auto& [part, size] : {std::make_pair(&order, num_first),
                                       std::make_pair(&rest, num_rest)}) {
        if (remaining == 0) break;
        std::sort(part->begin(), part->begin() + size);
        for (int64_t i = 0; i < size && remaining > 0; ++i) {
          const int64_t g = static_cast<int64_t>((*part)[i] & 0xFFFFFFFFu);
          const int32_t tokens = eligible_before[g + 1] - eligible_before[g];
          if (tokens > remaining) continue;
          remaining -= tokens;
          std::fill(selected.begin() + group_start[g],
                    selected.begin() + group_start[g] + tokens, 1);
        }
      }

      int k = 0;
      for (int64_t t = 0; t < length; ++t) {
        if (!selected[t]) continue;
        const int32_t original = row[t];
        const uint32_t slot = static_cast<uint32_t>(b * preds + k);
        const uint32_t kind = HashedBits(kind_key, slot) >> 8;
        positions(b, k) = static_cast<int32_t>(t);
        masked_ids(b, k) = original;
        weights(b, k) = 1.0f;
        if (kind < kMaskBelow) {
          out_ids(b, t) = mask_id_;
        } else if (kind < kRandomBelow) {
          const uint64_t pick =
              (static_cast<uint64_t>(HashedBits(pick_key, slot)) *
               num_candidates) >> 32;
          out_ids(b, t) = candidates(pick);
        }
        ++k;
      }
    }
  }

 private:
  int max_predictions_;
  bool whole_word_;
  int mask_id_;
};

}  // namespace

REGISTER_OP("DynamicMask")
    .Input("input_ids: int32")
    .Input("word_starts: int32")
    .Input("seed: int64")
    .Input("is_special: bool")
    .Input("candidates: int32")
    .Input("masked_lm_prob: double")
    .Output("masked_input_ids: int32")
    .Output("masked_lm_positions: int32")
    .Output("masked_lm_ids: int32")
    .Output("masked_lm_weights: float")
    .Attr("max_predictions: int")
    .Attr("whole_word: bool")
    .Attr("mask_id: int")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle ids;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &ids));
      TF_RETURN_IF_ERROR(c->Merge(ids, c->input(1), &ids));
      int preds;
      TF_RETURN_IF_ERROR(c->GetAttr("max_predictions", &preds));
      auto slots = c->Matrix(c->Dim(ids, 0), preds);
      c->set_output(0, ids);
      c->set_output(1, slots);
      c->set_output(2, slots);
      c->set_output(3, slots);
      return ::tsl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("DynamicMask").Device(DEVICE_CPU), DynamicMaskOp);
