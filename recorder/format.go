package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxLineBytes is the longest line (header or event, without its newline)
// that the parsers accept. The Writer never produces longer lines: it splits
// large chunks into several events.
const MaxLineBytes = 1 << 20

// maxEventData is the most raw bytes the Writer puts in one event. JSON
// escaping grows data at most six-fold, so an event line stays well below
// MaxLineBytes.
const maxEventData = 64 << 10

// maxSeconds bounds event times so that they fit a time.Duration.
const maxSeconds = 1e9

// maxDimension bounds terminal widths and heights.
const maxDimension = 1 << 16

// ErrMalformed is matched (errors.Is) by every error about the content of a
// recording: bad header, bad event, over-long line.
var ErrMalformed = errors.New("recorder: malformed recording")

// SyntaxError reports malformed content at a position of a recording.
type SyntaxError struct {
	Path   string // file name when read by Open; empty for Parse
	Line   int    // 1-based line number; 0 when unknown (after an index seek)
	Offset int64  // byte offset of the start of the line
	Msg    string
	Err    error // underlying cause, if any
}

func (e *SyntaxError) Error() string {
	where := fmt.Sprintf("line %d", e.Line)
	if e.Line == 0 {
		where = fmt.Sprintf("offset %d", e.Offset)
	}
	if e.Path != "" {
		where = e.Path + ": " + where
	}
	if e.Err != nil {
		return fmt.Sprintf("recorder: %s: %s: %v", where, e.Msg, e.Err)
	}
	return fmt.Sprintf("recorder: %s: %s", where, e.Msg)
}

// Is makes every SyntaxError match ErrMalformed.
func (e *SyntaxError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the underlying cause.
func (e *SyntaxError) Unwrap() error { return e.Err }

// Header is the first line of an asciicast v2 file. Version is always 2;
// Width and Height are the initial terminal size in columns and rows;
// Timestamp is the Unix time the recording started.
type Header struct {
	Version       int               `json:"version"`
	Width         int               `json:"width"`
	Height        int               `json:"height"`
	Timestamp     int64             `json:"timestamp,omitempty"`
	IdleTimeLimit float64           `json:"idle_time_limit,omitempty"`
	Command       string            `json:"command,omitempty"`
	Title         string            `json:"title,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Theme         *Theme            `json:"theme,omitempty"`
}

// Theme is the optional colour theme of an asciicast v2 header.
type Theme struct {
	Fg      string `json:"fg"`
	Bg      string `json:"bg"`
	Palette string `json:"palette"`
}

func (h Header) validate() error {
	switch {
	case h.Version != 2:
		return fmt.Errorf("version %d, want 2", h.Version)
	case h.Width <= 0 || h.Width > maxDimension:
		return fmt.Errorf("width %d out of range", h.Width)
	case h.Height <= 0 || h.Height > maxDimension:
		return fmt.Errorf("height %d out of range", h.Height)
	case h.Timestamp < 0:
		return fmt.Errorf("negative timestamp %d", h.Timestamp)
	case h.IdleTimeLimit < 0 || math.IsNaN(h.IdleTimeLimit) || math.IsInf(h.IdleTimeLimit, 0):
		return fmt.Errorf("idle_time_limit %v out of range", h.IdleTimeLimit)
	}
	return nil
}

// sanitized returns a copy of h whose strings are valid UTF-8, so that its
// JSON encoding survives a decode/encode round trip byte for byte.
func (h Header) sanitized() Header {
	fix := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	h.Command, h.Title = fix(h.Command), fix(h.Title)
	if h.Env != nil {
		env := make(map[string]string, len(h.Env))
		for k, v := range h.Env {
			env[fix(k)] = fix(v)
		}
		h.Env = env
	}
	if h.Theme != nil {
		t := *h.Theme
		t.Fg, t.Bg, t.Palette = fix(t.Fg), fix(t.Bg), fix(t.Palette)
		h.Theme = &t
	}
	return h
}

// appendHeader appends the header line (with its newline) to dst.
func appendHeader(dst []byte, h Header) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return dst, fmt.Errorf("recorder: encode header: %w", err)
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

func decodeHeader(line []byte) (Header, error) {
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("header is not a JSON object: %w", err)
	}
	return h, h.validate()
}

// EventType is the code of an asciicast v2 event.
type EventType byte

// Event codes of asciicast v2.
const (
	EventOutput EventType = 'o' // data written to the terminal
	EventInput  EventType = 'i' // data typed by the user
	EventResize EventType = 'r' // terminal resized; data is "COLSxROWS"
	EventMarker EventType = 'm' // marker (written by asciinema, not by Writer)
)

func (t EventType) String() string { return string(rune(t)) }

// Event is one event line of a recording. Time is the offset from the start
// of the recording, with microsecond precision.
type Event struct {
	Time time.Duration
	Type EventType
	Data string
}

// Size returns the terminal size carried by a resize event.
func (e Event) Size() (cols, rows int, ok bool) {
	if e.Type != EventResize {
		return 0, 0, false
	}
	return parseSize(e.Data)
}

func parseSize(s string) (cols, rows int, ok bool) {
	c, r, found := strings.Cut(s, "x")
	if !found {
		return 0, 0, false
	}
	num := func(s string) int {
		if s == "" || len(s) > 6 {
			return -1
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return -1
			}
		}
		n, _ := strconv.Atoi(s)
		return n
	}
	cols, rows = num(c), num(r)
	if cols <= 0 || rows <= 0 || cols > maxDimension || rows > maxDimension {
		return 0, 0, false
	}
	return cols, rows, true
}

// appendTime appends d as seconds with exactly six decimals.
func appendTime(dst []byte, d time.Duration) []byte {
	us := int64(d / time.Microsecond)
	dst = strconv.AppendInt(dst, us/1e6, 10)
	frac := us % 1e6
	dst = append(dst, '.')
	for div := int64(1e5); div > 0; div /= 10 {
		dst = append(dst, byte('0'+frac/div%10))
	}
	return dst
}

// appendEventStart appends `[TIME, "C", "` to dst.
func appendEventStart(dst []byte, d time.Duration, code EventType) []byte {
	dst = append(dst, '[')
	dst = appendTime(dst, d)
	return append(dst, ',', ' ', '"', byte(code), '"', ',', ' ', '"')
}

// appendEventEnd closes an event line started by appendEventStart.
func appendEventEnd(dst []byte) []byte { return append(dst, '"', ']', '\n') }

// appendEvent appends a whole event line (with newline) to dst.
func appendEvent(dst []byte, e Event) []byte {
	dst = appendEventStart(dst, e.Time, e.Type)
	dst = appendEscaped(dst, []byte(e.Data))
	return appendEventEnd(dst)
}

const hexDigits = "0123456789abcdef"

// jsonSafe[b] is true for ASCII bytes that appear unescaped in JSON strings.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendEscaped appends s as the inside of a JSON string. Invalid UTF-8 bytes
// become U+FFFD, as asciinema does.
func appendEscaped(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

var jsonNull = []byte("null")

// decodeEvent parses one event line; the error text is a short reason.
func decodeEvent(line []byte) (Event, error) {
	var ev Event
	var raw []json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return ev, fmt.Errorf("event is not a JSON array: %w", err)
	}
	if len(raw) != 3 {
		return ev, fmt.Errorf("event has %d elements, want 3", len(raw))
	}
	for i := range raw {
		raw[i] = bytes.TrimSpace(raw[i])
		if bytes.Equal(raw[i], jsonNull) {
			return ev, fmt.Errorf("event element %d is null", i)
		}
	}
	var secs float64
	if err := json.Unmarshal(raw[0], &secs); err != nil {
		return ev, errors.New("event time is not a number")
	}
	if !(secs >= 0 && secs <= maxSeconds) {
		return ev, fmt.Errorf("event time %v out of range", secs)
	}
	ev.Time = time.Duration(math.Round(secs*1e6)) * time.Microsecond
	var code string
	if err := json.Unmarshal(raw[1], &code); err != nil {
		return ev, errors.New("event code is not a string")
	}
	if len(code) != 1 {
		return ev, fmt.Errorf("unknown event code %q", code)
	}
	switch t := EventType(code[0]); t {
	case EventOutput, EventInput, EventResize, EventMarker:
		ev.Type = t
	default:
		return ev, fmt.Errorf("unknown event code %q", code)
	}
	if err := json.Unmarshal(raw[2], &ev.Data); err != nil {
		return ev, errors.New("event data is not a string")
	}
	if ev.Type == EventResize {
		if _, _, ok := parseSize(ev.Data); !ok {
			return ev, fmt.Errorf("resize data %q is not COLSxROWS", ev.Data)
		}
	}
	return ev, nil
}
