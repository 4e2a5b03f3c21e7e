package termline

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkOutput measures how fast target output goes through the emulator,
// since every byte of every interactive session does.
func BenchmarkOutput(b *testing.B) {
	var text bytes.Buffer
	for i := 0; text.Len() < 1<<20; i++ {
		fmt.Fprintf(&text, "%06d drwxr-xr-x 2 root root 4096 Jan  1 00:00 some-directory-name\r\n", i)
	}
	var colour bytes.Buffer
	for i := 0; colour.Len() < 1<<20; i++ {
		fmt.Fprintf(&colour, "\x1b[01;34mdir%d\x1b[0m  \x1b[01;32mexec%d\x1b[0m  plain-file-%d\r\n", i, i, i)
	}
	var utf bytes.Buffer
	for utf.Len() < 1<<20 {
		utf.WriteString("日本語のテキストと émojis ✓ and ascii mixed together\r\n")
	}
	inputs := []struct {
		name string
		data []byte
	}{
		{"ls-text", text.Bytes()},
		{"sgr-colour", colour.Bytes()},
		{"utf8", utf.Bytes()},
	}
	sizes := []struct{ cols, rows int }{{80, 24}, {200, 50}}
	for _, in := range inputs {
		for _, sz := range sizes {
			b.Run(fmt.Sprintf("%s/%dx%d", in.name, sz.cols, sz.rows), func(b *testing.B) {
				benchOutput(b, sz.cols, sz.rows, in.data)
			})
		}
	}
}

func benchOutput(b *testing.B, cols, rows int, data []byte) {
	tl := New(cols, rows)
	b.Cleanup(func() { _ = tl.Close() })
	const chunk = 4096 // what an SSH channel read delivers
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		for p := data; len(p) > 0; {
			n := min(chunk, len(p))
			tl.Output(p[:n])
			p = p[n:]
		}
	}
}

// BenchmarkLine measures the work done at each Enter.
func BenchmarkLine(b *testing.B) {
	tl := New(120, 40)
	b.Cleanup(func() { _ = tl.Close() })
	for i := 0; i < 60; i++ {
		tl.Output([]byte("some earlier output line\r\n"))
	}
	tl.Output([]byte("user@host:~/src$ "))
	tl.Input([]byte("x"))
	tl.Output(bytes.Repeat([]byte("echo 0123456789 "), 20))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tl.Line(); !ok {
			b.Fatal("Line not ok")
		}
	}
}
