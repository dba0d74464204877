// What a command line CLI11 could not parse gets told: the unknown command
// or option by name with the nearest real one, in llamactl's words.

#include "commands.h"
#include "util/strings.h"

namespace llamactl::cmd {
namespace {

// "--gpuu=1" -> "--gpuu"
std::string option_name(const std::string& arg) {
  return arg.substr(0, arg.find('='));
}

// The subcommand's own long options first (the likelier meaning), then the
// global ones, which work after the subcommand too. Without their dashes.
std::vector<std::string> long_options(const CLI::App& app, const CLI::App* sub) {
  std::vector<std::string> names;
  for (const CLI::App* a : {sub, &app}) {
    if (!a) continue;
    for (const CLI::Option* o : a->get_options())
      for (const auto& n : o->get_lnames()) names.push_back(n);
  }
  return names;
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  // Hidden commands (the completions' __complete) are not suggested.
  for (const CLI::App* s : app.get_subcommands([](const CLI::App* c) { return !c->get_group().empty(); }))
    names.push_back(s->get_name());
  return names;
}

// `prefix` ("--") is left out of the comparison, so that it does not count
// towards the length that sets how many edits are close enough.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates,
                         const std::string& prefix = "") {
  const auto n = nearest(std::string_view(word).substr(prefix.size()), candidates);
  return n ? "; did you mean '" + prefix + *n + "'?" : "";
}

}  // namespace

std::string usage_error(const CLI::App& app, const CLI::ParseError& e) {
  const auto parsed = app.get_subcommands();
  const CLI::App* sub = parsed.empty() ? nullptr : parsed.front();
  const std::string help = sub ? "llamactl " + sub->get_name() + " --help" : "llamactl --help";
  std::string what, extra;
  // What CLI11 could not place, in command-line order. The first unknown
  // option is named; without a command, a bare word was meant as one.
  for (const auto& arg : app.remaining(true)) {
    if (starts_with(arg, "-") && arg.size() > 1) {
      const auto name = option_name(arg);
      what = "unknown option '" + name + "'" +
             (starts_with(name, "--") ? did_you_mean(name, long_options(app, sub), "--") : "");
      break;
    }
    if (!sub) {
      const auto mean = did_you_mean(arg, command_names(app));
      what = "unknown command '" + arg + "'" + (mean.empty() ? "; commands: " + join(command_names(app), ", ") : mean);
      break;
    }
    if (extra.empty()) extra = arg;
  }
  if (what.empty() && !extra.empty()) what = "unexpected argument '" + extra + "'";
  if (what.empty()) {
    if (!sub && dynamic_cast<const CLI::RequiredError*>(&e))
      what = "a command is required: " + join(command_names(app), ", ");
    else
      what = e.what();
  }
  return "llamactl: error: " + what + "\nRun '" + help + "' for usage.\n";
}

}  // namespace llamactl::cmd
