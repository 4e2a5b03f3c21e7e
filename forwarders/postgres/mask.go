package postgres

import (
	"bytes"
	"encoding/binary"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Type OIDs the masker knows.
const (
	oidBool    = 16
	oidName    = 19
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidText    = 25
	oidJSON    = 114
	oidXML     = 142
	oidFloat4  = 700
	oidFloat8  = 701
	oidUnknown = 705
	oidBpchar  = 1042
	oidVarchar = 1043
	oidNumeric = 1700
	oidJSONB   = 3802
)

func textLike(oid uint32) bool {
	switch oid {
	case oidText, oidVarchar, oidBpchar, oidName, oidUnknown, oidJSON, oidJSONB, oidXML:
		return true
	}
	return false
}

func numeric(oid uint32) bool {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidFloat4, oidFloat8, oidNumeric:
		return true
	}
	return false
}

// detectors are the value detectors of mask.patterns.
type detectors struct {
	card, email, ssn, iban, phone bool
	custom                        []*regexp.Regexp
}

var (
	cardRE  = regexp.MustCompile(`\b(?:\d[ -]?){12,18}\d\b`)
	emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)
	ssnRE   = regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`)
	ibanRE  = regexp.MustCompile(`\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b`)
	phoneRE = regexp.MustCompile(`\+?\d[\d ().\-]{7,}\d`)
)

func newDetectors(names []string) *detectors {
	if len(names) == 0 {
		return nil
	}
	d := &detectors{}
	for _, n := range names {
		switch n {
		case "credit_card":
			d.card = true
		case "email":
			d.email = true
		case "us_ssn":
			d.ssn = true
		case "iban":
			d.iban = true
		case "phone":
			d.phone = true
		default:
			if expr, ok := strings.CutPrefix(n, "re:"); ok {
				if re, err := regexp.Compile(expr); err == nil {
					d.custom = append(d.custom, re)
				}
			}
		}
	}
	return d
}

func luhn(digits []byte) bool {
	sum, dbl := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		v := int(digits[i] - '0')
		if dbl {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		dbl = !dbl
	}
	return len(digits) >= 13 && sum%10 == 0
}

// keepLast masks every digit of s but the last n, keeping separators.
func keepLast(s []byte, n int) []byte {
	out := bytes.Clone(s)
	seen := 0
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] >= '0' && out[i] <= '9' {
			seen++
			if seen > n {
				out[i] = '*'
			}
		}
	}
	return out
}

func countDigits(b []byte) int {
	n := 0
	for _, c := range b {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}

// apply masks what the detectors find in v; changed reports a change.
func (d *detectors) apply(v []byte) ([]byte, bool) {
	changed := false
	digits := countDigits(v)
	if d.card && digits >= 13 {
		v = cardRE.ReplaceAllFunc(v, func(m []byte) []byte {
			var ds []byte
			for _, c := range m {
				if c >= '0' && c <= '9' {
					ds = append(ds, c)
				}
			}
			if !luhn(ds) {
				return m
			}
			changed = true
			return keepLast(m, 4)
		})
	}
	if d.ssn && digits >= 9 {
		v = ssnRE.ReplaceAllFunc(v, func(m []byte) []byte { changed = true; return keepLast(m, 4) })
	}
	if d.email && bytes.IndexByte(v, '@') >= 0 {
		v = emailRE.ReplaceAllFunc(v, func(m []byte) []byte {
			changed = true
			at := bytes.LastIndexByte(m, '@')
			out := make([]byte, len(m))
			for i := range at {
				out[i] = '*'
			}
			copy(out[at:], m[at:])
			return out
		})
	}
	if d.iban && digits >= 6 {
		v = ibanRE.ReplaceAllFunc(v, func(m []byte) []byte {
			changed = true
			return append(bytes.Clone(m[:2]), bytes.Repeat([]byte{'*'}, len(m)-2)...)
		})
	}
	if d.phone && digits >= 9 {
		v = phoneRE.ReplaceAllFunc(v, func(m []byte) []byte { changed = true; return keepLast(m, 2) })
	}
	for _, re := range d.custom {
		v = re.ReplaceAllFunc(v, func(m []byte) []byte {
			if len(m) == 0 {
				return m
			}
			changed = true
			return []byte("****")
		})
	}
	return v, changed
}

// shapeMask replaces letters and digits with '*', keeping punctuation.
func shapeMask(v []byte) []byte {
	return appendShapeMask(make([]byte, 0, len(v)), v)
}

// appendShapeMask appends shapeMask(v) to out.
func appendShapeMask(out, v []byte) []byte {
	for len(v) > 0 {
		if c := v[0]; c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				c = '*'
			}
			out = append(out, c)
			v = v[1:]
			continue
		}
		r, n := utf8.DecodeRune(v)
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			out = append(out, '*')
		} else {
			out = append(out, v[:n]...)
		}
		v = v[n:]
	}
	return out
}

// shapeMasked reports whether a whole-masked value of this type and format
// is shapeMask of itself.
func shapeMasked(typ uint32, format int16) bool {
	if format == 0 {
		return textLike(typ) && typ != oidJSON && typ != oidJSONB
	}
	switch typ {
	case oidText, oidVarchar, oidBpchar, oidName, oidUnknown, oidXML:
		return true
	}
	return false
}

// colMask is what to do with one result column.
type colMask struct {
	whole    bool // mask the whole value (mask.columns)
	patterns bool // run the detectors
	typ      uint32
	format   int16
}

// rowPlan masks the rows of one result.
type rowPlan struct {
	cols []colMask
	det  *detectors
}

// maskedValue returns the replacement for a whole-masked value; nil means
// SQL NULL.
func maskedValue(v []byte, typ uint32, format int16) []byte {
	if format == 0 {
		switch {
		case typ == oidJSON || typ == oidJSONB:
			return []byte(`"****"`)
		case textLike(typ):
			return shapeMask(v)
		case numeric(typ):
			return []byte("0")
		case typ == oidBool:
			return []byte("f")
		}
		return nil
	}
	switch typ {
	case oidText, oidVarchar, oidBpchar, oidName, oidUnknown, oidXML:
		return shapeMask(v)
	case oidJSON:
		return []byte(`"****"`)
	case oidJSONB:
		return []byte("\x01\"****\"")
	case oidInt2:
		return make([]byte, 2)
	case oidInt4, oidFloat4:
		return make([]byte, 4)
	case oidInt8, oidFloat8, oidNumeric:
		return make([]byte, 8)
	case oidBool:
		return []byte{0}
	}
	return nil
}

// maskValue applies the column's plan to one non-NULL value.
func (p *rowPlan) maskValue(c colMask, v []byte) ([]byte, bool, bool) {
	if c.whole {
		m := maskedValue(v, c.typ, c.format)
		return m, m == nil, true
	}
	if !c.patterns || p.det == nil {
		return v, false, false
	}
	switch {
	case textLike(c.typ):
		if c.format == 1 && c.typ == oidJSONB {
			if len(v) < 1 {
				return v, false, false
			}
			nv, ch := p.det.apply(v[1:])
			if !ch {
				return v, false, false
			}
			return append([]byte{v[0]}, nv...), false, true
		}
		nv, ch := p.det.apply(v)
		return nv, false, ch
	case c.format == 0:
		if _, ch := p.det.apply(v); ch {
			m := maskedValue(v, c.typ, 0)
			return m, m == nil, true
		}
	case c.typ == oidInt8 && len(v) == 8:
		s := strconv.FormatInt(int64(binary.BigEndian.Uint64(v)), 10)
		if _, ch := p.det.apply([]byte(s)); ch {
			return make([]byte, 8), false, true
		}
	}
	return v, false, false
}

// rewriteRow masks a DataRow body into dst; it returns body itself when
// nothing changed.
func (p *rowPlan) rewriteRow(dst, body []byte) ([]byte, error) {
	n, rest, err := u16(body)
	if err != nil {
		return nil, err
	}
	out := dst[:0]
	out = append(out, body[:2]...)
	changed := false
	for i := 0; i < n; i++ {
		if len(rest) < 4 {
			return nil, ErrBadMessage
		}
		l := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if l < 0 {
			out = append(out, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		if len(rest) < l {
			return nil, ErrBadMessage
		}
		v := rest[:l]
		rest = rest[l:]
		var c colMask
		if i < len(p.cols) {
			c = p.cols[i]
		} else {
			c = colMask{whole: true}
		}
		if c.whole && shapeMasked(c.typ, c.format) {
			// Mask straight into the row.
			at := len(out)
			out = appendShapeMask(append(out, 0, 0, 0, 0), v)
			binary.BigEndian.PutUint32(out[at:], uint32(len(out)-at-4))
			changed = true
			continue
		}
		nv, null, ch := p.maskValue(c, v)
		changed = changed || ch
		if null {
			out = append(out, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(nv)))
		out = append(out, nv...)
	}
	if !changed {
		return body, nil
	}
	return out, nil
}

// copyPlan masks COPY TO STDOUT data (text or csv format).
type copyPlan struct {
	whole []bool // by column position
	det   *detectors
	csv   bool
	delim byte
}

// rewriteCopy masks one CopyData row.
func (p *copyPlan) rewriteCopy(line []byte) []byte {
	anyWhole := false
	for _, w := range p.whole {
		anyWhole = anyWhole || w
	}
	if !anyWhole {
		if p.det == nil {
			return line
		}
		nv, _ := p.det.apply(line)
		return nv
	}
	nl := bytes.HasSuffix(line, []byte("\n"))
	body := bytes.TrimSuffix(line, []byte("\n"))
	fields := splitCopy(body, p.delim, p.csv)
	if fields == nil {
		return []byte("****\n")
	}
	for i, f := range fields {
		if i < len(p.whole) && p.whole[i] {
			if string(f) == `\N` || (p.csv && len(f) == 0) {
				continue
			}
			fields[i] = shapeMask(f)
			if p.csv {
				fields[i] = []byte(`"` + strings.ReplaceAll(string(shapeMask(f)), `"`, `""`) + `"`)
			}
		} else if p.det != nil {
			fields[i], _ = p.det.apply(f)
		}
	}
	out := bytes.Join(fields, []byte{p.delim})
	if nl {
		out = append(out, '\n')
	}
	return out
}

// splitCopy splits a row at delimiters outside CSV quotes; nil when the
// row cannot be split safely.
func splitCopy(b []byte, delim byte, csv bool) [][]byte {
	var out [][]byte
	start, inQ := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case csv && c == '"':
			inQ = !inQ
		case c == delim && !inQ:
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	if inQ {
		return nil
	}
	return append(out, b[start:])
}
