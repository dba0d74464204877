// serve's route table (src/serve/routes.h): what match() picks for a method
// and a path, the Allow of a 405, and each API's error shape.

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>

#include "serve/routes.h"

using namespace llamactl::serve;

namespace {

std::string_view label_of(Method m, std::string_view path) {
  const RouteMatch r = match(routes(), m, path);
  return r.route ? r.route->label : std::string_view("(none)");
}

}  // namespace

TEST(Routes, EveryRouteIsFoundByItsOwnPathAndMethod) {
  for (const Route& r : routes()) {
    const std::string path = r.prefix ? std::string(r.path) + "x" : std::string(r.path);
    const Method m = (r.methods & kGet) ? Method::get : Method::post;
    const RouteMatch got = match(routes(), m, path);
    ASSERT_NE(got.route, nullptr) << path;
    EXPECT_EQ(got.route, &r) << path << ": an earlier row shadows it";
  }
}

TEST(Routes, PathsAreUniquePerMethod) {
  std::set<std::pair<std::string_view, bool>> seen;
  for (const Route& r : routes()) EXPECT_TRUE(seen.emplace(r.path, r.prefix).second) << r.path << " twice";
}

TEST(Routes, BodyRoutedAliasesShareOneMetricsLabel) {
  // The label set is fixed: an alias path counts under its route's label.
  EXPECT_EQ(label_of(Method::post, "/responses"), "/v1/responses");
  EXPECT_EQ(label_of(Method::post, "/v1/reranking"), "/v1/rerank");
  EXPECT_EQ(label_of(Method::post, "/rerank"), "/v1/rerank");
  EXPECT_EQ(label_of(Method::post, "/reranking"), "/v1/rerank");
  EXPECT_EQ(label_of(Method::post, "/v1/messages/count_tokens"), "/v1/messages/count_tokens");
  EXPECT_EQ(label_of(Method::get, "/v1/models/org%2Fmodel"), "/v1/models/{id}");
}

TEST(Routes, HeadIsAnsweredByGetRoutes) {
  EXPECT_EQ(label_of(Method::head, "/api/tags"), "/api/tags");
  EXPECT_EQ(label_of(Method::head, "/"), "/");
  const RouteMatch post_only = match(routes(), Method::head, "/api/chat");
  EXPECT_EQ(post_only.route, nullptr);
  EXPECT_TRUE(post_only.path_known);
}

TEST(Routes, WrongMethodOnAKnownPathIs405WithItsAllow) {
  const RouteMatch get_chat = match(routes(), Method::get, "/v1/chat/completions");
  EXPECT_EQ(get_chat.route, nullptr);
  EXPECT_TRUE(get_chat.path_known);
  EXPECT_EQ(get_chat.allow, "POST, OPTIONS");

  const RouteMatch post_tags = match(routes(), Method::post, "/api/tags");
  EXPECT_EQ(post_tags.route, nullptr);
  EXPECT_TRUE(post_tags.path_known);
  EXPECT_EQ(post_tags.allow, "GET, HEAD, OPTIONS");

  const RouteMatch del_models = match(routes(), Method::del, "/v1/models");
  EXPECT_TRUE(del_models.path_known);
}

TEST(Routes, UnknownPathsMatchNothing) {
  for (std::string_view p : {"/v1/chat", "/v1/chat/completions/", "/api", "/api/chatx", "/v1/models/", "/api/blobs", "",
                             "//v1/models", "/V1/MODELS"}) {
    const RouteMatch m = match(routes(), Method::post, p);
    EXPECT_EQ(m.route, nullptr) << p;
    EXPECT_FALSE(m.path_known) << p;
  }
}

TEST(Routes, AnyMethodRoutesTakeEveryMethod) {
  for (Method m : {Method::get, Method::post, Method::put, Method::del, Method::patch})
    EXPECT_EQ(label_of(m, "/api/delete"), "/api/delete");
  EXPECT_EQ(label_of(Method::post, "/api/blobs/sha256:abc"), "/api/blobs");
}

TEST(Routes, ErrorShapes) {
  EXPECT_EQ(match(routes(), Method::post, "/v1/messages").route->shape, ErrorShape::anthropic);
  EXPECT_EQ(match(routes(), Method::post, "/v1/messages/count_tokens").route->shape, ErrorShape::anthropic);
  EXPECT_EQ(match(routes(), Method::post, "/v1/responses").route->shape, ErrorShape::openai);
  EXPECT_EQ(match(routes(), Method::post, "/api/chat").route->shape, ErrorShape::ollama);
  // Paths with no route answer in the shape of the API they look like.
  EXPECT_EQ(shape_of_path("/v1/messages/batches"), ErrorShape::anthropic);
  EXPECT_EQ(shape_of_path("/v1/messagesx"), ErrorShape::openai);
  EXPECT_EQ(shape_of_path("/v1/files"), ErrorShape::openai);
  EXPECT_EQ(shape_of_path("/api/nothing"), ErrorShape::text);
}

TEST(Routes, ServeOwnPagesNeedNoKeyButModelsDo) {
  for (std::string_view p : {"/", "/health"}) EXPECT_FALSE(match(routes(), Method::get, p).route->auth) << p;
  for (std::string_view p : {"/metrics", "/v1/models", "/api/tags"})
    EXPECT_TRUE(match(routes(), Method::get, p).route->auth) << p;
  for (const Route& r : routes())
    if (r.methods & kPost) {
      EXPECT_TRUE(r.auth) << r.path;
    }
}

TEST(Routes, ErrorBodiesInEachShape) {
  EXPECT_EQ(error_body(ErrorShape::anthropic, 404, "no such model"),
            R"({"error":{"message":"no such model","type":"not_found_error"},"type":"error"})");
  EXPECT_EQ(error_body(ErrorShape::openai, 400, "bad"),
            R"({"error":{"code":400,"message":"bad","param":null,"type":"invalid_request_error"}})");
  EXPECT_EQ(error_body(ErrorShape::ollama, 500, "x"), R"({"error":"x"})");
  EXPECT_EQ(error_body(ErrorShape::text, 500, "plain"), "plain");
  // Invalid UTF-8 in a message still gives valid JSON.
  EXPECT_EQ(error_body(ErrorShape::ollama, 500, "\xff"), "{\"error\":\"\xEF\xBF\xBD\"}");
}
