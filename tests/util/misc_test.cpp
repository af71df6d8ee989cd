#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <optional>

#include "testing.h"
#include "util/error.h"
#include "util/gguf.h"
#include "util/interrupt.h"
#include "util/progress.h"
#include "util/thread_pool.h"
#include "util/utf8.h"

TEST(Utf8, FindsFirstInvalidByte) {
  EXPECT_TRUE(seqit::utf8::is_valid("héllo ✓ 🎉"));
  EXPECT_EQ(seqit::utf8::first_invalid("ab\xC3"), 2u);            // truncated 2-byte
  EXPECT_EQ(seqit::utf8::first_invalid("a\xC0\x80"), 1u);         // overlong
  EXPECT_EQ(seqit::utf8::first_invalid("ab\xED\xA0\x80"), 2u);    // surrogate
  EXPECT_EQ(seqit::utf8::first_invalid("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
}

TEST(Utf8, SanitizeReplacesEachInvalidByte) {
  EXPECT_EQ(seqit::utf8::sanitize("caf\xc3\xa9"), "caf\xc3\xa9");            // valid: unchanged
  EXPECT_EQ(seqit::utf8::sanitize("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd");  // half a character
  EXPECT_EQ(seqit::utf8::sanitize("a\xff"
                                  "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(seqit::utf8::sanitize(""), "");
  EXPECT_TRUE(seqit::utf8::is_valid(
      seqit::utf8::sanitize("\xed\xa0\x80x\xc0")));  // surrogate, overlong lead
}

TEST(Utf8, CompletePrefixHoldsBackUnfinishedSequences) {
  std::string s = "a🎉";  // 1 + 4 bytes
  EXPECT_EQ(seqit::utf8::complete_prefix(s), 5u);
  EXPECT_EQ(seqit::utf8::complete_prefix(s.substr(0, 4)), 1u);
  EXPECT_EQ(seqit::utf8::complete_prefix(s.substr(0, 2)), 1u);
  std::string out;
  seqit::utf8::append(out, U'🎉');
  EXPECT_EQ(out, "🎉");
}

TEST(ThreadPool, ParallelForVisitsEveryIndexOnceAndPropagatesErrors) {
  seqit::ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(hits.size(), [&](size_t i) { hits[i]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_THROW(pool.parallel_for(10,
                                 [](size_t i) {
                                   if (i == 7) throw seqit::Error("seven");
                                 }),
               seqit::Error);
  EXPECT_EQ(pool.submit([] { return 41 + 1; }).get(), 42);
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(seqit::Progress::format_duration(3.25), "3.2s");
  EXPECT_EQ(seqit::Progress::format_duration(42), "42s");
  EXPECT_EQ(seqit::Progress::format_duration(138), "2m18s");
  EXPECT_EQ(seqit::Progress::format_duration(3720), "1h02m");
}

TEST(Gguf, ReadsRealVocabularyFile) {
  auto f = seqit::gguf::File::open(
      seqit::testing::shared_data("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "gpt2");
  auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 50257u);
  EXPECT_EQ(tokens[0], "!");
  EXPECT_EQ(tokens[50256], "<|endoftext|>");
}

TEST(Gguf, ReadsTensorsOfTinyModel) {
  auto f = seqit::gguf::File::open(
      seqit::testing::shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf"));
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  ASSERT_FALSE(f->tensors().empty());
  const auto* emb = f->tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dims.size(), 2u);
  EXPECT_EQ(emb->dims[1], 32000);
}

TEST(Gguf, TruncatedFileNamesTheProblem) {
  seqit::testing::TempDir dir;
  std::string bytes = seqit::testing::slurp(
      seqit::testing::shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf"));
  seqit::testing::spit(dir / "cut.gguf", bytes.substr(0, bytes.size() - 100));
  try {
    seqit::gguf::File::open(dir / "cut.gguf");
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cut.gguf"), std::string::npos) << e.what();
  }
  seqit::testing::spit(dir / "bad.gguf", "GGUX-not-a-gguf-file-at-all-0123456789");
  EXPECT_THROW(seqit::gguf::File::open(dir / "bad.gguf"), seqit::Error);
}

// Guards that overlap (two jobs training at once) share the flag; the handler stays until the last
// guard goes, and a new guard after that starts clean.
TEST(InterruptGuard, OverlappingGuardsShareTheFlagUntilTheLastGoes) {
  std::optional<seqit::InterruptGuard> a(std::in_place), b(std::in_place);
  EXPECT_FALSE(a->requested());
  std::raise(SIGINT);  // caught: only raises the flag
  EXPECT_TRUE(a->requested());
  EXPECT_TRUE(b->requested());
  EXPECT_EQ(b->signal(), SIGINT);
  a.reset();
  EXPECT_TRUE(b->requested());  // the first guard leaving neither clears it nor uninstalls
  std::optional<seqit::InterruptGuard> c(std::in_place);
  EXPECT_TRUE(c->requested());  // joining a live group keeps the request
  b.reset();
  c.reset();
  seqit::InterruptGuard fresh;
  EXPECT_FALSE(fresh.requested());
  std::raise(SIGTERM);
  EXPECT_EQ(fresh.signal(), SIGTERM);
}
