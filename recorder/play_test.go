package recorder

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeSleep records the pauses Play asks for without sleeping.
type fakeSleep struct {
	pauses []time.Duration
	onCall func(n int) // optional hook, called with the 1-based call number
}

func (f *fakeSleep) Sleep(ctx context.Context, d time.Duration) error {
	f.pauses = append(f.pauses, d)
	if f.onCall != nil {
		f.onCall(len(f.pauses))
	}
	return ctx.Err()
}

func TestPlay(t *testing.T) {
	s := time.Second
	// Output at 1s, input at 2s (not played), output at 12s, resize at
	// 13s, output at 13.5s: pauses run between output events.
	rec := hdr +
		`[1, "o", "one "]` + "\n" +
		`[2, "i", "typed"]` + "\n" +
		`[12, "o", "two "]` + "\n" +
		`[13, "r", "100x30"]` + "\n" +
		`[13.5, "o", "three"]` + "\n"
	withHeaderLimit := strings.Replace(rec, `"height": 24}`, `"height": 24, "idle_time_limit": 2}`, 1)
	tests := []struct {
		name   string
		rec    string
		opts   PlayOptions
		seek   time.Duration
		pauses []time.Duration
		out    string
	}{
		{"real time", rec, PlayOptions{}, 0, []time.Duration{s, 11 * s, 3 * s / 2}, "one two three"},
		{"double speed", rec, PlayOptions{Speed: 2}, 0, []time.Duration{s / 2, 11 * s / 2, 3 * s / 4}, "one two three"},
		{"idle limit", rec, PlayOptions{IdleLimit: 3 * s}, 0, []time.Duration{s, 3 * s, 3 * s / 2}, "one two three"},
		{"idle limit then speed", rec, PlayOptions{IdleLimit: 3 * s, Speed: 4}, 0, []time.Duration{s / 4, 3 * s / 4, 3 * s / 8}, "one two three"},
		{"header idle limit", withHeaderLimit, PlayOptions{}, 0, []time.Duration{s, 2 * s, 3 * s / 2}, "one two three"},
		{"header idle limit disabled", withHeaderLimit, PlayOptions{IdleLimit: -1}, 0, []time.Duration{s, 11 * s, 3 * s / 2}, "one two three"},
		{"after seek", rec, PlayOptions{}, 10 * s, []time.Duration{2 * s, 3 * s / 2}, "two three"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(writeFile(t, tc.rec))
			must(t, err)
			defer r.Close()
			if tc.seek > 0 {
				must(t, r.SeekTime(tc.seek))
			}
			var fs fakeSleep
			tc.opts.Sleep = fs.Sleep
			var out strings.Builder
			must(t, Play(context.Background(), &out, r, tc.opts))
			if out.String() != tc.out {
				t.Errorf("output %q, want %q", out.String(), tc.out)
			}
			if !reflect.DeepEqual(fs.pauses, tc.pauses) {
				t.Errorf("pauses %v, want %v", fs.pauses, tc.pauses)
			}
		})
	}
}

func TestPlayStopsOnCancel(t *testing.T) {
	r, err := Open(writeFile(t, hdr+`[1, "o", "a"]`+"\n"+`[2, "o", "b"]`+"\n"+`[3, "o", "c"]`+"\n"))
	must(t, err)
	defer r.Close()
	stop := errors.New("viewer left")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	fs := fakeSleep{onCall: func(n int) {
		if n == 2 {
			cancel(stop)
		}
	}}
	var out strings.Builder
	err = Play(ctx, &out, r, PlayOptions{Sleep: fs.Sleep})
	if !errors.Is(err, stop) {
		t.Errorf("Play = %v, want the cancel cause", err)
	}
	if out.String() != "a" {
		t.Errorf("output %q, want only the event before the cancel", out.String())
	}
}

func TestPlayRealSleepAndErrors(t *testing.T) {
	r, err := Open(writeFile(t, hdr+`[0.001, "o", "a"]`+"\n"+`[1, "x", "bad"]`+"\n"))
	must(t, err)
	defer r.Close()
	if err := Play(context.Background(), &strings.Builder{}, r, PlayOptions{Speed: -1}); err == nil {
		t.Error("negative speed accepted")
	}
	var out strings.Builder
	err = Play(context.Background(), &out, r, PlayOptions{Speed: 1000})
	if !errors.Is(err, ErrMalformed) || out.String() != "a" {
		t.Errorf("Play = %v with output %q, want ErrMalformed after \"a\"", err, out.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleepContext on a cancelled context = %v", err)
	}
}
