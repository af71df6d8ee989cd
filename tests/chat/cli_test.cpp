// `seqit template render|check` end to end through the built binary.
#include <gtest/gtest.h>

#include "testing.h"

namespace seqit::chat {
namespace {
using testing::shared_data;
using testing::shell_quote;

struct CommandResult {
  int status;
  std::string output;
};

CommandResult seqit(const std::string& args) {
  CommandResult r;
  r.status =
      testing::run_command(shell_quote(testing::seqit_binary().string()) + " " + args, &r.output);
  return r;
}

std::string conversation(const testing::TempDir& dir) {
  auto path = dir / "chat.json";
  testing::spit(path, R"({"messages": [{"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]})");
  return shell_quote(path.string());
}

TEST(TemplateCli, RendersBuiltinAndConfigTemplates) {
  testing::TempDir dir;
  std::string chat = conversation(dir);
  CommandResult r = seqit("template render --builtin chatml --messages " + chat);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(
      r.output,
      "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
      "<|im_start|>assistant\nParis.<|im_end|>\n");
  r = seqit("template render --tokenizer-config " +
            shell_quote(shared_data("tokenizers/llama3/tokenizer_config.json").string()) +
            " --messages " + chat);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(
      r.output.rfind(
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe terse.<|eot_id|>", 0),
      0u)
      << r.output;
  // The tulu format takes EOS from the tokenizer and ends with the generation prompt when asked.
  auto one = dir / "one.json";
  testing::spit(one, R"([{"role": "user", "content": "Hi"}])");
  r = seqit("template render --builtin tulu --tokenizer " +
            shell_quote(shared_data("tokenizers/llama2/tokenizer.model").string()) +
            " --add-generation-prompt --messages " + shell_quote(one.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "<|user|>\nHi\n<|assistant|>\n");
}

TEST(TemplateCli, CheckShowsLearnedTokensAndWarnings) {
  testing::TempDir dir;
  std::string chat = conversation(dir);
  std::string qwen = shell_quote(shared_data("tokenizers/qwen/qwen3_tokenizer.json").string());
  CommandResult r = seqit("template check --builtin chatml --tokenizer " + qwen + " --messages " +
                          chat + " --color never");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("no problems found"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("<|im_start|>assistant\n«Paris.<|im_end|>»\n"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("learned: 3"), std::string::npos)
      << r.output;  // "Paris", ".", "<|im_end|>"
  r = seqit("template check --builtin chatml --tokenizer " + qwen + " --messages " + chat +
            " --color always");
  EXPECT_NE(r.output.find("\x1b[30;42mParis.<|im_end|>\x1b[0m"), std::string::npos) << r.output;
  // A template without end markers: warnings, and exit status 3 with --strict.
  auto bad = dir / "bad.jinja";
  testing::spit(bad, "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}");
  r = seqit("template check --template " + shell_quote(bad.string()) + " --tokenizer " + qwen +
            " --strict");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("warning: [end-marker]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("warning: [generation-prompt]"), std::string::npos) << r.output;
}

TEST(TemplateCli, ErrorsNameTheTemplateLineAndColumn) {
  testing::TempDir dir;
  std::string chat = conversation(dir);
  auto broken = dir / "broken.jinja";
  testing::spit(broken, "{% for m in messages %}\n{{ m.content + }}\n{% endfor %}");
  CommandResult r =
      seqit("template render --template " + shell_quote(broken.string()) + " --messages " + chat);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("broken.jinja:2:16: unexpected '}}'"), std::string::npos) << r.output;
  // raise_exception: the template's message, located.
  r = seqit(
      "template render --template " +
      shell_quote(
          shared_data("tokenizers/chat_templates/llamacpp/google-gemma-2-2b-it.jinja").string()) +
      " --messages " + chat);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("System role not supported"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("google-gemma-2-2b-it.jinja:1:"), std::string::npos) << r.output;
  r = seqit("template render --builtin nope --messages " + chat);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(
      r.output.find(
          "unknown builtin chat format 'nope' (available: tulu, alpaca, chatml, llama3, mistral)"),
      std::string::npos)
      << r.output;
  auto not_messages = dir / "x.json";
  testing::spit(not_messages, R"({"msgs": []})");
  r = seqit("template render --builtin chatml --messages " + shell_quote(not_messages.string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("x.json: expected a JSON array of messages"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace seqit::chat
