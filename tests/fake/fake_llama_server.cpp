// A fake llama-server for end-to-end tests. It accepts llama-server's flags
// and imitates what was observed on real runs (shared/reference/
// llama-server-observed.md): the port is bound before the model "loads",
// every path answers 503 while loading, /health then answers 200; a bad
// model file or a taken port exits 1; SIGTERM during loading kills it,
// SIGTERM when ready exits 0.
//
// Behaviour switches (environment, one behaviour each):
//   FAKE_LOAD_DELAY_MS   loading time (default 100)
//   FAKE_FAIL            refuse (exit 1 at once, as on a taken port) |
//                        crash (exit 1 halfway through loading) | never-healthy
//   FAKE_IGNORE_SIGTERM  1: ignore SIGTERM (tests the SIGKILL escalation)
//   FAKE_GPU_DIR         where to register this process for the mock nvidia-smi
//   FAKE_SERVER_MEM_MIB  GPU memory to report per visible GPU (default 700)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_ready{false};
std::atomic<bool> g_stop{false};
std::string g_alias = "model";
std::string g_reg_file;

void on_term(int) {
  g_stop = true;
}

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v ? v : def;
}

void send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

void respond(int fd, int status, const std::string& type, const std::string& body) {
  const char* reason = status == 200   ? "OK"
                       : status == 404 ? "Not Found"
                       : status == 503 ? "Service Unavailable"
                                       : "Error";
  send_all(fd, "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
                   "\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\nServer: llama.cpp\r\nConnection: close\r\n\r\n" + body);
}

void stream_sse(int fd, bool chat) {
  send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nServer: llama.cpp\r\nConnection: close\r\n\r\n");
  const char* words[] = {"Hello", " from", " fake"};
  for (const char* w : words) {
    std::string chunk = chat ? std::string(R"({"object":"chat.completion.chunk","model":")") + g_alias +
                                   R"(","choices":[{"index":0,"delta":{"content":")" + w +
                                   R"("},"finish_reason":null}]})"
                             : std::string(R"({"content":")") + w + R"(","stop":false})";
    send_all(fd, "data: " + chunk + "\n\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (chat) {
    send_all(
        fd,
        std::string("data: ") + R"({"object":"chat.completion.chunk","model":")" + g_alias +
            R"(","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"timings":{"prompt_n":3,"prompt_ms":1.5,"predicted_n":3,"predicted_ms":4.5}})" +
            "\n\n");
    send_all(fd, "data: [DONE]\n\n");
  } else {
    send_all(
        fd,
        std::string("data: ") +
            R"({"content":"","stop":true,"timings":{"prompt_n":3,"prompt_ms":1.5,"predicted_n":3,"predicted_ms":4.5}})" +
            "\n\n");
  }
}

void handle(int fd) {
  std::string req;
  char buf[8192];
  // Read headers, then the body by Content-Length.
  size_t header_end = std::string::npos;
  while (header_end == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      ::close(fd);
      return;
    }
    req.append(buf, static_cast<size_t>(n));
    header_end = req.find("\r\n\r\n");
  }
  size_t content_length = 0;
  if (const auto cl = req.find("Content-Length:"); cl != std::string::npos && cl < header_end)
    content_length = std::strtoul(req.c_str() + cl + 15, nullptr, 10);
  while (req.size() < header_end + 4 + content_length) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    req.append(buf, static_cast<size_t>(n));
  }
  const std::string body = req.substr(header_end + 4);
  const std::string method = req.substr(0, req.find(' '));
  std::string path = req.substr(method.size() + 1, req.find(' ', method.size() + 1) - method.size() - 1);
  path = path.substr(0, path.find('?'));
  const std::string json = "application/json; charset=utf-8";

  if (!g_ready) {
    respond(fd, 503, json, R"({"error":{"code":503,"message":"Loading model","type":"unavailable_error"}})");
  } else if (path == "/health" || path == "/v1/health") {
    respond(fd, 200, json, R"({"status":"ok"})");
  } else if (path == "/v1/models" || path == "/models") {
    respond(fd, 200, json,
            R"({"models":[{"name":")" + g_alias + R"(","model":")" + g_alias +
                R"("}],"object":"list","data":[{"id":")" + g_alias + R"(","object":"model","owned_by":"llamacpp"}]})");
  } else if (path == "/v1/chat/completions" && method == "POST") {
    if (body.find("\"stream\":true") != std::string::npos || body.find("\"stream\": true") != std::string::npos)
      stream_sse(fd, true);
    else
      respond(
          fd, 200, json,
          R"({"object":"chat.completion","model":")" + g_alias +
              R"(","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from fake"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6},"timings":{"prompt_n":3,"prompt_ms":1.5,"predicted_n":3,"predicted_ms":4.5}})");
  } else if (path == "/completion" && method == "POST") {
    if (body.find("\"stream\":true") != std::string::npos || body.find("\"stream\": true") != std::string::npos)
      stream_sse(fd, false);
    else
      respond(fd, 200, json, R"({"content":"Hello from fake","stop":true})");
  } else {
    respond(fd, 404, json, R"({"error":{"code":404,"message":"File Not Found","type":"not_found_error"}})");
  }
  ::close(fd);
}

void register_gpu_use(const std::string& visible) {
  const std::string dir = env_or("FAKE_GPU_DIR", "");
  if (dir.empty()) return;
  // CUDA_VISIBLE_DEVICES empty: no GPU, no context at all (as measured).
  if (visible.empty()) return;
  g_reg_file = dir + "/procs/" + std::to_string(::getpid());
  std::ofstream out(g_reg_file + ".tmp");
  out << visible << " " << env_or("FAKE_SERVER_MEM_MIB", "700") << " llama-server\n";
  out.close();
  std::rename((g_reg_file + ".tmp").c_str(), g_reg_file.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-' && i + 1 < argc &&
        (argv[i + 1][0] != '-' || std::isdigit(static_cast<unsigned char>(argv[i + 1][1])))) {
      opt[a] = argv[++i];
    } else {
      opt[a] = "";
    }
  }
  std::fprintf(stderr, "fake-llama-server: argv:");
  for (int i = 0; i < argc; ++i) std::fprintf(stderr, " %s", argv[i]);
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  std::fprintf(stderr, "\nfake-llama-server: CUDA_VISIBLE_DEVICES=%s CUDA_DEVICE_ORDER=%s\n", cvd ? cvd : "(unset)",
               env_or("CUDA_DEVICE_ORDER", "(unset)").c_str());

  const std::string host = opt.count("--host") ? opt["--host"] : "127.0.0.1";
  const int port = opt.count("--port") ? std::atoi(opt["--port"].c_str()) : 8080;
  if (opt.count("--alias"))
    g_alias = opt["--alias"];
  else if (opt.count("-a"))
    g_alias = opt["-a"];

  if (env_or("FAKE_FAIL", "") == "refuse") {
    std::fprintf(stderr, "couldn't bind HTTP server socket, hostname: %s, port: %d\nexiting due to HTTP server error\n",
                 host.c_str(), port);
    return 1;
  }
  // Port first, as the real server does.
  const int srv = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(srv, 64) != 0) {
    std::fprintf(stderr, "couldn't bind HTTP server socket, hostname: %s, port: %d\nexiting due to HTTP server error\n",
                 host.c_str(), port);
    return 1;
  }
  std::thread([srv] {
    for (;;) {
      const int fd = ::accept(srv, nullptr, nullptr);
      if (fd < 0) continue;
      std::thread(handle, fd).detach();
    }
  }).detach();

  const std::string model = opt.count("-m") ? opt["-m"] : opt.count("--model") ? opt["--model"] : "";
  std::ifstream mf(model, std::ios::binary);
  char magic[4] = {};
  if (!mf || !mf.read(magic, 4) || std::memcmp(magic, "GGUF", 4) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::fprintf(stderr, "gguf_init_from_file: failed to open GGUF file '%s'\nexiting due to model loading error\n",
                 model.c_str());
    return 1;
  }
  register_gpu_use(cvd ? cvd : "all");

  const int delay = std::atoi(env_or("FAKE_LOAD_DELAY_MS", "100").c_str());
  const std::string fail = env_or("FAKE_FAIL", "");
  if (fail == "crash") {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay / 2));
    std::fprintf(stderr, "llama_model_load: error loading model: fake crash\n");
    if (!g_reg_file.empty()) std::remove(g_reg_file.c_str());
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  if (fail == "never-healthy") {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  g_ready = true;
  std::fprintf(stderr, "main: model loaded\nmain: server is listening on http://%s:%d\n", host.c_str(), port);
  // Handlers only after loading, like the real server.
  if (env_or("FAKE_IGNORE_SIGTERM", "") == "1") {
    ::signal(SIGTERM, SIG_IGN);
  } else {
    struct sigaction sa {};
    sa.sa_handler = on_term;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
  }
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::fprintf(stderr, "srv operator(): cleaning up before exit...\n");
  if (!g_reg_file.empty()) std::remove(g_reg_file.c_str());
  return 0;
}
