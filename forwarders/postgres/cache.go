package postgres

import (
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// The statement cache saves parsing a statement the forwarder has seen
// before. Classification is a pure function of the text (EXECUTE aside,
// which reads session state and is never cached), so an entry keyed by the
// exact text is always valid. Drivers and tools such as pgbench -S send the
// same statement with different integer literals in simple protocol, so an
// entry may also be keyed by a template: the text with short runs of digits
// replaced by NUL (which a query text cannot contain). Such an entry is
// stored only after checking, on the parse of the first text, that every
// replaced run is an integer constant of the tree (an A_Const) and that no
// decision read a constant's value. Any text with the same template then
// lexes to the same tokens with only those integer values changed (the
// text around them is identical and each run ends before a character that
// cannot continue a number), so it parses to the same tree up to those
// values and locations, so its classification and fingerprint are the same;
// the statement texts are cut from the new text at the same token
// boundaries, and the normalized text is shared only when normalizing
// replaced every run.

// cacheEntry is one cached classification.
type cacheEntry struct {
	key   string
	text  string // the text classified
	stmts []Statement
	// template: valid for any text with this key; runs are the digit runs
	// of text and spans the statements' places in it.
	template bool
	runs     []digitRun
	spans    []span
	// tmplBoxes are the statements' boxes for a text other than text
	// (template hits): without the text.
	tmplBoxes []*stmtBoxes
	prev      *cacheEntry
	next      *cacheEntry
}

// digitRun is a run of digits replaced in a template.
type digitRun struct{ start, end int }

// stmtCache is a bounded LRU cache of classifications, shared by the
// sessions of one forwarder.
type stmtCache struct {
	mu         sync.Mutex
	m          map[string]*cacheEntry
	head, tail *cacheEntry // head is the most recently used
	bytes      int
	maxBytes   int
	maxEntries int
}

const maxCachedText = 8 << 10

func newStmtCache(maxEntries, maxBytes int) *stmtCache {
	return &stmtCache{m: map[string]*cacheEntry{}, maxEntries: maxEntries, maxBytes: maxBytes}
}

// maxRunDigits keeps replaced integers inside int32 (longer ones lex as
// numeric constants, a different token).
const maxRunDigits = 9

func numContinues(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.' || c == '$' || c >= 0x80
}

// tmplScratch holds the buffers of template computations, reused by one
// session's client loop so a cache hit allocates only its result.
type tmplScratch struct {
	key  []byte
	runs []digitRun
}

// template returns the cache key of q (its template) and the digit runs
// replaced. Quoted strings, quoted identifiers and comments are skipped as
// a matter of hit rate only: a run that is not an integer constant fails
// the check before the template is stored.
func template(q string) (string, []digitRun) {
	var sc tmplScratch
	key, runs := sc.template(q)
	if len(runs) == 0 {
		return q, nil
	}
	return string(key), runs
}

// template is the package's template with its results in sc's buffers,
// valid until the next call; without runs the key is q itself.
func (sc *tmplScratch) template(q string) ([]byte, []digitRun) {
	runs := sc.runs[:0]
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(q[i+1:], c)
			if j < 0 {
				i = len(q)
			} else {
				i += j + 2
			}
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				i = len(q)
			} else {
				i += j + 1
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				i = len(q)
			} else {
				i += j + 4
			}
		case c >= '0' && c <= '9':
			j := i
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			if j-i <= maxRunDigits && (i == 0 || !numContinues(q[i-1])) && (j == len(q) || !numContinues(q[j])) {
				runs = append(runs, digitRun{i, j})
			}
			i = j
		case c != '.' && numContinues(c):
			// Skip identifiers, keywords and $n whole: digits inside them
			// are not numbers.
			for i < len(q) && numContinues(q[i]) && q[i] != '.' {
				i++
			}
		default:
			i++
		}
	}
	sc.runs = runs
	if len(runs) == 0 {
		return nil, nil
	}
	b := sc.key[:0]
	last := 0
	for _, r := range runs {
		b = append(b, q[last:r.start]...)
		b = append(b, 0)
		last = r.end
	}
	b = append(b, q[last:]...)
	sc.key = b
	return b, runs
}

// get returns the cached classification of q, with statement texts cut
// from q.
func (c *stmtCache) get(q string) ([]Statement, bool) {
	return c.getWith(&tmplScratch{}, q)
}

// getWith is get with the caller's scratch buffers.
func (c *stmtCache) getWith(sc *tmplScratch, q string) ([]Statement, bool) {
	if c == nil || len(q) > maxCachedText {
		return nil, false
	}
	key, runs := sc.template(q)
	c.mu.Lock()
	var e *cacheEntry
	var ok bool
	if len(runs) == 0 {
		e, ok = c.m[q]
	} else {
		e, ok = c.m[string(key)]
	}
	if ok {
		c.touch(e)
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	switch {
	case e.text == q:
		// The entry's statements are immutable: share them.
		return e.stmts, true
	case e.template && len(runs) == len(e.runs):
		out := make([]Statement, len(e.stmts))
		copy(out, e.stmts)
		for i, sp := range e.spans {
			out[i].Text = strings.TrimSpace(q[mapOffset(sp.start, e.runs, runs):mapOffset(sp.end, e.runs, runs)])
			out[i].boxes = e.tmplBoxes[i]
		}
		return out, true
	}
	return nil, false
}

// mapOffset maps an offset of the entry's text, at a token boundary, to the
// same place in a text with the same template.
func mapOffset(off int, from, to []digitRun) int {
	d := 0
	for i, r := range from {
		if r.end > off {
			break
		}
		d += (to[i].end - to[i].start) - (r.end - r.start)
	}
	return off + d
}

// put stores the classification of q when it may be reused.
func (c *stmtCache) put(q string, sts []Statement, info classInfo, log bool) {
	if c == nil || len(q) > maxCachedText || info.session || strings.IndexByte(q, 0) >= 0 {
		return
	}
	key, runs := template(q)
	e := &cacheEntry{key: key, text: q, runs: runs, spans: info.spans}
	if len(runs) > 0 {
		e.template = !info.literal && runsAreIntConsts(runs, info) && spansOutsideRuns(info.spans, runs)
		if !e.template {
			return
		}
	}
	e.stmts = make([]Statement, len(sts))
	copy(e.stmts, sts)
	e.tmplBoxes = make([]*stmtBoxes, len(sts))
	for i := range e.stmts {
		s := &e.stmts[i]
		if fp, err := pg_query.Fingerprint(s.Text); err == nil {
			s.fingerprint = fp
		}
		if !log {
			// Normalize leaves some integers alone (type modifiers, ORDER
			// BY positions, PREPARE bodies): share its text only when no
			// replaceable run survives it; otherwise each event normalizes
			// its own text.
			if n, err := pg_query.Normalize(s.Text); err == nil {
				if _, left := template(n); len(runs) == 0 || len(left) == 0 {
					s.normalized = n
				}
			}
		}
	}
	for i := range e.stmts {
		// Box the audit values once, for every event of this text.
		s := &e.stmts[i]
		tb := &stmtBoxes{kinds: s.Kinds}
		if s.fingerprint != "" {
			tb.fingerprint = s.fingerprint
		}
		if s.normalized != "" {
			tb.normalized = s.normalized
		}
		e.tmplBoxes[i] = tb
		full := *tb
		full.text = s.Text
		s.boxes = &full
	}
	size := 2*len(q) + 256
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[key]; ok {
		c.unlink(old)
	}
	c.m[key] = e
	c.bytes += size
	e.next = c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
	for (len(c.m) > c.maxEntries || c.bytes > c.maxBytes) && c.tail != nil {
		c.unlink(c.tail)
	}
}

func runsAreIntConsts(runs []digitRun, info classInfo) bool {
	for _, r := range runs {
		found := false
		for _, l := range info.intConsts {
			if l == r.start {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func spansOutsideRuns(spans []span, runs []digitRun) bool {
	for _, sp := range spans {
		for _, r := range runs {
			if sp.start > r.start && sp.start < r.end || sp.end > r.start && sp.end < r.end {
				return false
			}
		}
	}
	return true
}

func (c *stmtCache) touch(e *cacheEntry) {
	if c.head == e {
		return
	}
	c.detach(e)
	e.next = c.head
	c.head.prev = e
	c.head = e
}

func (c *stmtCache) detach(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *stmtCache) unlink(e *cacheEntry) {
	c.detach(e)
	delete(c.m, e.key)
	c.bytes -= 2*len(e.text) + 256
}

// classifyCached is Classify through the cache.
func (c *stmtCache) classify(q string, prepared PreparedLookup, logLiterals bool) ([]Statement, error) {
	if sts, ok := c.get(q); ok {
		return sts, nil
	}
	return c.classifyWith(&tmplScratch{}, q, prepared, logLiterals)
}

// classifyWith is classify with the caller's scratch buffers.
func (c *stmtCache) classifyWith(sc *tmplScratch, q string, prepared PreparedLookup, logLiterals bool) ([]Statement, error) {
	if sts, ok := c.getWith(sc, q); ok {
		return sts, nil
	}
	sts, info, err := classify(q, prepared)
	if err == nil {
		c.put(q, sts, info, logLiterals)
	}
	return sts, err
}
