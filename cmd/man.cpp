// __man: the manual page llamactl(1) as roff, written from the CLI11 app
// itself (the commands, their options and descriptions that --help shows),
// between a fixed preamble and the sections --help has no room for. One
// source: the page cannot drift from --help. Hidden from --help; the build
// runs it to make llamactl.1 (CMakeLists.txt), and a test checks that every
// command and option --help lists is in it (tests/scripts/man_page_test.sh).

#include <cstdio>
#include <string>
#include <string_view>

#include "commands.h"
#include "platform/platform.h"

namespace llamactl::cmd {

CLI::App* setup_man(CLI::App& app) {
  auto* sub = app.add_subcommand("__man", "Print the manual page llamactl(1) as roff");
  sub->group("");  // hidden
  return sub;
}

namespace {

// Text in roff: backslashes and hyphens escaped, and a line that would start
// with a control character ('.' or '\'') made plain text.
std::string roff(std::string_view text) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    line_start = c == '\n';
    if (c == '\\')
      out += "\\e";
    else if (c == '-')
      out += "\\-";
    else
      out += c;
  }
  return out;
}

bool visible(const CLI::App* a) {
  return !a->get_group().empty();
}

// "-v, --verbose TEXT" in bold and italics: the option's names as --help
// lists them, then its value's kind.
std::string option_tag(const CLI::Option* o) {
  std::string tag;
  for (const auto& s : o->get_snames()) tag += (tag.empty() ? "" : ", ") + std::string("\\fB\\-") + roff(s) + "\\fR";
  for (const auto& l : o->get_lnames()) tag += (tag.empty() ? "" : ", ") + std::string("\\fB\\-\\-") + roff(l) + "\\fR";
  if (o->get_positional() && tag.empty()) tag = "\\fI" + roff(o->get_name()) + "\\fR";
  if (!o->get_positional() && o->get_type_size() != 0 && !o->get_type_name().empty())
    tag += " \\fI" + roff(o->get_type_name()) + "\\fR";
  return tag;
}

// The arguments first, then the options, as --help lists them.
void options(std::string& out, const CLI::App& app) {
  for (const bool positional : {true, false}) {
    for (const CLI::Option* o : app.get_options([positional](const CLI::Option* opt) {
           return !opt->get_group().empty() && opt->get_positional() == positional;
         })) {
      out += ".TP\n" + option_tag(o) + "\n";
      std::string desc = o->get_description();
      if (o->get_required() && !o->get_positional()) desc += " (required)";
      out += roff(desc.empty() ? "(no description)" : desc) + "\n";
    }
  }
}

// "load model [options] [-- llama-server arguments]"
std::string usage(const CLI::App& sub) {
  std::string u = "\\fBllamactl " + roff(sub.get_name()) + "\\fR";
  for (const CLI::Option* o : sub.get_options([](const CLI::Option* opt) { return opt->get_positional(); }))
    u += o->get_required() ? " \\fI" + roff(o->get_name()) + "\\fR" : " [\\fI" + roff(o->get_name()) + "\\fR]";
  u += " [\\fIoptions\\fR]";
  return u;
}

constexpr const char* kExitStatus = R"(.TP
.B 0
success (also: \fBload\fR of a model that already runs there; CPU mode fallback)
.TP
.B 1
unexpected failure
.TP
.B 2
usage error (bad flag or argument; an unknown command or flag is named with the nearest real one)
.TP
.B 3
config error (file unreadable or invalid; the message names file, line and key; a TOML syntax error, file:line:column)
.TP
.B 4
GPU occupied by others, already ours, part of a multi\-GPU instance, lost, or absent
.TP
.B 5
model not found (not in the config, no such file, not a GGUF file; unload of nothing)
.TP
.B 6
llama\-server exited before it became healthy
.TP
.B 7
timeout (health wait; an instance that would not stop)
.TP
.B 8
state dir, state file or lock error; \fBserve\fR: another serve already uses this state dir
.TP
.B 9
command not built in this build
.TP
.B 10
\fBgpus \-\-strict\fR and no usable GPU reading
.TP
.B 11
the model does not fit the free GPU memory (see \fB\-\-force\fR)
.TP
.B 12
the requested \fB\-\-port\fR (or \fBserve \-\-listen\fR address) is in use
.TP
.B 13
\fBstatus \-\-check\fR: an instance is dead or unhealthy
.TP
.B 130
interrupted (Ctrl\-C)
)";

constexpr const char* kEnvironment = R"(.TP
.B LLAMACTL_CONFIG
config file when \fB\-\-config\fR is not given
.TP
.B LLAMACTL_STATE_DIR
state dir when \fB\-\-state\-dir\fR is not given
.TP
.B LLAMACTL_NVIDIA_SMI
program to run instead of \fBnvidia\-smi\fR (same arguments; a mock for tests and CI)
.TP
.B LLAMACTL_GPU_FIXTURE
a saved nvidia\-smi output (plain table or CSV) to read instead of running anything; the package ships
/usr/share/llamactl/fixtures/two\-idle\-gpus.txt (two idle GPUs, to try llamactl without one) and the captures
under /usr/share/llamactl/fixtures/nvidia\-smi
.TP
.BR NO_COLOR ", " CLICOLOR_FORCE
colour off / on
.TP
.B OLLAMA_HOST
\fBserve\fR's listen address when \fB\-\-listen\fR is not given
.TP
.B OLLAMA_KEEP_ALIVE
\fBserve\fR's keep\-alive for the instances it loads
.TP
.B OLLAMA_ORIGINS
extra CORS origins for \fBserve\fR (comma list, * wildcards)
.TP
.B LLAMACTL_API_KEY
\fBserve\fR's API key when \fB\-\-api\-key\fR is not given
.TP
.B LLAMACTL_ALLOWED_HOSTS
\fBserve\fR's extra Host names (comma\-separated), as \fB\-\-allow\-host\fR
.TP
.BR CUDA_VISIBLE_DEVICES ", " NVIDIA_VISIBLE_DEVICES
the GPUs we were given, when neither \fB\-\-gpus\fR nor the config's \fBgpus\fR is set
)";

}  // namespace

std::string man_page(const CLI::App& app) {
  std::string out;
  out += ".TH LLAMACTL 1 \"\" \"llamactl " LLAMACTL_VERSION "\" \"User Commands\"\n";
  out += ".nh\n.ad l\n";  // no hyphenation, ragged right: paths and option names stay whole
  out += ".SH NAME\nllamactl \\- " +
         roff("puts llama-server instances on the right NVIDIA GPUs, tracks them, and frees GPUs") + "\n";
  out +=
      ".SH SYNOPSIS\n.B llamactl\n[\\fIglobal options\\fR] \\fIcommand\\fR [\\fIoptions\\fR] "
      "[\\fB\\-\\-\\fR \\fIllama\\-server arguments\\fR]\n";
  out += ".SH DESCRIPTION\n" + roff(app.get_description()) + "\n";
  out +=
      ".PP\nIt reads the GPUs with \\fBnvidia\\-smi\\fR(1), places each llama\\-server where it fits, "
      "records it in its state dir, and answers OpenAI and Ollama clients with \\fBserve\\fR. Without NVIDIA "
      "GPUs it runs in CPU mode.\n";
  out += ".SH GLOBAL OPTIONS\nThese work before or after the command.\n";
  options(out, app);
  out += ".SH COMMANDS\n";
  for (const CLI::App* sub : app.get_subcommands(visible)) {
    out += ".SS \"" + roff(sub->get_name()) + "\"\n" + usage(*sub) + "\n.PP\n" + roff(sub->get_description()) + "\n";
    options(out, *sub);
    // A command's own footer; the exit codes every command inherits are under EXIT STATUS.
    if (!sub->get_footer().empty() && sub->get_footer() != app.get_footer())
      out += ".PP\n" + roff(sub->get_footer()) + "\n";
  }
  out += ".SH EXIT STATUS\n";
  out += kExitStatus;
  out += ".SH FILES\n.TP\n.I config.toml\nThe config, found at " + roff(platform::config_path_help()) +
         ". No file is fine: defaults apply and models are given by path. An example: "
         "/usr/share/doc/llamactl/examples/config.toml.\n";
  out += ".TP\n.I state dir\n" + roff(platform::state_dir_help()) +
         ": the instances llamactl started, their logs and the lock.\n";
  out +=
      ".TP\n.I llamactl\\-serve.service\nA systemd user unit that runs \\fBserve\\fR "
      "(\\fBsystemctl \\-\\-user enable \\-\\-now llamactl\\-serve\\fR).\n";
  out += ".SH ENVIRONMENT\n";
  out += kEnvironment;
  out +=
      ".SH SEE ALSO\n\\fBnvidia\\-smi\\fR(1), \\fBllama\\-server\\fR (llama.cpp); the README, "
      "/usr/share/doc/llamactl, and https://github.com/ggml\\-org/llama.cpp for llama\\-server.\n";
  return out;
}

int run_man(const CLI::App& app) {
  const std::string page = man_page(app);
  std::fwrite(page.data(), 1, page.size(), stdout);
  return std::fflush(stdout) == 0 ? code(Exit::ok) : code(Exit::failure);
}

}  // namespace llamactl::cmd
