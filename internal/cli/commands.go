package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/adapterd/adapterd/internal/spec"
)

// command is one row of the command table: a word a user types after
// "adapterd", what the usage says about it, its flags and what it runs.
// The usage (`adapterd help`, a command's -h), the dispatch and the docs
// test (docs/docs_test.go, through Commands) all read the table, so a
// command or flag cannot be added without them seeing it.
type command struct {
	name     string
	aliases  []string // other words that run it
	synopsis string   // what follows the name in the usage
	summary  string   // one line
	detail   string   // more, for this command's -h only
	// config is --config for the commands that read a config: its default
	// and what the command reads it for. nil: the command has no --config.
	config *configUse
	// parse reads args into fs and returns the arguments left; nil is Go's
	// flag parsing: flags first, then arguments.
	parse func(fs *flag.FlagSet, args []string) ([]string, error)
	// bind declares the flags on fs (--config from config, then the
	// command's own) and returns the command's run, bound to their values.
	bind func(fs *flag.FlagSet, config *configUse) runFunc
}

type runFunc func(ctx context.Context, args []string, env Env) error

// configUse is --config as one command declares it: declared in one place
// (bind), with the default and the purpose that command's -h shows.
type configUse struct {
	def     string // "" for the one-shot commands: see loadConfig
	purpose string
}

// configFlag holds --config; the flags of every command with a config
// embed it, and bind declares it.
type configFlag struct{ config string }

func (c *configFlag) configTarget() *string { return &c.config }

// withFlags makes a command's bind from the function that declares its own
// flags on a value of F and the run that reads them. flags may be nil.
func withFlags[F any](flags func(fs *flag.FlagSet, fl *F), run func(ctx context.Context, fl *F, args []string, env Env) error) func(*flag.FlagSet, *configUse) runFunc {
	return func(fs *flag.FlagSet, config *configUse) runFunc {
		fl := new(F)
		if config != nil {
			c, ok := any(fl).(interface{ configTarget() *string })
			if !ok {
				panic(fmt.Sprintf("cli: %T takes --config but does not embed configFlag", fl))
			}
			help := "config file"
			if config.purpose != "" {
				help += " (" + config.purpose + ")"
			}
			fs.StringVar(c.configTarget(), "config", config.def, help)
		}
		if flags != nil {
			flags(fs, fl)
		}
		return func(ctx context.Context, args []string, env Env) error { return run(ctx, fl, args, env) }
	}
}

// The flags of each command, as bind declares them.
type (
	runFlags struct {
		configFlag
		once bool
	}
	checkFlags     struct{ configFlag }
	modelfileFlags struct{ configFlag }
	createFlags    struct {
		configFlag
		sidecar               sidecarFlags
		adapter, outModelfile string
		dryRun, json          bool
	}
	fetchFlags struct {
		revision, subfolder, file, drop, key string
		idle, timeout                        time.Duration
		maxSize                              spec.ByteSize
	}
	publishFlags struct {
		configFlag
		endpoint, region, readyFile string
		pathStyle                   bool
	}
	statusFlags struct {
		configFlag
		json bool
	}
	confirmFlags  struct{ configFlag }
	rollbackFlags struct {
		configFlag
		to string
	}
	unpinFlags   struct{ configFlag }
	serviceFlags struct {
		configFlag
		user string
	}
	noFlags struct{}
)

// commands is the table, in the order the usage lists it. It is filled by
// init because fetch-adapter runs create through it.
var commands []command

func init() {
	commands = []command{
		{
			name: "run", synopsis: "[--config F] [--once]", summary: "run the daemon in the foreground",
			config: &configUse{}, // "": defaultConfigPath, and -h has always said only "config file"
			bind: withFlags(func(fs *flag.FlagSet, fl *runFlags) {
				fs.BoolVar(&fl.once, "once", false, "one full reconcile, then exit (status 1 if any adapter is not ready)")
			}, cmdRun),
		},
		{
			name: "check", synopsis: "[--config F] DIR...", summary: "validate adapter folders; create nothing",
			config: &configUse{purpose: "for defaults and the Ollama host"},
			bind:   withFlags(nil, cmdCheck),
		},
		{
			name: "modelfile", synopsis: "[--config F] DIR", summary: "print the equivalent Ollama Modelfile",
			config: &configUse{purpose: "for defaults"},
			bind:   withFlags(nil, cmdModelfile),
		},
		{
			name: "create", aliases: []string{"create-from-base"},
			synopsis: "--adapter DIR [--base B] [--name N] [sidecar flags] [--dry-run] [--json] [--out-modelfile F]",
			summary:  "one-shot create, resolved as the daemon does",
			config:   &configUse{purpose: "defaults, strategy and the Ollama host"},
			bind: withFlags(func(fs *flag.FlagSet, fl *createFlags) {
				fl.sidecar.register(fs)
				fs.StringVar(&fl.adapter, "adapter", "", "adapter folder (PEFT files or one GGUF LoRA, and maybe adapter.yaml)")
				fs.StringVar(&fl.outModelfile, "out-modelfile", "", "after the model exists, write a Modelfile that rebuilds it here (and the file it needs beside it)")
				fs.BoolVar(&fl.dryRun, "dry-run", false, "print what would be done and exit; nothing is created")
				fs.BoolVar(&fl.json, "json", false, "print one JSON object for scripts")
			}, cmdCreate),
		},
		{
			name: "fetch-adapter", synopsis: "REPO [--revision R] [--subfolder S] [--file F] [--drop DIR [--key K]] [create flags]",
			summary: "download an adapter from the Hugging Face Hub; create it, or publish it to a drop dir",
			detail: `Without --drop, creates the model as "adapterd create" does: every other
flag (--base, --name, --system, --out-modelfile, ...) goes to create.`,
			parse: splitFetchArgs,
			bind: withFlags(func(fs *flag.FlagSet, fl *fetchFlags) {
				fs.StringVar(&fl.revision, "revision", "main", "branch, tag or commit of the repo")
				fs.StringVar(&fl.subfolder, "subfolder", "", "folder inside the repo that holds the adapter")
				fs.StringVar(&fl.file, "file", "", "which *.gguf LoRA, when the folder has several")
				fs.StringVar(&fl.drop, "drop", "", "publish the folder into this drop directory instead of creating the model")
				fs.StringVar(&fl.key, "key", "", "with --drop: the folder name in the drop directory (default: from the repo name)")
				fs.DurationVar(&fl.idle, "idle-timeout", spec.DefaultIdleTimeout, "cut a transfer that sends nothing for this long")
				fs.DurationVar(&fl.timeout, "timeout", spec.DefaultPollTimeout, "cut the whole download after this long")
				fl.maxSize = spec.DefaultMaxFileSize
				fs.Var(&fl.maxSize, "max-file-size", "refuse a file larger than this (such as 4GiB) before downloading it")
			}, cmdFetchAdapter),
		},
		{
			name: "publish", synopsis: "DIR s3://bucket/prefix/KEY [--config F] [--endpoint E] [--region R] [--path-style] [--ready-file R]",
			summary: "check a folder, then upload it for a fleet: files first, marker last",
			config:  &configUse{purpose: "defaults for the check; the s3 source of the same bucket for endpoint, region and path style"},
			parse:   parsePositionalFirst,
			bind: withFlags(func(fs *flag.FlagSet, fl *publishFlags) {
				fs.StringVar(&fl.endpoint, "endpoint", "", "S3 endpoint, e.g. http://127.0.0.1:8333 (default: the config's source for the bucket, else AWS)")
				fs.StringVar(&fl.region, "region", "", "S3 region")
				fs.BoolVar(&fl.pathStyle, "path-style", false, "path-style addressing (MinIO, SeaweedFS, Ceph)")
				fs.StringVar(&fl.readyFile, "ready-file", "", "the marker written last (default: the config's ready_file, else READY)")
			}, cmdPublish),
		},
		{
			name: "status", synopsis: "[--config F] [--json] [KEY]", summary: "table of adapters from the running daemon; with KEY, its kept versions too",
			config: &configUse{def: defaultConfigPath, purpose: "for api.socket and listen"},
			parse:  parseInterleaved,
			bind: withFlags(func(fs *flag.FlagSet, fl *statusFlags) {
				fs.BoolVar(&fl.json, "json", false, "print JSON instead of a table")
			}, cmdStatus),
		},
		{
			name: "confirm-removals", synopsis: "[--config F]", summary: "let removals the daemon holds (lost mount guard) go ahead",
			config: &configUse{def: defaultConfigPath, purpose: "for api.socket"},
			bind:   withFlags(nil, cmdConfirmRemovals),
		},
		{
			name: "rollback", synopsis: "KEY [--to VERSION] [--config F]", summary: "put the previous (or named) version back under KEY's name, and pin it",
			config: &configUse{def: defaultConfigPath, purpose: "for api.socket"},
			parse:  parseInterleaved,
			bind: withFlags(func(fs *flag.FlagSet, fl *rollbackFlags) {
				fs.StringVar(&fl.to, "to", "", "the version to roll back to (its model name, tag, or input digest prefix); default: the previous one")
			}, cmdRollback),
		},
		{
			name: "unpin", synopsis: "KEY [--config F]", summary: "let KEY's folder make its model again after a rollback",
			config: &configUse{def: defaultConfigPath, purpose: "for api.socket"},
			parse:  parseInterleaved,
			bind:   withFlags(nil, cmdUnpin),
		},
	}
	for _, s := range []struct{ action, synopsis, summary string }{
		{"install", "[--config F] [--user U]", "install adapterd as a system service"},
		{"uninstall", "[--config F]", "remove the system service"},
		{"start", "[--config F]", "start the system service"},
		{"stop", "[--config F]", "stop the system service"},
		{"restart", "[--config F]", "restart the system service"},
	} {
		commands = append(commands, command{
			name: s.action, synopsis: s.synopsis, summary: s.summary,
			config: &configUse{def: defaultConfigPath, purpose: "the service runs with"},
			bind: withFlags(func(fs *flag.FlagSet, fl *serviceFlags) {
				fs.StringVar(&fl.user, "user", "adapterd", "install: the user the service runs as (root only if you mean it)")
			}, func(ctx context.Context, fl *serviceFlags, args []string, env Env) error {
				return cmdService(ctx, s.action, fl, args, env)
			}),
		})
	}
	commands = append(commands,
		command{
			name: "version", aliases: []string{"--version", "-v"}, summary: "print the version",
			bind: withFlags(nil, cmdVersion),
		},
		command{
			name: "help", aliases: []string{"-h", "--help"}, summary: "print this usage",
			bind: withFlags(nil, func(context.Context, *noFlags, []string, Env) error { return flag.ErrHelp }),
		},
	)
}

// lookupCommand finds the command a word names.
func lookupCommand(word string) (command, bool) {
	for _, c := range commands {
		if c.name == word {
			return c, true
		}
		for _, a := range c.aliases {
			if a == word {
				return c, true
			}
		}
	}
	return command{}, false
}

func dispatch(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	c, ok := lookupCommand(args[0])
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return c.exec(ctx, args[0], args[1:], env)
}

// exec parses args as the command's flags and runs it. word is the name
// the user typed, which Go's flag errors name.
func (c command) exec(ctx context.Context, word string, args []string, env Env) error {
	fs := flag.NewFlagSet(word, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	run := c.bind(fs, c.config)
	fs.Usage = func() { c.writeHelp(fs) }
	parse := c.parse
	if parse == nil {
		parse = func(fs *flag.FlagSet, args []string) ([]string, error) {
			err := fs.Parse(args)
			return fs.Args(), err
		}
	}
	rest, err := parse(fs, args)
	if err != nil {
		return err
	}
	return run(ctx, rest, env)
}

// runCommand runs the named command as if typed; fetch-adapter runs
// create this way, so create's flags work after it unchanged.
func runCommand(ctx context.Context, name string, args []string, env Env) error {
	c, ok := lookupCommand(name)
	if !ok {
		panic("cli: no command " + name)
	}
	return c.exec(ctx, name, args, env)
}

// parsePositionalFirst takes the arguments before the first flag (as cp
// takes DIR and the URL), then Go's flags, then any arguments after them.
func parsePositionalFirst(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return append(pos, fs.Args()...), nil
}

// parseInterleaved takes flags before, between and after the arguments
// (status KEY --json, rollback --to V KEY).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
}

// writeHelp is a command's -h: its line of the usage, its detail, and its
// flags, on the flag set's output (standard error).
func (c command) writeHelp(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: adapterd %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.synopsis), c.summary)
	if c.detail != "" {
		fmt.Fprintf(w, "\n%s\n", c.detail)
	}
	if c.hasFlags(fs) {
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
}

func (c command) hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// usageColumn is where the summaries start in the usage.
const usageColumn = 33

// writeUsage writes `adapterd help`: every command of the table, its
// synopsis and its summary.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "usage: adapterd <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		left := "  " + strings.TrimSpace(c.name+" "+c.synopsis)
		summary := c.summary
		if len(c.aliases) > 0 {
			summary += " (also: " + strings.Join(c.aliases, ", ") + ")"
		}
		if len(left) < usageColumn-1 {
			fmt.Fprintf(w, "%-*s%s\n", usageColumn, left, summary)
			continue
		}
		fmt.Fprintf(w, "%s\n%*s%s\n", left, usageColumn, "", summary)
	}
}

// CommandInfo is one command of the table, for the docs test.
type CommandInfo struct {
	Name    string
	Aliases []string
	Flags   []string // without dashes, as declared
}

// Commands lists the command table: every name a user can type, and each
// command's flags.
func Commands() []CommandInfo {
	var out []CommandInfo
	for _, c := range commands {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.bind(fs, c.config)
		info := CommandInfo{Name: c.name, Aliases: c.aliases}
		fs.VisitAll(func(f *flag.Flag) { info.Flags = append(info.Flags, f.Name) })
		out = append(out, info)
	}
	return out
}
