// Checkpoints: a bit-exact round trip of every tensor and of the state; the run folder layout;
// keep-last; a checkpoint from another model or recipe is refused with the differences; a full disk
// (RLIMIT_FSIZE in a child process) and a crash mid-write (the child killed by SIGXFSZ) leave the
// earlier checkpoints intact and nothing that latest_checkpoint would take.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "testing.h"
#include "train/run_dir.h"
#include "train_testing.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::train {
namespace {

namespace fs = std::filesystem;
using seqit::testing::TempDir;
using ::testing::HasSubstr;

model::ModelConfig tiny_config(int64_t layers = 5) {
  model::ModelConfig c;
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_layers = layers;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 8;
  c.tie_word_embeddings = true;
  return c;
}

TrainRecipe tiny_recipe() {
  TrainRecipe r;
  r.model = "stories260K.bin";
  r.data = {"alpaca.json"};
  r.output_dir = "out";
  return r.resolved();
}

// A parameter with its AdamW state, filled with values that a careless copy would change: NaN
// payloads, -0, subnormals, infinities, and arbitrary bit patterns.
struct Param {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> w, m, v;
};

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::vector<Param> make_params(uint32_t seed) {
  std::vector<Param> ps = {{"model.embed_tokens.weight", {512, 64}, {}, {}, {}},
                           {"model.layers.0.self_attn.q_proj.weight", {64, 64}, {}, {}, {}},
                           {"model.norm.weight", {64}, {}, {}, {}},
                           {"empty", {0, 3}, {}, {}, {}}};
  uint32_t x = seed;
  auto next = [&] { return x = x * 1664525u + 1013904223u; };
  for (Param& p : ps) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    for (auto* buf : {&p.w, &p.m, &p.v}) {
      buf->resize(size_t(n));
      for (float& f : *buf) f = from_bits(next());
    }
    if (n >= 6) {
      p.w[0] = from_bits(0x7fc01234u);  // NaN with a payload
      p.w[1] = -0.0f;
      p.w[2] = from_bits(0x00000001u);  // the smallest subnormal
      p.w[3] = std::numeric_limits<float>::infinity();
      p.w[4] = -std::numeric_limits<float>::infinity();
      p.w[5] = from_bits(0xffbfffffu);  // a negative NaN
    }
  }
  return ps;
}

std::vector<TensorRef> refs(const std::vector<Param>& ps) {
  std::vector<TensorRef> out;
  for (const Param& p : ps) {
    out.push_back({"model.safetensors", p.name, p.w.data(), p.shape});
    out.push_back({"optimizer.safetensors", "m." + p.name, p.m.data(), p.shape});
    out.push_back({"optimizer.safetensors", "v." + p.name, p.v.data(), p.shape});
  }
  return out;
}

std::vector<TensorSlot> slots(std::vector<Param>& ps) {
  std::vector<TensorSlot> out;
  for (Param& p : ps) {
    out.push_back({"model.safetensors", p.name, p.w.data(), p.shape});
    out.push_back({"optimizer.safetensors", "m." + p.name, p.m.data(), p.shape});
    out.push_back({"optimizer.safetensors", "v." + p.name, p.v.data(), p.shape});
  }
  return out;
}

CheckpointState make_state(int64_t step) {
  CheckpointState s;
  s.step = step;
  s.epoch = double(step) / 7.0;
  s.data = {step / 7, step % 7 * 4};
  s.schedule = {ScheduleKind::cosine, 2e-5, 3, 390};
  s.rng = {0x9e3779b97f4a7c15ull, 0xffffffffffffffffull, 0, uint64_t(step)};
  s.tokens = step * 1000 + 1;
  s.elapsed_s = 12.345678901234567 * double(step);
  s.model = model_fingerprint(tiny_config());
  s.recipe = recipe_fingerprint(tiny_recipe());
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(Checkpoint, RoundTripIsBitExact) {
  TempDir tmp;
  RunDir run{tmp.path() / "out"};
  run.create();
  std::vector<Param> saved = make_params(1);
  CheckpointState state = make_state(120);
  fs::path dir = save_run_checkpoint(run, state, refs(saved), 3);
  EXPECT_EQ(dir, run.root / "checkpoints" / "step-000120");
  EXPECT_TRUE(fs::exists(dir / "checkpoint.json"));
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "optimizer.safetensors"));

  std::vector<Param> loaded = make_params(2);  // other values, same shapes
  CheckpointState back = load_checkpoint(dir, slots(loaded), model_fingerprint(tiny_config()),
                                         recipe_fingerprint(tiny_recipe()));
  EXPECT_EQ(back, state);
  for (size_t i = 0; i < saved.size(); ++i) {
    EXPECT_TRUE(same_bits(saved[i].w, loaded[i].w)) << saved[i].name;
    EXPECT_TRUE(same_bits(saved[i].m, loaded[i].m)) << saved[i].name;
    EXPECT_TRUE(same_bits(saved[i].v, loaded[i].v)) << saved[i].name;
  }
  EXPECT_EQ(latest_checkpoint(run.root), dir);
}

TEST(Checkpoint, RunFolderLayout) {
  RunDir run{"/runs/x"};
  EXPECT_EQ(run.recipe_file(), "/runs/x/recipe.yaml");
  EXPECT_EQ(run.metrics_file(), "/runs/x/metrics.jsonl");
  EXPECT_EQ(run.chart_file(), "/runs/x/loss.png");
  EXPECT_EQ(run.checkpoint_dir(120), "/runs/x/checkpoints/step-000120");
  EXPECT_EQ(run.checkpoint_dir(12345678), "/runs/x/checkpoints/step-12345678");
  EXPECT_EQ(run.final_dir(), "/runs/x/final");
}

TEST(Checkpoint, KeepLastDeletesOnlyOlderCompleteOnes) {
  TempDir tmp;
  RunDir run{tmp.path()};
  run.create();
  std::vector<Param> ps = make_params(3);
  // Something a user put there, and a damaged folder: neither is touched nor taken.
  fs::create_directories(run.checkpoints_dir() / "notes");
  fs::create_directories(run.checkpoints_dir() / "step-000001");
  for (int64_t step : {10, 20, 30, 40}) save_run_checkpoint(run, make_state(step), refs(ps), 2);
  std::vector<fs::path> left = list_checkpoints(run.root);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].filename(), "step-000030");
  EXPECT_EQ(left[1].filename(), "step-000040");
  EXPECT_FALSE(fs::exists(run.checkpoint_dir(10)));
  EXPECT_TRUE(fs::exists(run.checkpoints_dir() / "notes"));
  EXPECT_TRUE(fs::exists(run.checkpoints_dir() / "step-000001"));
  // keep_last 0 keeps everything.
  save_run_checkpoint(run, make_state(50), refs(ps), 0);
  EXPECT_EQ(list_checkpoints(run.root).size(), 3u);
  // Saving the same step again replaces it.
  save_run_checkpoint(run, make_state(50), refs(make_params(4)), 0);
  EXPECT_EQ(list_checkpoints(run.root).size(), 3u);
}

TEST(Checkpoint, RefusesAnotherModelOrRecipeWithTheDifferences) {
  TempDir tmp;
  RunDir run{tmp.path()};
  std::vector<Param> ps = make_params(5);
  fs::path dir = save_run_checkpoint(run, make_state(7), refs(ps), 0);

  std::string e = error_of([&] {
    load_checkpoint(dir, slots(ps), model_fingerprint(tiny_config(6)),
                    recipe_fingerprint(tiny_recipe()));
  });
  EXPECT_THAT(e, HasSubstr("cannot resume from this checkpoint: it was written for another model"));
  EXPECT_THAT(e, HasSubstr("num_layers: checkpoint 5, now 6"));
  EXPECT_THAT(e, HasSubstr("step-000007"));

  TrainRecipe other = tiny_recipe();
  other.seed = 7;
  other.max_len = 512;
  other.lr = 1.0;  // may change on resume: not in the fingerprint
  e = error_of([&] {
    load_checkpoint(dir, slots(ps), model_fingerprint(tiny_config()), recipe_fingerprint(other));
  });
  EXPECT_THAT(e, HasSubstr("max_len: checkpoint 2048, now 512"));
  EXPECT_THAT(e, HasSubstr("seed: checkpoint 42, now 7"));
  EXPECT_THAT(e, ::testing::Not(HasSubstr("lr")));
}

TEST(Checkpoint, LoadRefusesMissingExtraOrMisshapenTensors) {
  TempDir tmp;
  RunDir run{tmp.path()};
  std::vector<Param> ps = make_params(6);
  fs::path dir = save_run_checkpoint(run, make_state(1), refs(ps), 0);
  Fingerprint m = model_fingerprint(tiny_config()), r = recipe_fingerprint(tiny_recipe());

  std::vector<TensorSlot> s = slots(ps);
  s.pop_back();
  EXPECT_THAT(error_of([&] { load_checkpoint(dir, s, m, r); }),
              HasSubstr("has tensor 'v.empty' that the run does not load"));
  s = slots(ps);
  s[0].shape = {64, 512};
  EXPECT_THAT(error_of([&] { load_checkpoint(dir, s, m, r); }),
              HasSubstr("tensor 'model.embed_tokens.weight' has shape [512, 64] in the checkpoint, "
                        "the run expects [64, 512]"));
  s = slots(ps);
  s[0].name = "lm_head.weight";
  EXPECT_THAT(error_of([&] { load_checkpoint(dir, s, m, r); }),
              HasSubstr("no tensor 'lm_head.weight'"));
  s = slots(ps);
  std::erase_if(s, [](const TensorSlot& t) { return t.file == "optimizer.safetensors"; });
  EXPECT_THAT(
      error_of([&] { load_checkpoint(dir, s, m, r); }),
      HasSubstr("the checkpoint has optimizer.safetensors (8 tensors) and nothing loads it"));
  // Bad tensor lists are refused before anything is written.
  std::vector<TensorRef> bad = refs(ps);
  bad.push_back(bad[0]);
  EXPECT_THAT(error_of([&] { save_checkpoint(run.checkpoint_dir(2), make_state(2), bad); }),
              HasSubstr("given twice"));
  bad = refs(ps);
  bad[0].file = "../escape.safetensors";
  EXPECT_THAT(error_of([&] { save_checkpoint(run.checkpoint_dir(2), make_state(2), bad); }),
              HasSubstr("plain name"));
  EXPECT_FALSE(fs::exists(run.checkpoint_dir(2)));
}

TEST(Checkpoint, DamagedCheckpointsAreNotTaken) {
  TempDir tmp;
  RunDir run{tmp.path()};
  std::vector<Param> ps = make_params(7);
  save_run_checkpoint(run, make_state(10), refs(ps), 0);
  fs::path newer = save_run_checkpoint(run, make_state(20), refs(ps), 0);
  // Cut the newer one's weights short, as a disk error might.
  fs::resize_file(newer / "model.safetensors", 1000);
  EXPECT_EQ(latest_checkpoint(run.root), run.checkpoint_dir(10));
  EXPECT_THAT(
      error_of([&] { read_checkpoint_state(newer); }),
      HasSubstr(
          "not a complete seqit checkpoint: model.safetensors has 1000 bytes, the manifest says"));
  // A newer format version is refused by name.
  fs::path old = run.checkpoint_dir(10);
  std::string text = seqit::testing::slurp(old / "checkpoint.json");
  write_file_atomic(
      old / "checkpoint.json",
      std::string(text).replace(text.find("\"format_version\": 1"), 19, "\"format_version\": 9"));
  EXPECT_THAT(error_of([&] { read_checkpoint_state(old); }), HasSubstr("format version 9"));
  EXPECT_EQ(latest_checkpoint(run.root), std::nullopt);
}

// What a child process reports back through a pipe.
struct ChildResult {
  int status = 0;
  std::string message;
};

// Runs `body` in a forked child whose files may grow to at most `max_file_bytes`; SIGXFSZ is
// ignored (writes fail with EFBIG, as on a full disk) unless `die_on_limit` (the child is killed
// mid-write, as by a crash).
template <typename F>
ChildResult run_with_file_limit(rlim_t max_file_bytes, bool die_on_limit, F body) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::signal(SIGXFSZ, die_on_limit ? SIG_DFL : SIG_IGN);
    rlimit lim{max_file_bytes, max_file_bytes};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    std::string msg;
    int code = 0;
    try {
      body();
      msg = "no error";
      code = 3;
    } catch (const std::exception& e) {
      msg = e.what();
    }
    (void)!::write(fds[1], msg.data(), msg.size());
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildResult r;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) r.message.append(buf, size_t(n));
  ::close(fds[0]);
  ::waitpid(pid, &r.status, 0);
  return r;
}

TEST(Checkpoint, FullDiskLeavesEarlierCheckpointsAndNoHalfOne) {
  TempDir tmp;
  RunDir run{tmp.path()};
  std::vector<Param> ps = make_params(8);
  save_run_checkpoint(run, make_state(10), refs(ps), 1);
  // The weights file is ~150 KB: the disk "fills" after 64 KB of it.
  ChildResult r = run_with_file_limit(
      64 * 1024, false, [&] { save_run_checkpoint(run, make_state(20), refs(ps), 1); });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.message;
  EXPECT_EQ(WEXITSTATUS(r.status), 0) << r.message;
  std::cerr << "  the error: " << r.message << "\n";
  EXPECT_THAT(r.message, HasSubstr("cannot save checkpoint"));
  EXPECT_THAT(r.message, HasSubstr("step-000020"));
  EXPECT_THAT(r.message,
              HasSubstr("File too large"));  // EFBIG; a full disk says ENOSPC the same way
  EXPECT_THAT(r.message, HasSubstr("earlier checkpoints are untouched"));
  // Nothing half-written: no step-20 folder, no temporary left, step 10 intact and not pruned.
  EXPECT_FALSE(fs::exists(run.checkpoint_dir(20)));
  for (const auto& e : fs::directory_iterator(run.checkpoints_dir()))
    EXPECT_EQ(e.path().filename(), "step-000010") << "left behind: " << e.path();
  EXPECT_EQ(latest_checkpoint(run.root), run.checkpoint_dir(10));
  std::vector<Param> back = make_params(9);
  load_checkpoint(run.checkpoint_dir(10), slots(back), model_fingerprint(tiny_config()),
                  recipe_fingerprint(tiny_recipe()));
  EXPECT_TRUE(same_bits(back[0].w, ps[0].w));
}

TEST(Checkpoint, CrashMidWriteLeavesNothingResumeWouldTake) {
  TempDir tmp;
  RunDir run{tmp.path()};
  std::vector<Param> ps = make_params(10);
  save_run_checkpoint(run, make_state(10), refs(ps), 1);
  ChildResult r = run_with_file_limit(
      64 * 1024, true, [&] { save_run_checkpoint(run, make_state(20), refs(ps), 1); });
  ASSERT_TRUE(WIFSIGNALED(r.status)) << "the child was meant to die mid-write: " << r.message;
  EXPECT_EQ(WTERMSIG(r.status), SIGXFSZ);
  // The crash left its temporary folder; resume ignores it and takes step 10.
  bool temp_left = false;
  for (const auto& e : fs::directory_iterator(run.checkpoints_dir()))
    temp_left |= e.path().filename().string().starts_with(".tmp-step-000020");
  EXPECT_TRUE(temp_left);
  EXPECT_EQ(latest_checkpoint(run.root), run.checkpoint_dir(10));
  // The next save clears the leftovers.
  save_run_checkpoint(run, make_state(30), refs(ps), 1);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run.checkpoints_dir()))
    names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"step-000030"});
}

}  // namespace
}  // namespace seqit::train
