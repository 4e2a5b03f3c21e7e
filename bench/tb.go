package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// fatal is the panic value of programTB.Fatal: it unwinds to the nearest
// catch (main, or a goroutine's wrapper) instead of exiting, so that the
// cleanups still stop every process that was started.
type fatal struct{ msg string }

// programTB lets the test harness, which takes a testing.TB, run inside
// this program. Only the methods the harness and sshdtest call are
// meaningful; the embedded nil testing.TB supplies the unexported method
// and would panic if anything else were called.
type programTB struct {
	testing.TB
	log *slog.Logger

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func newProgramTB(log *slog.Logger) *programTB { return &programTB{log: log} }

func (t *programTB) Helper()      {}
func (t *programTB) Name() string { return "jumpgate-bench" }

func (t *programTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// runCleanups runs the cleanups last-in first-out, once.
func (t *programTB) runCleanups() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		f()
	}
}

func (t *programTB) TempDir() string {
	d, err := os.MkdirTemp("", "jumpgate-bench-")
	if err != nil {
		t.Fatalf("bench: temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (t *programTB) Context() context.Context { return context.Background() }
func (t *programTB) Output() io.Writer        { return os.Stderr }
func (t *programTB) Log(args ...any)          { t.log.Debug(fmt.Sprint(args...)) }
func (t *programTB) Logf(f string, args ...any) {
	t.log.Debug(fmt.Sprintf(f, args...))
}
func (t *programTB) Error(args ...any) { t.fail(); t.log.Error(fmt.Sprint(args...)) }
func (t *programTB) Errorf(f string, args ...any) {
	t.fail()
	t.log.Error(fmt.Sprintf(f, args...))
}
func (t *programTB) Fail()    { t.fail() }
func (t *programTB) FailNow() { t.fail(); panic(fatal{"FailNow"}) }
func (t *programTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}
func (t *programTB) Fatal(args ...any) { t.fail(); panic(fatal{fmt.Sprint(args...)}) }
func (t *programTB) Fatalf(f string, args ...any) {
	t.fail()
	panic(fatal{fmt.Sprintf(f, args...)})
}
func (t *programTB) Skip(args ...any)            { panic(fatal{"skip: " + fmt.Sprint(args...)}) }
func (t *programTB) Skipf(f string, args ...any) { panic(fatal{"skip: " + fmt.Sprintf(f, args...)}) }
func (t *programTB) SkipNow()                    { panic(fatal{"skip"}) }
func (t *programTB) Skipped() bool               { return false }
func (t *programTB) Setenv(k, v string)          { os.Setenv(k, v) }

func (t *programTB) fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

// catch runs f and turns a harness failure (a fatal panic) into an error.
// Any other panic is re-raised.
func catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if fe, ok := r.(fatal); ok {
				err = fmt.Errorf("bench: %s", fe.msg)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
