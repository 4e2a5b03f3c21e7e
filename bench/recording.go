package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func init() {
	register(Benchmark{ID: "6", Title: "recording overhead: cat in an interactive pty shell", Run: runRecording})
}

// runRecording cats a CatSize text file in an interactive shell with a pty
// through jumpgate to the recorded entry and to the passthrough entry of
// the same target, taking turns, and compares the throughput seen by the
// client.
func runRecording(ctx context.Context, e *Env) ([]Row, error) {
	file, err := writeTextFile(e.TB.TempDir(), e.Flags.CatSize)
	if err != nil {
		return nil, err
	}
	rec, pass := e.jgRoute(recordedTarget), e.jgRoute(passthroughTarget)
	row := Row{ID: "6", Title: fmt.Sprintf("`cat` of a %s text file in a recorded interactive shell (pty)", humanBytes(e.Flags.CatSize)),
		Unit: "MB/s", RefName: "(jumpgate passthrough, same pty shell)", Goal: Goal{RatioAtLeast, 0.8}}
	for round := 0; round < e.Flags.Rounds; round++ {
		for _, step := range []struct {
			r   route
			out *[]float64
		}{{pass, &row.Ref}, {rec, &row.JG}} {
			var stopProf func()
			if e.Flags.ProfileDir != "" && round == e.Flags.Rounds-1 && step.r.Dest == recordedTarget {
				stopProf = e.perfServer("cat-recorded")
			}
			d, err := e.catInShell(step.r, file)
			if stopProf != nil {
				stopProf()
			}
			if err != nil {
				return []Row{row}, err
			}
			v := float64(e.Flags.CatSize) / 1e6 / d.Seconds()
			*step.out = append(*step.out, v)
			e.Log.Info("cat in pty", "route", step.r.Name, "round", round+1, "MB/s", num(v))
		}
	}
	row.Method = "in-process client, pty + shell, `cat FILE; echo END-$((6*7))` typed; time from sending the line to the marker (Enter is held by the command filter until the line settles); MB/s of file bytes"
	return []Row{row}, nil
}

func (e *Env) catInShell(r route, file string) (time.Duration, error) {
	s, err := e.openShell(r)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if _, err := s.waitFor([]byte("#"), time.Minute); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := io.WriteString(s.stdin, "cat "+file+"; echo END-$((6*7))\n"); err != nil {
		return 0, err
	}
	n, err := s.waitFor([]byte("END-42"), 10*time.Minute)
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	if n < e.Flags.CatSize {
		return 0, fmt.Errorf("bench: only %d of %d bytes came back", n, e.Flags.CatSize)
	}
	return d, nil
}

// writeTextFile writes size bytes of 80-column printable lines, like a
// log file.
func writeTextFile(dir string, size int64) (string, error) {
	p := filepath.Join(dir, "cat.txt")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789 ", 2)[:79] + "\n")
	for left := size; left > 0; {
		k := int64(len(line))
		if left < k {
			k = left
		}
		w.Write(line[:k])
		left -= k
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	// sshd runs the shell as root, which reads anything; keep it readable anyway.
	return p, os.Chmod(dir, 0o755)
}
