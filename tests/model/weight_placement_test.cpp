// WeightStore placement: weights copied into a region (what a GPU rank does with its device
// weights region; here a host region, so it runs anywhere), and the dry run that sizes that
// region before the one device allocation: it reads nothing and measures exactly the bytes
// the real build takes.
#include <gtest/gtest.h>

#include "sparrow/model/model.h"

namespace sparrow {
namespace {

std::string model_dir(const std::string& name) { return std::string(SPARROW_TESTDATA_DIR) + "/models/" + name; }

TEST(WeightPlacement, DryRunMeasuresThePlacedBuildAndReadsNothing) {
  for (const char* name : {"qwen3_moe", "qwen2_moe", "mixtral", "olmoe"}) {
    SCOPED_TRACE(name);
    LoadedModel m = load_model_source(model_dir(name), "auto", DType::kBF16);
    CausalLM plain(m.config, *m.source, DType::kBF16);  // zero-copy views; also owns a one-rank world
    Arena dry("dry", reinterpret_cast<void*>(uintptr_t(1) << 40), size_t(1) << 36, Device::kCPU);
    CausalLM probe(m.config, *m.source, DType::kBF16, plain.rank(), WeightPlacement{&dry, true});
    ASSERT_GT(dry.used(), 0u);

    Buffer block(dry.used());
    Arena region("weights", block.data(), block.nbytes(), Device::kCPU);
    LoadedModel fresh = load_model_source(model_dir(name), "auto", DType::kBF16);
    const size_t names = fresh.source->names().size();
    {
      Arena dry2("dry", reinterpret_cast<void*>(uintptr_t(1) << 40), size_t(1) << 36, Device::kCPU);
      CausalLM again(fresh.config, *fresh.source, DType::kBF16, probe.rank(), WeightPlacement{&dry2, true});
      EXPECT_EQ(fresh.source->unused_names().size(), names) << "a dry run read the checkpoint";
    }
    CausalLM placed(fresh.config, *fresh.source, DType::kBF16, probe.rank(), WeightPlacement{&region, false});
    EXPECT_EQ(region.used(), dry.used());
    EXPECT_TRUE(fresh.source->unused_names().empty());

    // Same logits as the zero-copy model.
    ForwardBatch b;
    const std::vector<int32_t> ids = {3, 17, 5, 9}, slots = {0, 1, 2, 3};
    b.add_sequence(0, 0, ids.data(), slots.data(), 4);
    b.logit_rows = {1, 3};
    auto logits_of = [&](const CausalLM& model) {
      KVPool kv(m.config.num_layers, 8, model.local_kv_heads(), m.config.head_dim, DType::kBF16);
      ReqToTokenPool table(1, 8);
      std::copy(slots.begin(), slots.end(), table.row(table.alloc()));
      Arena ws(model.workspace_bytes(4));
      Buffer out(DType::kF32, {2, m.config.vocab_size});
      model.forward(b, kv, table, ws, out.tensor());
      return std::vector<float>(out.tensor().data_as<float>(), out.tensor().data_as<float>() + out.tensor().numel());
    };
    EXPECT_EQ(logits_of(placed), logits_of(plain));
  }
}

}  // namespace
}  // namespace sparrow
