package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// bar is a progress bar on stderr, or nothing when stderr is not a terminal
// or the output is JSON.
type bar struct{ b *progressbar.ProgressBar }

// newBar starts a bar of total steps. Its first draw waits a second, so that
// quick work shows none.
func (e *env) newBar(total int, desc string) *bar {
	if e.json || !e.tty {
		return &bar{}
	}
	return &bar{progressbar.NewOptions(total,
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionOnCompletion(func() {}),
	)}
}

// add advances the bar by n.
func (b *bar) add(n int) {
	if b.b != nil {
		_ = b.b.Add(n)
	}
}

// describe changes the bar's text.
func (b *bar) describe(s string) {
	if b.b != nil {
		b.b.Describe(s)
	}
}

// finish completes and clears the bar.
func (b *bar) finish() {
	if b.b != nil {
		_ = b.b.Finish()
		_ = b.b.Clear()
	}
}

var _ io.Writer = os.Stderr
