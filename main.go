// Command krsync is a Kubernetes-native parallel rsync: a coordinator walks the source and
// streams fpart-style partitions over a work-lease API, workers rsync them.
//
// main only wires: signals become a context, kong parses the flags, the chosen command runs
// with its dependencies, and the returned error becomes an exit code in exitCode. Nothing else
// in the program exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/local"
	"github.com/krsync/krsync/rsyncexec"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// CLI is the whole command line. Every flag can also be set through KRSYNC_<FLAG>
// (kong.DefaultEnvars), which is how the manifests configure the pods.
type CLI struct {
	LogLevel  string `help:"Log level: trace, debug, info, warn, error." default:"info" enum:"trace,debug,info,warn,error"`
	LogFormat string `help:"Log format: auto (console on a terminal, JSON otherwise), console, json." default:"auto" enum:"auto,console,json"`

	Partition   PartitionCmd   `cmd:"" passthrough:"" help:"Walk a tree and print fpart-style partitions (fpart's options)."`
	Coordinator CoordinatorCmd `cmd:"" help:"Walk the source and serve partitions over the work-lease API."`
	Worker      WorkerCmd      `cmd:"" help:"Lease partitions from a coordinator and rsync them."`
	Local       LocalCmd       `cmd:"" help:"Copy a tree with a coordinator and N workers on this machine."`
	Manifests   ManifestsCmd   `cmd:"" help:"Print the Kubernetes manifests, customised."`
	Status      StatusCmd      `cmd:"" help:"Show the progress of a running sync."`
	Verify      VerifyCmd      `cmd:"" help:"Compare a copy with its source: exit 0 when equal, 1 when they differ."`
	Migrate     MigrateCmd     `cmd:"" help:"Move the workloads of a namespace from one volume claim to another, with minutes of downtime."`
	Version     VersionCmd     `cmd:"" help:"Print the version."`
}

// Streams are the standard streams a command writes to; tests pass buffers.
type Streams struct {
	Stdout io.Writer
	Stderr io.Writer
	// StderrIsTerminal decides the console log format and the progress bar.
	StderrIsTerminal bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], Streams{
		Stdout:           os.Stdout,
		Stderr:           os.Stderr,
		StderrIsTerminal: isatty.IsTerminal(os.Stderr.Fd()),
	})
	stop()
	os.Exit(code)
}

// run parses args, runs the chosen command and returns the process exit code.
func run(ctx context.Context, args []string, streams Streams) int {
	var cli CLI
	exited := -1
	parser, err := kong.New(&cli,
		kong.Name("krsync"),
		kong.Description("A Kubernetes-native parallel rsync."),
		kong.DefaultEnvars("KRSYNC"),
		kong.Writers(streams.Stdout, streams.Stderr),
		kong.Exit(func(code int) { exited = code; panic(kongExit{}) }),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Vars(flagDefaults()),
		kong.KindMapper(reflect.String, rawStringMapper{}),
	)
	if err != nil {
		fmt.Fprintf(streams.Stderr, "krsync: %v\n", err)
		return 2
	}
	kctx, code, done := parse(parser, joinOptionStrings(args), &exited)
	if done {
		return code
	}
	if err != nil {
		fmt.Fprintf(streams.Stderr, "krsync: %v\n", err)
		return 2
	}
	logger, err := newLogger(cli.LogLevel, cli.LogFormat, streams)
	if err != nil {
		fmt.Fprintf(streams.Stderr, "krsync: %v\n", err)
		return 2
	}
	err = kctx.Run(ctx, logger, streams)
	code = exitCode(err)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		fmt.Fprintf(streams.Stderr, "krsync: %s\n", msg)
	}
	return code
}

// rawStringMapper decodes a string flag (or its KRSYNC_ variable) byte for byte. kong's own
// goes through encoding/json, which turns every byte that is not UTF-8 into U+FFFD: a
// --source or --dest with a Latin-1 directory name named another, missing path.
type rawStringMapper struct{}

func (rawStringMapper) Decode(ctx *kong.DecodeContext, target reflect.Value) error {
	t, err := ctx.Scan.PopValue("string")
	if err != nil {
		return err
	}
	s, ok := t.Value.(string)
	if !ok {
		s = fmt.Sprint(t.Value)
	}
	target.SetString(s)
	return nil
}

// flagDefaults are the flags' defaults that packages define: the tags say ${name}, so each
// value is written once, where it is decided.
func flagDefaults() kong.Vars {
	manifests := kube.DefaultParams()
	return kong.Vars{
		"fpartOptions":      fpart.DefaultOptions,
		"localFpartOptions": local.DefaultFpartOptions,
		"rsyncOptions":      rsyncexec.DefaultOptions,
		"filesPerPartition": strconv.Itoa(coordinator.DefaultFilesPerPartition),
		"workerTemplate":    kube.DefaultWorkerTemplate,
		"parallelism":       strconv.Itoa(manifests.Parallelism),
		"sourcePVC":         manifests.SourcePVC,
		"destPVC":           manifests.DestPVC,
		"image":             manifests.Image,
		"pullPolicy":        manifests.PullPolicy,
		"runName":           manifests.Name,
	}
}

// joinOptionStrings turns `--rsync-opts "-aS"` into `--rsync-opts=-aS` (and the same for
// --fpart-opts): their values start with a hyphen, which kong would read as the next flag.
// kong's WithHyphenPrefixedParameters is not used because it makes a flag at the end of the
// line take "" (so `--dest` alone would mean the current directory).
func joinOptionStrings(args []string) []string {
	joined := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--":
			return append(joined, args[i:]...)
		case (args[i] == "--rsync-opts" || args[i] == "--fpart-opts") && i+1 < len(args):
			joined = append(joined, args[i]+"="+args[i+1])
			i++
		default:
			joined = append(joined, args[i])
		}
	}
	return joined
}

// kongExit carries kong's request to exit (after --help, or a parse error) out of kong.
type kongExit struct{}

// parse runs kong's parser; done is true when kong has already answered (help, parse error).
func parse(parser *kong.Kong, args []string, exited *int) (kctx *kong.Context, code int, done bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(kongExit); !ok {
				panic(r)
			}
			kctx, code, done = nil, *exited, true
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		// One line naming the problem, with a pointer to --help.
		parser.Errorf("%s (see krsync --help)", err)
		return nil, 2, true
	}
	return kctx, 0, false
}

// usageError is bad input from the user: a one-line message and exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef builds a usageError.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitStatus lets a command choose its exit code (e.g. 1 when partitions failed).
type exitStatus struct {
	code int
	err  error
}

func (e exitStatus) Error() string { return e.err.Error() }
func (e exitStatus) Unwrap() error { return e.err }

// exitCode maps a command's error to the process exit code, in one place.
func exitCode(err error) int {
	var usage usageError
	var status exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		return 2
	case errors.As(err, &status):
		return status.code
	case errors.Is(err, context.Canceled):
		return 130
	default:
		return 1
	}
}

// newLogger builds the zerolog logger every command receives.
func newLogger(level, format string, streams Streams) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), usagef("--log-level %q: %v", level, err)
	}
	var w io.Writer = streams.Stderr
	if format == "console" || (format == "auto" && streams.StderrIsTerminal) {
		w = zerolog.ConsoleWriter{Out: streams.Stderr, NoColor: !streams.StderrIsTerminal, TimeFormat: "15:04:05"}
	}
	// Milliseconds: a partition's lease, rsync run and report often fall within one second,
	// and a log read afterwards (kubectl logs, a support bundle) must still order them.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version stamped at build time.
func (VersionCmd) Run(streams Streams) error {
	_, err := fmt.Fprintf(streams.Stdout, "krsync %s\n", version)
	return err
}
