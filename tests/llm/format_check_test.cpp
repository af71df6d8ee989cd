// FormatCheckedBackend (llm/format_check.h) over the real HTTP backend and a test server on
// 127.0.0.1: a server that refuses the format field gets the request again without it and the
// reply is checked here (and the field is left out from then on); a server that ignores the field
// is asked again with new seeds until the reply matches or the attempts are spent (then the last
// reply comes back marked "failed"); plain requests pass untouched.
#include "llm/format_check.h"

#include <gtest/gtest.h>

#include <future>
#include <set>

#include "fault_server.h"
#include "llm/http_backend.h"

namespace seqit::llm {
namespace {
using seqit::testing::FaultServer;

HttpBackendOptions options_for(const std::string& url) {
  HttpBackendOptions o;
  o.base_urls = {url};
  o.model = "test-model";
  o.api_key_env = "";
  o.retry.initial_backoff_s = 0.01;
  o.retry.max_backoff_s = 0.05;
  o.request_timeout_s = 10;
  return o;
}

Result<Response> ask(Backend& backend, const std::string& text, ResponseFormat format,
                     std::optional<uint64_t> seed = 7) {
  Request r;
  r.kind = RequestKind::chat;
  r.messages = {{"user", text}};
  r.response_format = std::move(format);
  r.params.seed = seed;
  std::promise<Result<Response>> p;
  auto f = p.get_future();
  backend.submit(std::move(r), [&p](Result<Response> res) { p.set_value(std::move(res)); });
  return f.get();
}

ResponseFormat regex(std::string pattern) {
  ResponseFormat f;
  f.kind = ResponseFormat::Kind::regex;
  f.pattern = std::move(pattern);
  return f;
}

TEST(FormatChecked, ARefusedFieldIsDroppedAndTheReplyCheckedHere) {
  FaultServer::Plan plan;
  plan.refuse_field = "guided_regex";
  FaultServer server(plan);
  FormatCheckedBackend backend(std::make_shared<HttpBackend>(options_for(server.base_url())));
  auto r = ask(backend, "hello", regex("echo: [a-z]+"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r.value().text(), "echo: hello");
  EXPECT_EQ(r.value().format_check, "seqit");
  EXPECT_EQ(r.value().format_attempts, 1);
  ASSERT_EQ(server.bodies().size(), 2u);
  EXPECT_TRUE(server.bodies()[0].contains("guided_regex"));  // refused with 400
  EXPECT_FALSE(server.bodies()[1].contains("guided_regex"));
  EXPECT_EQ(backend.refused_formats(), std::vector<std::string>{"regex"});
  // From now on sent without the field at once.
  ASSERT_TRUE(ask(backend, "again", regex("echo: [a-z]+")).ok());
  ASSERT_EQ(server.bodies().size(), 3u);
  EXPECT_FALSE(server.bodies()[2].contains("guided_regex"));
  // JSON schema is another field: still sent (and accepted: the reply is checked all the same).
  ResponseFormat schema;
  schema.kind = ResponseFormat::Kind::json_object;
  auto j = ask(backend, "x", schema);
  ASSERT_TRUE(j.ok()) << j.error().describe();  // "echo: x" is no JSON object, three times over
  EXPECT_EQ(j.value().format_check, "failed");
  EXPECT_EQ(j.value().format_attempts, 3);
  EXPECT_EQ(j.value().text(), "echo: x");
  EXPECT_EQ(server.bodies().size(), 6u);
  EXPECT_TRUE(server.bodies()[5].contains("response_format"));
}

TEST(FormatChecked, AnIgnoredFormatIsAskedAgainWithNewSeedsThenMarkedFailed) {
  FaultServer server;  // accepts guided_regex and answers "echo: ..." regardless
  FormatCheckedBackend backend(std::make_shared<HttpBackend>(options_for(server.base_url())), 4);
  auto r = ask(backend, "hello", regex("yes|no"));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r.value().format_check, "failed");  // the last reply, marked
  EXPECT_EQ(r.value().format_attempts, 4);
  EXPECT_EQ(r.value().text(), "echo: hello");
  ASSERT_EQ(server.bodies().size(), 4u);
  std::set<uint64_t> seeds;
  for (const auto& b : server.bodies()) {
    EXPECT_EQ(b["guided_regex"], "yes|no");
    seeds.insert(b["seed"].get<uint64_t>());
  }
  EXPECT_EQ(seeds.size(), 4u);  // the first is the caller's, then new ones
  EXPECT_TRUE(seeds.count(7));
  // A reply inside the format on the first try: "server", one attempt.
  auto ok = ask(backend, "hello", regex("echo: hel+o"));
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  EXPECT_EQ(ok.value().format_check, "server");
  EXPECT_EQ(ok.value().format_attempts, 1);
}

TEST(FormatChecked, PlainRequestsAndBadFormatsAreNotTouched) {
  FaultServer server;
  FormatCheckedBackend backend(std::make_shared<HttpBackend>(options_for(server.base_url())));
  auto r = ask(backend, "hi", ResponseFormat{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().format_check, "");
  EXPECT_EQ(server.bodies().size(), 1u);
  auto bad = ask(backend, "hi", regex("(unclosed"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::invalid_request);
  EXPECT_EQ(server.bodies().size(), 1u);  // nothing sent
}

}  // namespace
}  // namespace seqit::llm
