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

// barDelay is how long work runs before its progress bar appears: quick work
// shows none.
const barDelay = time.Second

// bar is a progress bar on stderr that appears once the work has taken
// barDelay, and never when stderr is not a terminal or the output is JSON.
type bar struct {
	w     io.Writer // nil: no bar
	total int
	done  int
	desc  string
	start time.Time
	b     *progressbar.ProgressBar
}

// newBar starts counting towards total steps.
func (e *env) newBar(total int, desc string) *bar {
	if e.json || !e.tty {
		return &bar{}
	}
	return &bar{w: e.stderr, total: total, desc: desc, start: time.Now()}
}

// add advances the bar by n.
func (b *bar) add(n int) {
	if b == nil || b.w == nil {
		return
	}
	b.done += n
	if b.b == nil {
		if time.Since(b.start) < barDelay {
			return
		}
		b.b = progressbar.NewOptions(b.total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(b.desc),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		_ = b.b.Set(b.done)
		return
	}
	_ = b.b.Add(n)
}

// describe changes the bar's text.
func (b *bar) describe(s string) {
	if b == nil || b.w == nil {
		return
	}
	b.desc = s
	if b.b != nil {
		b.b.Describe(s)
	}
}

// finish completes and clears the bar.
func (b *bar) finish() {
	if b != nil && b.b != nil {
		_ = b.b.Finish()
		_ = b.b.Clear()
	}
}
