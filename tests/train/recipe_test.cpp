// Training recipes: the shipped configs load and say what the paper says; every field survives
// to_yaml -> parse; errors name the file, line, column and field (or the override); unknown keys
// and enum values are refused with the valid choices.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing.h"
#include "train/recipe.h"
#include "train_testing.h"
#include "util/error.h"

namespace seqit::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path config(const char* name) {
  return seqit::testing::source_dir() / "configs" / name;
}

TrainRecipe parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return parse_recipe(yaml, "recipe.yaml", overrides);
}

const char* kMinimal = "model: m.bin\ndata: d.jsonl\noutput_dir: out\n";

TEST(Recipe, PaperConfigIsSitSpec31) {
  TrainRecipe r =
      load_recipe(config("sit-paper.yaml"), {"model=/models/Meta-Llama-3-8B", "data=sit.jsonl"});
  EXPECT_EQ(r.model, "/models/Meta-Llama-3-8B");
  EXPECT_EQ(r.method, TrainMethod::full);
  EXPECT_EQ(r.lr, 2e-5);
  EXPECT_EQ(r.epochs, 3);
  EXPECT_EQ(r.effective_batch, 128);
  EXPECT_EQ(r.warmup_ratio, 0.03);
  EXPECT_EQ(r.schedule, ScheduleKind::linear);
  EXPECT_EQ(r.max_len, 2048);
  EXPECT_EQ(r.chat_template, "tulu");
  EXPECT_EQ(r.default_system, "");
  EXPECT_EQ(r.weight_decay, 0.0);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_EQ(r.max_grad_norm, 0.0);
  // 1 per device x 64 accumulation x 2 GPUs, as the paper ran it; on one process: 128.
  EXPECT_EQ(r.resolved(2).gradient_accumulation, 64);
  EXPECT_EQ(r.resolved(1).gradient_accumulation, 128);
}

TEST(Recipe, PaperConfigWithoutAModelSaysModelRequired) {
  std::string e = error_of([] { load_recipe(config("sit-paper.yaml"), {"data=sit.jsonl"}); });
  EXPECT_THAT(e, HasSubstr("sit-paper.yaml:"));
  EXPECT_THAT(e, HasSubstr("model: required"));
  EXPECT_THAT(e, HasSubstr("model=PATH"));
  e = error_of([] { parse("data: d\noutput_dir: o\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml: model: required"));
}

TEST(Recipe, LoraConfigAdaptsEveryProjection) {
  TrainRecipe r = load_recipe(config("sit-lora.yaml"), {"model=m", "data=d"});
  EXPECT_EQ(r.method, TrainMethod::lora);
  EXPECT_EQ(r.lora.rank, 64);
  EXPECT_EQ(r.lora.alpha, 16.0);
  EXPECT_EQ(r.lora.dropout, 0.1);
  EXPECT_EQ(r.lora.targets, (std::vector<std::string>{"q", "k", "v", "o", "gate", "up", "down"}));
  EXPECT_EQ(r.lora.base_dtype, BaseDtype::bf16);
  EXPECT_EQ(r.lr, 1e-4);
  EXPECT_EQ(r.effective_batch, 128);
  EXPECT_EQ(r.epochs, 3);
}

TEST(Recipe, TinyStoriesConfigPointsAtSharedData) {
  // Its paths are relative to the project root.
  TrainRecipe r = load_recipe(config("tiny-stories.yaml"));
  fs::path root = seqit::testing::source_dir();
  EXPECT_TRUE(fs::exists(root / r.model)) << r.model;
  ASSERT_EQ(r.data.size(), 1u);
  EXPECT_TRUE(fs::exists(root / r.data[0])) << r.data[0];
  EXPECT_EQ(r.max_steps, 100);
  EXPECT_EQ(r.resolved().effective_batch, 8);
}

TEST(Recipe, EveryShippedConfigRoundTripsThroughToYaml) {
  for (const char* name : {"sit-paper.yaml", "sit-lora.yaml", "tiny-stories.yaml"}) {
    TrainRecipe r = load_recipe(config(name), {"model=m.bin", "data=d.jsonl"}).resolved();
    std::string yaml = to_yaml(r);
    EXPECT_EQ(parse_recipe(yaml, "recipe.yaml"), r) << name << "\n" << yaml;
  }
}

TEST(Recipe, EveryFieldRoundTrips) {
  // Every field away from its default, with values that are hard to write exactly.
  TrainRecipe r;
  r.model = "models/My Model: v2";
  r.tokenizer = "tok/tokenizer.json";
  r.data = {"a.jsonl", "b \"quoted\".json", "yes"};
  r.data_format = "alpaca-json";
  r.eval_data = "null";
  r.chat_template = "chatml";
  r.turns = TurnPolicy::last_assistant;
  r.train_on_inputs = true;
  r.max_len = 777;
  r.default_system = "You are\nhelpful: #1";
  r.batch_mode = BatchMode::packed;
  r.micro_batch_size = 3;
  r.gradient_accumulation = 5;
  r.effective_batch = 15;
  r.epochs = 4;
  r.max_steps = 1234;
  r.lr = 0.1 + 0.2;  // 0.30000000000000004
  r.schedule = ScheduleKind::cosine;
  r.warmup_ratio = 1.0 / 3.0;
  r.warmup_steps = 7;
  r.weight_decay = 1e-300;
  r.adam_beta1 = 0.8;
  r.adam_beta2 = 0.95;
  r.adam_epsilon = 1e-6;
  r.max_grad_norm = 0.5;
  r.seed = 18446744073709551615ull;
  r.eval_fraction = 0;
  r.eval_count = std::nullopt;
  r.eval_every = 9;
  r.output_dir = "runs/x";
  r.save_every = 11;
  r.keep_last = 0;
  r.log_every = 2;
  r.activation_checkpointing = true;
  r.compute_dtype = ComputeDtype::bf16;
  r.threads = 6;
  r.method = TrainMethod::lora;
  r.lora.rank = 8;
  r.lora.alpha = 32.5;
  r.lora.dropout = 0.05;
  r.lora.targets = {"q", "v", "down"};
  r.lora.rslora = true;
  r.lora.base_dtype = BaseDtype::bf16;
  r.validate();
  std::string yaml = to_yaml(r);
  TrainRecipe back = parse_recipe(yaml, "recipe.yaml");
  EXPECT_EQ(back, r) << yaml;
  EXPECT_EQ(back.lr, 0.1 + 0.2);
  // Every key is written.
  for (const std::string& key : recipe_keys()) {
    std::string leaf = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    EXPECT_THAT(yaml, HasSubstr(leaf + ":")) << key;
  }
  // The defaults (nulls included) round-trip too.
  TrainRecipe d;
  d.model = "m";
  d.data = {"d"};
  d.output_dir = "o";
  EXPECT_EQ(parse_recipe(to_yaml(d), "recipe.yaml"), d) << to_yaml(d);
}

TEST(Recipe, ErrorsNameFileLineColumnAndField) {
  std::string e = error_of([] { parse(std::string(kMinimal) + "epochs: 3\nlr: fast\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml:5:5: field 'lr': expected a number, found 'fast'"));
  e = error_of([] { parse(std::string(kMinimal) + "max_len: -4\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml:4:10: field 'max_len': must be at least 1, found -4"));
  e = error_of([] { parse(std::string(kMinimal) + "lora:\n  dropout: 1.5\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml:5:12: field 'lora.dropout': must be in [0, 1)"));
  e = error_of([] { parse(std::string(kMinimal) + "train_on_inputs: maybe\n"); });
  EXPECT_THAT(e, HasSubstr("field 'train_on_inputs': expected true or false"));
  e = error_of([] { parse(std::string(kMinimal) + "seed: -1\n"); });
  EXPECT_THAT(e, HasSubstr("field 'seed': expected a non-negative integer"));
  e = error_of([] { parse("model: m\ndata: {a: 1}\noutput_dir: o\n"); });
  EXPECT_THAT(
      e, HasSubstr("recipe.yaml:2:7: field 'data': expected a list of strings, found a mapping"));
  e = error_of([] { parse(std::string(kMinimal) + "lr: 1e-4\nlr: 2e-4\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml:5:1: key 'lr' given twice (first on line 4)"));
  e = error_of([] { parse("model: [unclosed\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml:"));
  EXPECT_THAT(e, HasSubstr("not valid YAML"));
  e = error_of([] { parse("- a\n- b\n"); });
  EXPECT_THAT(e, HasSubstr("a recipe is a YAML mapping"));
}

TEST(Recipe, UnknownKeysAreRefusedWithASuggestion) {
  std::string e = error_of([] { parse(std::string(kMinimal) + "warmup_ration: 0.1\n"); });
  EXPECT_THAT(
      e, HasSubstr("recipe.yaml:4:1: unknown key 'warmup_ration' (did you mean 'warmup_ratio'?)"));
  e = error_of([] { parse(std::string(kMinimal) + "lora:\n  rnak: 8\n"); });
  EXPECT_THAT(e, HasSubstr("recipe.yaml:5:3: unknown key 'lora.rnak' (did you mean 'lora.rank'?)"));
  e = error_of([] { parse(std::string(kMinimal) + "rank: 8\n"); });
  EXPECT_THAT(e, HasSubstr("unknown key 'rank' (did you mean 'lora.rank'?)"));
  e = error_of([] { parse(std::string(kMinimal) + "frobnicate: 8\n"); });
  EXPECT_THAT(e, HasSubstr("unknown key 'frobnicate'"));
  EXPECT_THAT(e, ::testing::Not(HasSubstr("did you mean")));
  e = error_of([] { parse(std::string(kMinimal) + "lora: 8\n"); });
  EXPECT_THAT(e, HasSubstr("field 'lora': expected a mapping of lora.* keys"));
}

TEST(Recipe, EnumValuesListTheChoices) {
  std::string e = error_of([] { parse(std::string(kMinimal) + "schedule: cosin\n"); });
  EXPECT_THAT(e, HasSubstr("field 'schedule': unknown schedule 'cosin' (did you mean 'cosine'?): "
                           "expected one of linear, cosine, constant"));
  e = error_of([] { parse(std::string(kMinimal) + "lora:\n  targets: [q, qq, v]\n"); });
  EXPECT_THAT(e, HasSubstr("field 'lora.targets': unknown LoRA target module 'qq'"));
  EXPECT_THAT(e, HasSubstr("q, k, v, o, gate, up, down"));
  e = error_of([] { parse(std::string(kMinimal) + "batch_mode: pack\n"); });
  EXPECT_THAT(e, HasSubstr("did you mean 'packed'?"));
  e = error_of([] { parse(std::string(kMinimal) + "template: tlu\n"); });
  EXPECT_THAT(e, HasSubstr("unknown template 'tlu' (did you mean 'tulu'?)"));
  e = error_of([] { parse(std::string(kMinimal) + "data_format: alpacca\n"); });
  EXPECT_THAT(e, HasSubstr("field 'data_format'"));
  e = error_of([] { parse(std::string(kMinimal) + "eval_data: e.jsonl\neval_count: 5\n"); });
  EXPECT_THAT(e, HasSubstr("choose one"));
}

TEST(Recipe, LoraTargetsTakeHuggingFaceNamesAndAll) {
  TrainRecipe r =
      parse(std::string(kMinimal) + "lora:\n  targets: [v_proj, q_proj, down_proj, v]\n");
  EXPECT_EQ(r.lora.targets, (std::vector<std::string>{"q", "v", "down"}));  // canonical order, once
  r = parse(std::string(kMinimal) + "lora:\n  targets: all\n");
  EXPECT_EQ(r.lora.targets.size(), 7u);
  r = parse(std::string(kMinimal), {"template=model", "template=templates/x.jinja"});
  EXPECT_EQ(r.chat_template, "templates/x.jinja");
}

TEST(Recipe, OverridesReachNestedFieldsAndNameThemselvesInErrors) {
  TrainRecipe r = parse(std::string(kMinimal) + "max_steps: 10\ndefault_system: hi\n",
                        {"lora.rank=8", "lr=1e-4", "lora.targets=[q,v]", "max_steps=null",
                         "default_system=", "data=[x.jsonl, y.jsonl]", "schedule=cosine"});
  EXPECT_EQ(r.lora.rank, 8);
  EXPECT_EQ(r.lr, 1e-4);
  EXPECT_EQ(r.lora.targets, (std::vector<std::string>{"q", "v"}));
  EXPECT_EQ(r.max_steps, std::nullopt);
  EXPECT_EQ(r.default_system, "");
  EXPECT_EQ(r.data, (std::vector<std::string>{"x.jsonl", "y.jsonl"}));
  EXPECT_EQ(r.schedule, ScheduleKind::cosine);

  std::string e = error_of([] { parse(kMinimal, {"lora.rank=eight"}); });
  EXPECT_THAT(
      e, HasSubstr(
             "override 'lora.rank=eight': field 'lora.rank': expected an integer, found 'eight'"));
  e = error_of([] { parse(kMinimal, {"lr=-1"}); });
  EXPECT_THAT(e, HasSubstr("override 'lr=-1': field 'lr': must be in (0, inf)"));
  e = error_of([] { parse(kMinimal, {"lora.rnk=8"}); });
  EXPECT_THAT(
      e, HasSubstr("override 'lora.rnk=8': unknown key 'lora.rnk' (did you mean 'lora.rank'?)"));
  e = error_of([] { parse(kMinimal, {"lr"}); });
  EXPECT_THAT(e, HasSubstr("override 'lr': expected key=value"));
  e = error_of([] { parse(kMinimal, {"lora.targets=[q,"}); });
  EXPECT_THAT(
      e,
      HasSubstr("override 'lora.targets=[q,': field 'lora.targets': the value is not valid YAML"));
  // A recipe entirely from overrides.
  r = recipe_from_overrides({"model=m", "data=d", "output_dir=o", "method=lora"});
  EXPECT_EQ(r.method, TrainMethod::lora);
}

TEST(Recipe, EffectiveBatchWinsAndMustAgree) {
  TrainRecipe r = parse(std::string(kMinimal) + "micro_batch_size: 4\neffective_batch: 64\n");
  EXPECT_EQ(r.gradient_accumulation, std::nullopt);  // as given
  EXPECT_EQ(r.resolved(1).gradient_accumulation, 16);
  EXPECT_EQ(r.resolved(4).gradient_accumulation, 4);
  EXPECT_THAT(error_of([&] { r.resolved(3); }),
              HasSubstr("not a multiple of micro_batch_size 4 x 3"));

  r = parse(std::string(kMinimal) + "micro_batch_size: 4\ngradient_accumulation: 8\n");
  EXPECT_EQ(r.resolved(2).effective_batch, 64);

  r = parse(std::string(kMinimal) +
            "micro_batch_size: 4\neffective_batch: 64\ngradient_accumulation: 8\n");
  EXPECT_THAT(error_of([&] { r.resolved(1); }),
              HasSubstr("gradient_accumulation 8 disagrees with effective_batch 64"));
  EXPECT_EQ(r.resolved(2).gradient_accumulation, 8);  // consistent for two processes

  r = parse(kMinimal);
  EXPECT_EQ(r.resolved().gradient_accumulation, 1);
  EXPECT_EQ(r.resolved().effective_batch, 1);
}

TEST(Recipe, ValidateWorksOnRecipesBuiltInCode) {
  TrainRecipe r;
  EXPECT_THAT(error_of([&] { r.validate(); }), HasSubstr("model: required"));
  r.model = "m";
  r.data = {"d"};
  r.output_dir = "o";
  r.validate();
  r.lora.targets = {"qkv"};
  EXPECT_THAT(error_of([&] { r.validate(); }),
              HasSubstr("field 'lora.targets': unknown LoRA target module 'qkv'"));
}

}  // namespace
}  // namespace seqit::train
