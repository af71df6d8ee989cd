// `seqit serve` with the real stories260K model, as a child process on a free port, against the
// HTTP backend and raw HTTP: answers equal the in-process local backend's, streaming, n and stop,
// errors, scoring, 200 concurrent requests with bounded memory, and graceful shutdown.
#include <gtest/gtest.h>

#include <httplib.h>
#include <signal.h>
#include <regex>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "llm/format_check.h"
#include "llm/http_backend.h"
#include "llm/local_backend.h"
#include "serve_process.h"
#include "testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace seqit::llm {
namespace {
using nlohmann::json;
using seqit::testing::ServeProcess;
using seqit::testing::shared_data;

constexpr const char* kKey = "sk-seqit-test";

std::string model_path() {
  return shared_data("models/stories260K/stories260K.bin").string();
}
std::string tokenizer_path() {
  return shared_data("models/stories260K/tok512.bin").string();
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

// One server and one in-process local backend shared by the tests of this suite.
class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServeProcess(
        {"--model", model_path(), "--tokenizer", tokenizer_path(), "--api-key", kKey});
    local_ = LocalBackend::open(model_path(), tokenizer_path()).release();
  }
  static void TearDownTestSuite() {
    delete local_;
    delete server_;
  }
  static std::unique_ptr<HttpBackend> client(int in_flight = 8) {
    HttpBackendOptions o;
    o.base_urls = {server_->base_url()};
    o.model = "stories260K";
    o.api_key = kKey;
    o.max_in_flight = in_flight;
    o.retry.max_retries = 0;
    o.request_timeout_s = 120;
    return std::make_unique<HttpBackend>(o);
  }
  static httplib::Result post(const std::string& path, const std::string& body,
                              const std::string& key = kKey) {
    httplib::Client http("127.0.0.1", server_->port());
    http.set_read_timeout(120, 0);
    httplib::Headers headers;
    if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
    return http.Post(path.c_str(), headers, body, "application/json");
  }
  static ServeProcess* server_;
  static LocalBackend* local_;
};
ServeProcess* Serve::server_ = nullptr;
LocalBackend* Serve::local_ = nullptr;

TEST_F(Serve, GreedyFromBosIsTheKnownStoriesText) {
  // The published reference behaviour of stories260K (shared/data/SOURCES.md).
  auto r = client()->complete("", greedy(32));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(r.value().text().starts_with(
      "Once upon a time, there was a little girl named Lily. She loved to play "
      "outside in the park."))
      << r.value().text();
  EXPECT_EQ(r.value().choices[0].finish_reason, "length");
  EXPECT_EQ(r.value().usage.completion_tokens, 32);
  EXPECT_EQ(r.value().usage.prompt_tokens, 1);  // BOS
}

TEST_F(Serve, GreedyTextEqualsTheLocalBackend) {
  auto http = client();
  for (const std::string prompt : {"Once upon a time", "The dog", "Lily and Ben went to"}) {
    auto remote = http->complete(prompt, greedy(40));
    auto here = local_->complete(prompt, greedy(40));
    ASSERT_TRUE(remote.ok()) << remote.error().describe();
    ASSERT_TRUE(here.ok()) << here.error().describe();
    EXPECT_EQ(remote.value().text(), here.value().text()) << prompt;
    EXPECT_FALSE(remote.value().text().empty());
    EXPECT_EQ(remote.value().usage.prompt_tokens, here.value().usage.prompt_tokens);
    auto remote_chat = http->chat({{"user", prompt}}, greedy(30));
    auto here_chat = local_->chat({{"user", prompt}}, greedy(30));
    ASSERT_TRUE(remote_chat.ok()) << remote_chat.error().describe();
    EXPECT_EQ(remote_chat.value().text(), here_chat.value().text()) << prompt;
  }
}

// Parses a server-sent event stream into its JSON events; checks it ends with [DONE].
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> events;
  std::istringstream in(body);
  std::string line;
  bool done = false;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    EXPECT_TRUE(line.starts_with("data: ")) << line;
    std::string data = line.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    EXPECT_FALSE(done) << "event after [DONE]";
    events.push_back(json::parse(data));
  }
  EXPECT_TRUE(done) << "no [DONE]";
  return events;
}

TEST_F(Serve, StreamedChunksConcatenateToTheSameText) {
  auto full = client()->chat({{"user", "Once upon a time"}}, greedy(48));
  ASSERT_TRUE(full.ok());
  auto res =
      post("/v1/chat/completions", R"({"model": "stories260K", "stream": true, "max_tokens": 48,
      "temperature": 0, "stream_options": {"include_usage": true},
      "messages": [{"role": "user", "content": "Once upon a time"}]})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  auto events = sse_events(res->body);
  ASSERT_GE(events.size(), 4u);
  std::string text;
  int with_text = 0;
  std::string finish;
  for (size_t i = 0; i < events.size(); ++i) {
    const json& e = events[i];
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    EXPECT_EQ(e["model"], "stories260K");
    if (e["choices"].empty()) {
      EXPECT_EQ(e["usage"]["completion_tokens"], 48);  // the usage chunk
      continue;
    }
    const json& c = e["choices"][0];
    if (i == 0) {
      EXPECT_EQ(c["delta"]["role"], "assistant");
    }
    if (c["delta"].contains("content")) {
      text += c["delta"]["content"].get<std::string>();
      ++with_text;
    }
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_EQ(text, full.value().text());
  EXPECT_GT(with_text, 5) << "the text should arrive in many pieces";
  EXPECT_EQ(finish, "length");

  // Legacy completions stream "text" pieces.
  auto plain = client()->complete("The cat", greedy(20));
  auto res2 = post("/v1/completions",
                   R"({"stream": true, "max_tokens": 20, "temperature": 0, "prompt": "The cat"})");
  ASSERT_TRUE(res2);
  std::string text2;
  for (const json& e : sse_events(res2->body)) {
    EXPECT_EQ(e["object"], "text_completion");
    text2 += e["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text2, plain.value().text());
}

TEST_F(Serve, SeveralChoicesAreSeededAndReproducible) {
  auto http = client();
  SamplingParams p;
  p.temperature = 1.0;
  p.max_tokens = 24;
  p.n = 3;
  p.seed = 1234;
  auto a = http->complete("Once upon a time", p);
  auto b = http->complete("Once upon a time", p);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  ASSERT_EQ(a.value().choices.size(), 3u);
  std::set<std::string> distinct;
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(a.value().choices[i].text.empty());
    EXPECT_EQ(a.value().choices[i].text, b.value().choices[i].text) << "same seed, same samples";
    distinct.insert(a.value().choices[i].text);
  }
  EXPECT_EQ(distinct.size(), 3u) << "each choice samples with its own seed";
  EXPECT_EQ(a.value().usage.completion_tokens, 3 * 24);
  // Equal to the local backend's samples with the same seed.
  auto here = local_->complete("Once upon a time", p);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(here.value().choices[i].text, a.value().choices[i].text);
}

TEST_F(Serve, StopStringsCutTheAnswer) {
  auto http = client();
  auto whole = http->complete("", greedy(40));
  ASSERT_TRUE(whole.ok());
  const std::string& text = whole.value().text();
  const size_t at = text.find("Lily");
  ASSERT_NE(at, std::string::npos) << text;
  SamplingParams p = greedy(40);
  p.stop = {"Lily", "never appears"};
  auto cut = http->complete("", p);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut.value().text(), text.substr(0, at));
  EXPECT_EQ(cut.value().choices[0].finish_reason, "stop");
}

TEST_F(Serve, ScoresEqualTheLocalBackend) {
  auto remote =
      client()->score("Once upon a time, there was a little", {" girl", " dog", " zebra"});
  auto here = local_->score("Once upon a time, there was a little", {" girl", " dog", " zebra"});
  ASSERT_TRUE(remote.ok()) << remote.error().describe();
  ASSERT_TRUE(here.ok()) << here.error().describe();
  ASSERT_EQ(remote.value().logprobs.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    // The server scores each continuation in its own forward pass, the local call all three in one
    // batch: fp32 GEMMs of different shapes round differently (about 1e-6 relative).
    EXPECT_NEAR(remote.value().logprobs[i], here.value().logprobs[i], 1e-4) << i;
    EXPECT_EQ(remote.value().token_counts[i], here.value().token_counts[i]);
    EXPECT_LT(here.value().logprobs[i], 0);
  }
  // The story model knows girls better than zebras.
  EXPECT_GT(here.value().logprobs[0], here.value().logprobs[2]);
}

TEST_F(Serve, MalformedJsonIs400WithAMessage) {
  auto res = post("/v1/chat/completions", R"({"messages": [)");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  json body = json::parse(res->body);
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("could not parse the JSON body"),
            std::string::npos)
      << res->body;
  auto field = post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": 3}]})");
  EXPECT_EQ(field->status, 400);
  EXPECT_EQ(json::parse(field->body)["error"]["message"],
            "'messages[0].content' must be a string or an array of text parts, got a number");
}

// Structured outputs: response_format json_schema (property order from the request text),
// json_object, and vLLM's guided_choice / guided_regex, sent as raw requests and through the HTTP
// backend; every answer of stories260K (a model that knows nothing of JSON) parses. A schema the
// constraint cannot honour is a 400 naming where.
TEST_F(Serve, ResponseFormatsGiveAnswersThatParse) {
  const std::string schema =
      R"({"type": "object", "properties": {"zeta": {"enum": ["yes", "no"]},
          "alpha": {"type": "integer"}, "list": {"type": "array", "items": {"type": "string"},
          "maxItems": 2}}, "required": ["zeta", "alpha", "list"], "additionalProperties": false})";
  for (int seed = 0; seed < 6; ++seed) {
    auto res = post("/v1/chat/completions",
                    R"({"messages": [{"role": "user", "content": "Answer"}], "max_tokens": 60,
                        "temperature": 1, "seed": )" +
                        std::to_string(seed) +
                        R"(, "response_format": {"type": "json_schema", "json_schema":
                        {"name": "verdict", "strict": true, "schema": )" +
                        schema + "}}}");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    const json body = json::parse(res->body);
    const std::string content = body["choices"][0]["message"]["content"];
    EXPECT_EQ(body["choices"][0]["finish_reason"], "stop") << content;
    const auto answer = nlohmann::ordered_json::parse(content);  // throws if it does not parse
    std::vector<std::string> keys;
    for (const auto& [k, v] : answer.items()) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"zeta", "alpha", "list"})) << content;
    EXPECT_TRUE(answer["zeta"] == "yes" || answer["zeta"] == "no") << content;
    EXPECT_TRUE(answer["alpha"].is_number_integer()) << content;
    EXPECT_LE(answer["list"].size(), 2u) << content;
  }
  auto object = post("/v1/completions", R"({"prompt": "Once", "max_tokens": 50, "temperature": 1,
                                            "response_format": {"type": "json_object"}})");
  ASSERT_EQ(object->status, 200) << object->body;
  EXPECT_TRUE(
      json::parse(json::parse(object->body)["choices"][0]["text"].get<std::string>()).is_object());

  // Through the HTTP backend: the request's format travels as response_format / guided_*.
  auto http = client();
  Request choice;
  choice.kind = RequestKind::chat;
  choice.messages = {{"user", "Is the sky green?"}};
  choice.params = greedy(8);
  choice.response_format.kind = ResponseFormat::Kind::choice;
  choice.response_format.choices = {"yes", "no", "maybe"};
  auto c = http->submit_async(choice).get();
  ASSERT_TRUE(c.ok()) << c.error().describe();
  const std::string picked = c.value().text();
  EXPECT_TRUE(picked == "yes" || picked == "no" || picked == "maybe") << picked;
  auto local = local_->submit_async(choice).get();
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local.value().text(), picked);  // same greedy answer in process and over HTTP
  Request digits = choice;
  digits.response_format = {};
  digits.response_format.kind = ResponseFormat::Kind::regex;
  digits.response_format.pattern = R"(score: [1-5]/5)";
  digits.params = greedy(16);  // 10 bytes; stories260K's pieces are short
  auto d = http->submit_async(digits).get();
  ASSERT_TRUE(d.ok()) << d.error().describe();
  EXPECT_TRUE(std::regex_match(d.value().text(), std::regex(R"(score: [1-5]/5)")))
      << d.value().text();
  // What the CLI puts over HTTP checks the reply too (llm/format_check.h): seqit serve took the
  // format and held it, on the first attempt.
  FormatCheckedBackend checked{std::shared_ptr<HttpBackend>(client())};
  auto held = checked.submit_async(digits).get();
  ASSERT_TRUE(held.ok()) << held.error().describe();
  EXPECT_EQ(held.value().text(), d.value().text());
  EXPECT_EQ(held.value().format_check, "server");
  EXPECT_EQ(held.value().format_attempts, 1);
  EXPECT_TRUE(checked.refused_formats().empty());

  auto bad = post("/v1/chat/completions",
                  R"({"messages": [{"role": "user", "content": "x"}], "response_format":
                      {"type": "json_schema", "json_schema": {"name": "x", "schema":
                      {"type": "object", "properties": {"when": {"type": "string",
                       "format": "date-time"}}}}}})");
  ASSERT_EQ(bad->status, 400) << bad->body;
  EXPECT_NE(json::parse(bad->body)["error"]["message"].get<std::string>().find(
                "/properties/when: 'format' is not supported"),
            std::string::npos)
      << bad->body;
  // A pattern too large to compile is the client's fault, refused before any decoding.
  auto hostile = post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}],
                                                 "guided_regex": "(?:a{1000}){1000}"})");
  EXPECT_EQ(hostile->status, 400);
  EXPECT_NE(hostile->body.find("too large"), std::string::npos) << hostile->body;
  auto kind = post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}],
                                              "response_format": {"type": "xml"}})");
  EXPECT_EQ(kind->status, 400);
  EXPECT_NE(kind->body.find("response_format.type"), std::string::npos) << kind->body;
}

// Chat logprobs: the answer's tokens with their log-probabilities and top alternatives, in the
// OpenAI shape, streamed (on each choice's last chunk) and not, equal to the in-process backend's
// and through the HTTP backend; under greedy decoding each token is its own most likely
// alternative and the tokens' bytes spell the answer.
TEST_F(Serve, ChatLogprobsAndTopLogprobs) {
  const std::string body =
      R"({"messages": [{"role": "user", "content": "Tell a story"}], "max_tokens": 12,
          "temperature": 0, "logprobs": true, "top_logprobs": 3)";
  auto res = post("/v1/chat/completions", body + "}");
  ASSERT_EQ(res->status, 200) << res->body;
  const json choice = json::parse(res->body)["choices"][0];
  const json& content = choice["logprobs"]["content"];
  ASSERT_EQ(content.size(), 12u) << res->body;
  std::string spelled;
  for (const json& t : content) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    EXPECT_EQ(t["top_logprobs"][0]["token"], t["token"]);
    EXPECT_DOUBLE_EQ(t["top_logprobs"][0]["logprob"].get<double>(), t["logprob"].get<double>());
    EXPECT_GE(t["top_logprobs"][1]["logprob"].get<double>(),
              t["top_logprobs"][2]["logprob"].get<double>());
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    for (const json& b : t["bytes"]) spelled += static_cast<char>(b.get<int>());
  }
  // The chat answer drops a SentencePiece leading space of its first token.
  EXPECT_EQ(spelled.substr(spelled.size() - choice["message"]["content"].get<std::string>().size()),
            choice["message"]["content"].get<std::string>());
  auto streamed = post("/v1/chat/completions", body + R"(, "stream": true})");
  ASSERT_EQ(streamed->status, 200);
  json stream_content = json::array();
  int chunks_with_logprobs = 0;
  for (const json& e : sse_events(streamed->body)) {
    for (const json& c : e["choices"]) {
      if (!c.contains("logprobs") || !c["logprobs"].is_object()) continue;
      ++chunks_with_logprobs;
      // A text delta carries the tokens generated since the previous one.
      if (c.contains("delta") && c["delta"].contains("content")) {
        EXPECT_FALSE(c["logprobs"]["content"].empty()) << c.dump();
      }
      for (const json& t : c["logprobs"]["content"]) stream_content.push_back(t);
    }
  }
  EXPECT_EQ(stream_content, content);
  EXPECT_GT(chunks_with_logprobs, 4);  // per delta, as OpenAI streams them, not all at the end
  // The HTTP backend reads them back; the in-process backend gives the same numbers.
  Request r;
  r.kind = RequestKind::chat;
  r.messages = {{"user", "Tell a story"}};
  r.params = greedy(12);
  r.logprobs = true;
  r.top_logprobs = 3;
  auto remote = client()->submit_async(r).get();
  auto here = local_->submit_async(r).get();
  ASSERT_TRUE(remote.ok()) << remote.error().describe();
  ASSERT_TRUE(here.ok());
  ASSERT_EQ(remote.value().choices[0].logprobs.size(), 12u);
  for (size_t t = 0; t < 12; ++t) {
    const GeneratedToken &a = remote.value().choices[0].logprobs[t],
                         &b = here.value().choices[0].logprobs[t];
    EXPECT_EQ(a.token, b.token);
    EXPECT_NEAR(a.logprob, b.logprob, 1e-6);
    ASSERT_EQ(a.top.size(), 3u);
    EXPECT_EQ(a.top[2].first, b.top[2].first);
  }
  auto bad = post("/v1/chat/completions",
                  R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3})");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("needs 'logprobs'"), std::string::npos) << bad->body;
}

// Issue 17: client mistakes that were 500s (or wrapped numbers) are 400s whose message shows the
// value sent.
TEST_F(Serve, OutOfRangeNumbersAndInvalidUtf8Are400) {
  auto message_of = [](const httplib::Result& res) {
    return json::parse(res->body)["error"]["message"].get<std::string>();
  };
  auto huge = post("/v1/chat/completions",
                   R"({"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999})");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 400) << huge->body;
  EXPECT_NE(message_of(huge).find("out of range"), std::string::npos) << huge->body;
  auto wrapped = post(
      "/v1/chat/completions",
      R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9223372036854775808})");
  EXPECT_EQ(wrapped->status, 400);
  EXPECT_NE(message_of(wrapped).find("9223372036854775808"), std::string::npos) << wrapped->body;
  auto big =
      post("/v1/chat/completions",
           R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000000000000})");
  EXPECT_EQ(big->status, 400);
  EXPECT_NE(message_of(big).find("1000000000000"), std::string::npos) << big->body;
  auto bad_utf8 = post("/v1/chat/completions",
                       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi \xff\xfe\"}]}");
  EXPECT_EQ(bad_utf8->status, 400) << bad_utf8->body;
  EXPECT_NE(message_of(bad_utf8).find("not valid UTF-8 (byte"), std::string::npos)
      << bad_utf8->body;
}

TEST_F(Serve, UnknownModelIs404) {
  auto res = post("/v1/completions", R"({"model": "gpt-17", "prompt": "x"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  json body = json::parse(res->body);
  EXPECT_EQ(body["error"]["code"], "model_not_found");
  EXPECT_EQ(body["error"]["param"], "model");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("gpt-17"), std::string::npos);
  // Through the client it is a not_found error, not retried.
  HttpBackendOptions o;
  o.base_urls = {server_->base_url()};
  o.model = "gpt-17";
  o.api_key = kKey;
  HttpBackend http(o);
  auto r = http.complete("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::not_found);
  EXPECT_EQ(r.error().attempts, 1);
}

TEST_F(Serve, OversizedPromptIs400) {
  std::string prompt;
  for (int i = 0; i < 400; ++i) prompt += "Once upon a time ";  // far more than 512 tokens
  auto r = client()->complete(prompt, greedy(8));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_request);
  EXPECT_EQ(r.error().http_status, 400);
  EXPECT_NE(r.error().message.find("maximum context length is 512 tokens"), std::string::npos)
      << r.error().message;
  // Streaming requests get the same status, not a broken stream.
  auto res = post("/v1/completions", json{{"prompt", prompt}, {"stream", true}}.dump());
  EXPECT_EQ(res->status, 400);
}

TEST_F(Serve, ApiKeyIsRequired) {
  auto missing = post("/v1/completions", R"({"prompt": "x"})", "");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(json::parse(missing->body)["error"]["code"], "missing_api_key");
  auto wrong = post("/v1/completions", R"({"prompt": "x"})", "sk-wrong");
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(json::parse(wrong->body)["error"]["code"], "invalid_api_key");
  HttpBackendOptions o;
  o.base_urls = {server_->base_url()};
  o.api_key = "sk-wrong";
  HttpBackend http(o);
  auto r = http.complete("x");
  EXPECT_EQ(r.error().kind, ErrorKind::authentication);
  // Health needs no key; the model list does.
  httplib::Client raw("127.0.0.1", server_->port());
  EXPECT_EQ(raw.Get("/health")->status, 200);
  EXPECT_EQ(raw.Get("/v1/models")->status, 401);
  auto models = raw.Get("/v1/models", {{"Authorization", std::string("Bearer ") + kKey}});
  ASSERT_EQ(models->status, 200);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "stories260K");
  EXPECT_EQ(raw.Get("/v1/nothing")->status, 404);
}

TEST_F(Serve, TwoHundredConcurrentChatRequestsAllCompleteOnceWithBoundedMemory) {
  seqit::testing::allow_seconds(150);  // ~17 s on 2 cores
  constexpr int kRequests = 200;
  auto http = client(kRequests);
  auto round = [&](int salt) {
    std::vector<std::future<Result<Response>>> remote, here;
    for (int i = 0; i < kRequests; ++i) {
      std::vector<Message> m = {
          {"user", "Story " + std::to_string(salt * 1000 + i) + ": Once upon a time"}};
      remote.push_back(http->chat_async(m, greedy(12)));
      here.push_back(local_->chat_async(m, greedy(12)));
    }
    std::set<std::string> texts;
    for (int i = 0; i < kRequests; ++i) {
      auto r = remote[i].get();
      auto l = here[i].get();
      ASSERT_TRUE(r.ok()) << i << ": " << r.error().describe();
      // Each answer is the one for its own prompt: equal to the local backend's for that prompt.
      EXPECT_EQ(r.value().text(), l.value().text()) << i;
      EXPECT_EQ(r.value().usage.prompt_tokens, l.value().usage.prompt_tokens) << i;
    }
  };
  const long before = server_->rss_kib();
  round(1);
  const long after_first = server_->rss_kib();
  round(2);
  const long after_second = server_->rss_kib();
  ASSERT_GT(before, 0);
  // Bounded: the second identical round needs no more memory than the first left (small slack for
  // allocator fragmentation), and the whole stays far below what 200 leaked KV caches would take.
  EXPECT_LT(after_second, after_first + 16 * 1024)
      << "KiB: before " << before << ", " << after_first << ", " << after_second;
  EXPECT_LT(after_second, before + 200 * 1024);
  std::printf("[ rss KiB ] before %ld, after 200 requests %ld, after 400 %ld\n", before,
              after_first, after_second);
}

TEST_F(Serve, NewRequestsJoinTheRunningBatch) {
  // A long request is generating; a short one submitted meanwhile finishes first: it joined the
  // batch between decoding steps instead of waiting for the long one to end.
  std::promise<void> long_started;
  std::atomic<bool> signalled{false};
  Request long_request;
  long_request.kind = RequestKind::completion;
  long_request.prompt = "Once upon a time";
  long_request.params.temperature = 0.9;
  long_request.params.seed = 3;
  long_request.params.max_tokens = 150;
  long_request.on_delta = [&](int, std::string_view, const std::vector<GeneratedToken>&) {
    if (!signalled.exchange(true)) long_started.set_value();
  };
  std::atomic<int> order{0};
  int long_done = 0, short_done = 0;
  std::promise<void> both;
  std::atomic<int> remaining{2};
  local_->submit(long_request, [&](Result<Response> r) {
    EXPECT_TRUE(r.ok());
    long_done = ++order;
    if (--remaining == 0) both.set_value();
  });
  long_started.get_future().wait();
  const int64_t steps_before = local_->stats().steps;
  local_->submit(Request{.kind = RequestKind::completion, .prompt = "The dog", .params = greedy(3)},
                 [&](Result<Response> r) {
                   EXPECT_TRUE(r.ok());
                   short_done = ++order;
                   if (--remaining == 0) both.set_value();
                 });
  both.get_future().wait();
  EXPECT_EQ(short_done, 1);
  EXPECT_EQ(long_done, 2);
  EXPECT_GE(local_->stats().max_running, 2);
  EXPECT_GT(local_->stats().steps, steps_before);
}

TEST_F(Serve, QueryCommandRunsTheLocalEngineToo) {
  seqit::testing::TempDir dir;
  seqit::testing::spit(dir / "in.jsonl", R"({"id": 1, "prompt": "The dog"}
{"id": 2, "messages": [{"role": "user", "content": "Once upon a time"}]}
{"id": 3, "prompt": "The dog", "continuations": [" ran", " sat"]}
{"id": 4, "messages": [{"role": "user", "content": "Yes?"}], "guided_choice": ["yes", "no"], "logprobs": true, "top_logprobs": 2}
{"id": 5, "messages": [{"role": "user", "content": "Rate"}], "max_tokens": 40, "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"], "additionalProperties": false}}}}
)");
  const std::string cmd = seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) +
                          " query " + seqit::testing::shell_quote((dir / "in.jsonl").string()) +
                          " -o " + seqit::testing::shell_quote((dir / "out.jsonl").string()) +
                          " --local " + seqit::testing::shell_quote(model_path()) +
                          " --tokenizer " + seqit::testing::shell_quote(tokenizer_path()) +
                          " --temperature 0 --max-tokens 20";
  std::string out;
  ASSERT_EQ(seqit::testing::run_command(cmd, &out), 0) << out;
  std::map<int, json> rows;
  std::istringstream in(seqit::testing::slurp(dir / "out.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows[json::parse(line)["id"].get<int>()] = json::parse(line);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[1]["text"], local_->complete("The dog", greedy(20)).value().text());
  EXPECT_EQ(rows[2]["text"],
            local_->chat({{"user", "Once upon a time"}}, greedy(20)).value().text());
  EXPECT_EQ(rows[1]["model"], "stories260K");
  auto scores = local_->score("The dog", {" ran", " sat"}).value();
  EXPECT_NEAR(rows[3]["logprobs"][0].get<double>(), scores.logprobs[0], 1e-4);
  EXPECT_NEAR(rows[3]["logprobs"][1].get<double>(), scores.logprobs[1], 1e-4);
  // Request files carry structured outputs and logprobs as OpenAI bodies do.
  EXPECT_TRUE(rows[4]["text"] == "yes" || rows[4]["text"] == "no") << rows[4];
  ASSERT_TRUE(rows[4]["logprobs"]["content"].is_array()) << rows[4];
  EXPECT_EQ(rows[4]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(json::parse(rows[5]["text"].get<std::string>())["score"].is_number_integer())
      << rows[5];
}

// SIGTERM the moment the server has started (before any request): it exits 0 at once, every time.
TEST(ServeShutdown, SigtermRightAfterStartExitsPromptly) {
  for (int i = 0; i < 10; ++i) {
    ServeProcess server({"--model", model_path(), "--tokenizer", tokenizer_path()});
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(server.stop(SIGTERM), 0) << "round " << i;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0)
        << "round " << i;
  }
}

TEST(ServeShutdown, SigtermFinishesRequestsInFlight) {
  // One sequence at a time, so the requests are still queued or generating when the signal comes.
  ServeProcess server(
      {"--model", model_path(), "--tokenizer", tokenizer_path(), "--max-batch", "1"});
  HttpBackendOptions o;
  o.base_urls = {server.base_url()};
  o.api_key_env = "";
  o.max_in_flight = 16;
  o.retry.max_retries = 0;
  HttpBackend http(o);
  SamplingParams p;
  p.temperature = 0.8;
  p.seed = 5;
  p.max_tokens = 150;
  std::mutex mutex;
  std::vector<std::chrono::steady_clock::time_point> finished_at;
  std::vector<Result<Response>> results;
  std::atomic<int> pending{6};
  for (int i = 0; i < 6; ++i) {
    Request r;
    r.prompt = "Once upon a time " + std::to_string(i);
    r.params = p;
    http.submit(r, [&](Result<Response> result) {
      std::lock_guard lock(mutex);
      finished_at.push_back(std::chrono::steady_clock::now());
      results.push_back(std::move(result));
      --pending;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto signalled = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  while (pending.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  int after_signal = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].error().describe();
    EXPECT_GT(results[i].value().usage.completion_tokens, 0);
    after_signal += finished_at[i] > signalled ? 1 : 0;
  }
  EXPECT_GE(after_signal, 2) << "the requests should have been in flight when SIGTERM came";
  EXPECT_EQ(server.stop(0), 0) << "exit status after SIGTERM";
  auto after = http.complete("x", greedy(2));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().kind, ErrorKind::network);
}

}  // namespace
}  // namespace seqit::llm

namespace seqit::llm {
namespace {
// With a chat template the local backend formats chat requests exactly as `seqit generate --chat`.
TEST(LocalChatTemplate, ChatEqualsGenerateWithTheSameTemplate) {
  using seqit::testing::run_command;
  using seqit::testing::seqit_binary;
  using seqit::testing::shell_quote;
  std::string out;
  ASSERT_EQ(
      run_command(shell_quote(seqit_binary().string()) + " generate --model " +
                      shell_quote(model_path()) + " --tokenizer " + shell_quote(tokenizer_path()) +
                      " --chat --chat-template chatml --prompt 'Hello there' --max-tokens 20",
                  &out, false),
      0)
      << out;
  const nlohmann::json row = nlohmann::json::parse(out);
  LocalBackendOptions options;
  options.chat_template = "chatml";
  auto local = LocalBackend::open(model_path(), tokenizer_path(), options);
  auto r = local->chat({{"user", "Hello there"}}, greedy(20));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r.value().text(), row["output"].get<std::string>());
  EXPECT_EQ(r.value().usage.prompt_tokens, row["prompt_tokens"].get<int64_t>());
  EXPECT_NE(local->describe().find("chatml"), std::string::npos) << local->describe();
}
}  // namespace
}  // namespace seqit::llm
