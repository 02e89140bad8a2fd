// Command gopeft fine-tunes, inspects and merges PEFT adapters.
//
// Usage:
//
//	gopeft demo [--method M] [--out DIR]       fine-tune the embedded tiny LLaMA and show the effect
//	gopeft train --base CKPT --data FILE.jsonl --config adapter_config.json --out DIR [flags]
//	gopeft inspect DIR [--base CKPT]           describe an adapter folder, check it against a base
//	gopeft merge --base CKPT --adapter DIR [--weight W] ... --out DIR [--dtype f32|f16|bf16]
//	gopeft bench                               GEMM throughput of every compiled backend
//	gopeft pretrain-demo [--out DIR]           regenerate the demo's embedded base model
//
// Every command takes --json to print one JSON object on standard output
// instead of text (progress bars are off then, and whenever standard error is
// not a terminal). Errors print one line on standard error and exit with
// status 1 (2 for a usage error); commands that write a folder write it under
// a temporary name and rename it when complete, so a failed run leaves none.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	_ "github.com/gopeft/gopeft/kernels/all" // link every compiled backend
)

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	json           bool
	// tty reports whether progress bars may be drawn on stderr.
	tty bool
}

// command is one sub-command.
type command struct {
	summary string
	run     func(e *env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"demo":          {"fine-tune the embedded tiny LLaMA on a new task and show the effect", runDemo},
		"train":         {"train an adapter on a JSONL file of token ids", runTrain},
		"inspect":       {"describe an adapter folder (and check it against a base checkpoint)", runInspect},
		"merge":         {"merge adapters into a base checkpoint, one shard at a time", runMerge},
		"bench":         {"GEMM throughput of every compiled backend, as one table", runBench},
		"pretrain-demo": {"regenerate the demo's embedded base model", runPretrainDemo},
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr)))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer, tty bool) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "gopeft: unknown command %q\n", name)
		usage(stderr)
		return 2
	}
	e := &env{stdout: stdout, stderr: stderr, tty: tty}
	err := c.run(e, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "gopeft %s: %v\n", name, err)
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gopeft <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun gopeft <command> -h for its flags.")
}

// newFlags returns a flag set for a command with the shared --json flag.
func (e *env) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("gopeft "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.BoolVar(&e.json, "json", false, "print one JSON object on standard output instead of text")
	return fs
}

// parse parses args, turning flag errors into usage errors. Positional
// arguments may come before or after the flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// printf writes text output (nothing in --json mode).
func (e *env) printf(format string, a ...any) {
	if !e.json {
		fmt.Fprintf(e.stdout, format, a...)
	}
}

// emit writes v as the command's JSON result in --json mode.
func (e *env) emit(v any) error {
	if !e.json {
		return nil
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
