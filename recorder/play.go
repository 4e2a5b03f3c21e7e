package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// PlayOptions tune Play.
type PlayOptions struct {
	// Speed multiplies the playback speed; 0 means 1. Must not be negative.
	Speed float64
	// IdleLimit caps every pause between two events (before Speed is
	// applied). 0 takes the header's idle_time_limit (none if absent); a
	// negative value disables the cap.
	IdleLimit time.Duration
	// Sleep waits for d or until ctx ends; default a timer. Tests inject a
	// fake that records the pauses.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes the output events of r, from its current position, to w with
// their recorded timing: before each output event it pauses for the time
// since the previous output event (or since the seek target), capped by the
// idle limit and divided by the speed, as asciinema does. Input, resize and
// marker events are skipped. It returns nil at the end of the recording, the
// context's cause when ctx ends, or the first read or write error.
func Play(ctx context.Context, w io.Writer, r *Reader, opts PlayOptions) error {
	speed := opts.Speed
	if speed == 0 {
		speed = 1
	}
	if speed < 0 {
		return fmt.Errorf("recorder: play: negative speed %v", speed)
	}
	limit := opts.IdleLimit
	if limit == 0 && r.Header.IdleTimeLimit > 0 {
		limit = time.Duration(r.Header.IdleTimeLimit * float64(time.Second))
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepContext
	}
	prev := r.at
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Type != EventOutput {
			continue
		}
		pause := ev.Time - prev
		prev = ev.Time
		if limit > 0 && pause > limit {
			pause = limit
		}
		pause = time.Duration(float64(pause) / speed)
		if pause > 0 {
			if err := sleep(ctx, pause); err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return fmt.Errorf("recorder: play: %w", err)
			}
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if _, err := io.WriteString(w, ev.Data); err != nil {
			return fmt.Errorf("recorder: play: %w", err)
		}
	}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
