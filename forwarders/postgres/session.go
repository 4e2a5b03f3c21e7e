package postgres

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/jumpgate/jumpgate/audit"
	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/forwarders"
	"github.com/jumpgate/jumpgate/policy"
	"github.com/jumpgate/jumpgate/storage"
)

// prepStmt is a prepared statement known to the forwarder.
type prepStmt struct {
	name   string
	stmts  []Statement
	held   bool
	mu     sync.Mutex
	fields []field // from Describe, nil until known
	copy   *copyPlan
	plan   stmtPlan // the last plan of its portals' rows
}

// stmtPlan is a prepared statement's mask plan, reused by the Executes of
// its portals under the same rules, result formats and description while
// the catalog entries it used are fresh.
type stmtPlan struct {
	rules   *sessRules
	fields  []field
	formats []int16
	at      time.Time
	plan    *rowPlan
}

func sameFields(a, b []field) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (p *prepStmt) kinds() []string {
	var k []string
	for _, s := range p.stmts {
		k = appendUniq(k, s.Kinds...)
	}
	return k
}

type portal struct {
	stmt    *prepStmt
	formats []int16
	mu      sync.Mutex
	fields  []field // from Describe portal
}

// pendingSync and pendingClose stand for every Sync and Close: the server
// loop changes only the pending answers of queries (idx, start).
var (
	pendingSync  = &pending{kind: 'S'}
	pendingClose = &pending{kind: 'C'}
)

// pending is one client message whose response the upstream will send.
type pending struct {
	kind    byte // Q P B D E C S F
	stmt    *prepStmt
	portal  *portal
	swallow bool   // an injected Describe: answer not forwarded
	nonce   string // an injected error: replace it with reason
	reason  string
	start   time.Time
	idx     int // statement index within a simple query
}

type session struct {
	f      *Forwarder
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc
	s      forwarders.Session
	t      config.Target
	pt     policy.Target
	id     policy.Identity
	client forwarders.Stream
	up     net.Conn
	proto  uint32

	cw   *bufio.Writer // to the client; guarded by cwMu
	cwMu sync.Mutex
	uw   *bufio.Writer // to the upstream; client loop only

	mu           sync.Mutex
	queue        []*pending // queue[qhead:] are awaiting answers
	qhead        int
	stmts        map[string]*prepStmt
	portals      map[string]*portal
	sqlPrep      map[string][]string // SQL-level PREPAREd statements → kinds
	discard      bool
	auditBad     error
	plan         *rowPlan // current result's plan (server loop)
	planKnown    bool
	copyPlan     *copyPlan          // current COPY OUT plan (server loop)
	auditFree    chan *sqlBatch     // batches the audit queue is done with
	auditBuf     []auditRec         // finished statements not yet handed off (server loop)
	tags         map[string]tagInfo // command tags seen (server loop)
	rowCount     int64              // DataRows of the current statement (server loop)
	scratch      []byte
	lastPlan     lastPlan    // server loop
	tmpl         tmplScratch // client loop
	rulesCur     atomic.Pointer[sessRules]
	stmtNo       int64          // statements audited (server loop)
	auditWG      sync.WaitGroup // batches in the audit queue, and the failure handler
	auditClosing atomic.Bool    // a failed audit write is closing the session
}

// sessRules are the rules of this session's user on its target under one
// policy; they are recomputed when the policy is reloaded.
type sessRules struct {
	p    *policy.Policy
	sql  policy.SQLDecider
	mask policy.MaskSet
	det  *detectors
}

// rules returns the rules under the policy in force.
func (ss *session) rules() *sessRules {
	p := ss.f.cfg.Policy.Current()
	if r := ss.rulesCur.Load(); r != nil && r.p == p {
		return r
	}
	r := &sessRules{p: p, sql: p.SQLRules(ss.id, ss.pt), mask: p.MaskRules(ss.id, ss.pt)}
	r.det = newDetectors(r.mask.Patterns)
	ss.rulesCur.Store(r)
	return r
}

func (ss *session) run(hc *pgconn.HijackedConn) error {
	defer ss.up.Close()
	ss.cw = bufio.NewWriterSize(ss.client, 32*1024)
	ss.uw = bufio.NewWriterSize(ss.up, 32*1024)
	ss.stmts = map[string]*prepStmt{}
	ss.portals = map[string]*portal{}
	ss.sqlPrep = map[string][]string{}
	stopUp := context.AfterFunc(ss.ctx, func() { ss.up.Close() })
	defer stopUp()

	// Tell the client it is in.
	pid, secret, drop := ss.f.newKey(ss.t, ss.proto, hc.PID, hc.SecretKey)
	defer drop()
	out := binary.BigEndian.AppendUint32([]byte{'R'}, 8)
	out = binary.BigEndian.AppendUint32(out, 0)
	keys := make([]string, 0, len(hc.ParameterStatuses))
	for k := range hc.ParameterStatuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		body := append(append(append([]byte(k), 0), hc.ParameterStatuses[k]...), 0)
		out = append(binary.BigEndian.AppendUint32(append(out, 'S'), uint32(len(body)+4)), body...)
	}
	kb := append(binary.BigEndian.AppendUint32(nil, pid), secret...)
	out = append(binary.BigEndian.AppendUint32(append(out, 'K'), uint32(len(kb)+4)), kb...)
	out = append(out, 'Z', 0, 0, 0, 5, hc.TxStatus)
	if _, err := ss.client.Write(out); err != nil {
		return err
	}
	if err := ss.checkParams(hc.ParameterStatuses); err != nil {
		ss.fatal("0A000", "jumpgate: "+err.Error())
		return err
	}

	ss.auditFree = make(chan *sqlBatch, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	serverErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		err := ss.serverLoop()
		serverErr <- err
		ss.cancel(fmt.Errorf("postgres: upstream ended: %w", err))
	}()
	err := ss.clientLoop()
	ss.cancel(fmt.Errorf("postgres: client ended: %w", err))
	ss.up.Close()
	serr := <-serverErr
	wg.Wait()
	ss.auditWG.Wait() // every finished statement's event is durable (or the session failed closed)
	ss.client.Close()
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		if serr != nil && !errors.Is(serr, io.EOF) && !errors.Is(serr, net.ErrClosed) && !errors.Is(serr, io.ErrUnexpectedEOF) {
			return serr
		}
		return nil
	}
	return err
}

// checkParams refuses settings under which pg_query would lex statements
// differently from the server.
func (ss *session) checkParams(p map[string]string) error {
	if v, ok := p["client_encoding"]; ok && !strings.EqualFold(v, "UTF8") {
		return fmt.Errorf("%w: client_encoding %s (only UTF8 is supported)", ErrUnsafeSetting, v)
	}
	if v, ok := p["standard_conforming_strings"]; ok && v != "on" {
		return fmt.Errorf("%w: standard_conforming_strings %s", ErrUnsafeSetting, v)
	}
	return nil
}

func (ss *session) fatal(code, msg string) {
	ss.cwMu.Lock()
	defer ss.cwMu.Unlock()
	_ = writeMsg(ss.cw, 'E', errorBody("FATAL", code, msg))
	_ = ss.cw.Flush()
}

// ---------------------------------------------------------------- client → upstream

func (ss *session) push(p *pending) {
	ss.mu.Lock()
	if ss.qhead > 0 && ss.qhead == len(ss.queue) {
		// Empty: reuse the array from its start.
		ss.queue, ss.qhead = ss.queue[:0], 0
	} else if ss.qhead >= 64 && ss.qhead >= len(ss.queue)/2 {
		n := copy(ss.queue, ss.queue[ss.qhead:])
		clear(ss.queue[n:])
		ss.queue, ss.qhead = ss.queue[:n], 0
	}
	ss.queue = append(ss.queue, p)
	ss.mu.Unlock()
}

func (ss *session) clientLoop() error {
	r := newMsgReader(ss.client, ss.f.cfg.MaxMessageSize)
	for {
		if r.r.Buffered() == 0 {
			if err := ss.uw.Flush(); err != nil {
				return err
			}
		}
		typ, body, err := r.next()
		if err != nil {
			if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrBadLength) {
				ss.log.Warn("bad client message", "err", err)
				ss.fatal("08P01", "jumpgate: "+err.Error())
			}
			return err
		}
		if err := ss.clientMsg(typ, body); err != nil {
			var ue *userError
			if errors.As(err, &ue) {
				ss.log.Warn("client protocol error", "err", err)
				ss.fatal(ue.code, ue.msg)
			}
			return err
		}
	}
}

func (ss *session) forward(typ byte, body []byte) error { return writeMsg(ss.uw, typ, body) }

func (ss *session) clientMsg(typ byte, body []byte) error {
	if ss.discard && typ != 'S' {
		return nil
	}
	ss.mu.Lock()
	bad := ss.auditBad
	ss.mu.Unlock()
	if bad != nil {
		return &userError{"58000", "jumpgate: the audit log cannot be written; the session is closed", bad}
	}
	switch typ {
	case 'Q':
		q, _, err := cstr(body)
		if err != nil {
			return &userError{"08P01", "jumpgate: malformed Query message", err}
		}
		return ss.query(q, body)
	case 'P':
		pm, err := decodeParse(body)
		if err != nil {
			return &userError{"08P01", "jumpgate: malformed Parse message", err}
		}
		return ss.parse(pm, body)
	case 'B':
		bm, err := decodeBind(body)
		if err != nil {
			return &userError{"08P01", "jumpgate: malformed Bind message", err}
		}
		ss.mu.Lock()
		st := ss.stmts[bm.stmt]
		ss.mu.Unlock()
		// The portal and its pending answer in one allocation.
		bp := &struct {
			p  pending
			pt portal
		}{}
		pt := &bp.pt
		pt.stmt, pt.formats = st, bm.results
		ss.mu.Lock()
		ss.portals[bm.portal] = pt
		ss.mu.Unlock()
		bp.p = pending{kind: 'B', portal: pt}
		ss.push(&bp.p)
		return ss.forward(typ, body)
	case 'D':
		if len(body) < 2 {
			return &userError{"08P01", "jumpgate: malformed Describe message", ErrBadMessage}
		}
		name, _, err := cstr(body[1:])
		if err != nil {
			return &userError{"08P01", "jumpgate: malformed Describe message", err}
		}
		p := &pending{kind: 'D'}
		ss.mu.Lock()
		if body[0] == 'S' {
			p.stmt = ss.stmts[name]
		} else {
			p.portal = ss.portals[name]
		}
		ss.mu.Unlock()
		ss.push(p)
		return ss.forward(typ, body)
	case 'E':
		name, _, err := cstr(body)
		if err != nil {
			return &userError{"08P01", "jumpgate: malformed Execute message", err}
		}
		return ss.execute(name, body)
	case 'C':
		if len(body) < 2 {
			return &userError{"08P01", "jumpgate: malformed Close message", ErrBadMessage}
		}
		name, _, _ := cstr(body[1:])
		ss.mu.Lock()
		if body[0] == 'S' {
			delete(ss.stmts, name)
		} else {
			delete(ss.portals, name)
		}
		ss.mu.Unlock()
		ss.push(pendingClose)
		return ss.forward(typ, body)
	case 'S':
		ss.discard = false
		ss.push(pendingSync)
		return ss.forward(typ, body)
	case 'H':
		return ss.forward(typ, body)
	case 'd', 'c', 'f':
		return ss.forward(typ, body)
	case 'F':
		st := Statement{Text: "<function call>", SQLStatement: policy.SQLStatement{Kinds: []string{"function_call", "write"}}}
		if len(body) >= 4 {
			st.Text = fmt.Sprintf("<function call oid %d>", binary.BigEndian.Uint32(body))
		}
		dec := ss.rules().sql.Decide(st.SQLStatement)
		if ok, reason := ss.decide(dec, []Statement{st}, "simple"); !ok {
			return ss.inject('Q', reason, nil)
		}
		ss.push(&pending{kind: 'F', stmt: &prepStmt{stmts: []Statement{st}}, start: ss.now()})
		return ss.forward(typ, body)
	case 'X':
		_ = ss.forward(typ, body)
		_ = ss.uw.Flush()
		return io.EOF
	default:
		return &userError{"08P01", fmt.Sprintf("jumpgate: unexpected message type %q", typ), ErrBadMessage}
	}
}

func (ss *session) preparedLookup(name string) ([]string, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if k, ok := ss.sqlPrep[name]; ok {
		return k, true
	}
	if st, ok := ss.stmts[name]; ok && name != "" {
		return st.kinds(), true
	}
	return nil, false
}

// decide applies a decision; held statements wait here. It returns false
// and the user-facing reason when the statement must not run.
func (ss *session) decide(dec policy.Decision, sts []Statement, protocol string) (bool, string) {
	switch dec.Action {
	case policy.ActionBlock:
		ss.emitNow(audit.SQLBlocked, map[string]any{"text": ss.auditText(joinTexts(sts), protocol), "rule": dec.Rule, "reason": dec.Reason, "kinds": kindsOf(sts)})
		return false, "jumpgate: " + dec.Reason
	case policy.ActionReview:
		return ss.hold(dec, joinTexts(sts), protocol)
	}
	return true, ""
}

func kindsOf(sts []Statement) []string {
	var k []string
	for _, s := range sts {
		k = appendUniq(k, s.Kinds...)
	}
	slices.Sort(k)
	return k
}

func joinTexts(sts []Statement) string {
	t := make([]string, len(sts))
	for i, s := range sts {
		t[i] = s.Text
	}
	return strings.Join(t, "; ")
}

func (ss *session) hold(dec policy.Decision, text, protocol string) (bool, string) {
	if ss.f.cfg.Approvals == nil {
		return false, "jumpgate: " + dec.Reason + "; no approval queue is configured, so it is refused"
	}
	_ = ss.uw.Flush()
	ctx, cancel := context.WithTimeout(ss.ctx, ss.f.cfg.HoldTimeout)
	defer cancel()
	req, err := ss.f.cfg.Approvals.Create(ctx, storage.Request{Kind: storage.KindSQL, User: ss.s.User, Groups: ss.s.Groups,
		Target: ss.t.Name, What: ss.auditText(text, protocol), Reason: dec.Reason, Session: ss.s.ID}, ss.f.cfg.HoldTimeout)
	if err != nil {
		ss.log.Error("cannot hold statement", "err", err)
		return false, "jumpgate: " + dec.Reason + "; the hold could not be recorded, so it is refused"
	}
	ss.notice(fmt.Sprintf("jumpgate: %s; waiting for approval of request %s (jumpgate approve %s)", dec.Reason, req.ID, req.ID))
	got, err := ss.f.cfg.Approvals.Wait(ctx, req.ID)
	if err != nil {
		return false, fmt.Sprintf("jumpgate: request %s was not decided in time; the statement did not run", req.ID)
	}
	if got.Status != storage.StatusApproved {
		return false, fmt.Sprintf("jumpgate: request %s was %s; the statement did not run", req.ID, got.Status)
	}
	return true, ""
}

func (ss *session) notice(msg string) {
	ss.cwMu.Lock()
	defer ss.cwMu.Unlock()
	_ = writeMsg(ss.cw, 'N', errorBody("NOTICE", "00000", msg))
	_ = ss.cw.Flush()
}

// inject makes the upstream fail at this point of the stream, exactly where
// the refused message was, so transaction state and discard-until-Sync
// follow the server's own rules; the server loop replaces the upstream's
// error with reason.
func (ss *session) inject(kind byte, reason string, st *prepStmt) error {
	nb := make([]byte, 8)
	_, _ = rand.Read(nb)
	nonce := "jumpgate_refused_" + hex.EncodeToString(nb)
	ss.push(&pending{kind: kind, nonce: nonce, reason: reason, stmt: st})
	if kind == 'Q' {
		return ss.forward('Q', append([]byte(nonce), 0))
	}
	ss.discard = true
	return ss.forward('P', append(append([]byte{0}, nonce...), 0, 0, 0))
}

func (ss *session) query(q string, body []byte) error {
	sts, perr := ss.f.cache.classifyWith(&ss.tmpl, q, ss.preparedLookup, ss.f.cfg.LogLiterals)
	if perr != nil {
		ss.log.Debug("statement does not parse", "err", perr)
	}
	dec := decideAll(ss.rules().sql, sts)
	// The statement and its pending answer in one allocation.
	qa := &struct {
		p  pending
		ps prepStmt
	}{}
	ps := &qa.ps
	ps.stmts = sts
	if ok, reason := ss.decide(dec, sts, "simple"); !ok {
		return ss.inject('Q', reason, ps)
	}
	if reason := ss.prepareCopy(ps); reason != "" {
		return ss.inject('Q', reason, ps)
	}
	ss.mu.Lock()
	for _, s := range sts {
		if s.Prepare != "" {
			ss.sqlPrep[s.Prepare] = s.PreparedKinds
		}
		if s.Deallocate == "*" {
			ss.sqlPrep = map[string][]string{}
		} else if s.Deallocate != "" {
			delete(ss.sqlPrep, s.Deallocate)
		}
	}
	ss.mu.Unlock()
	qa.p = pending{kind: 'Q', stmt: ps, start: ss.now()}
	ss.push(&qa.p)
	return ss.forward('Q', body)
}

// decideAll is DecideAll without building the statement slice when no
// rule can match.
func decideAll(d policy.SQLDecider, sts []Statement) policy.Decision {
	if d.Empty() {
		return policy.Decision{Action: policy.ActionAllow}
	}
	return d.DecideAll(policyStatements(sts))
}

func policyStatements(sts []Statement) []policy.SQLStatement {
	out := make([]policy.SQLStatement, len(sts))
	for i, s := range sts {
		out[i] = s.SQLStatement
	}
	return out
}

func (ss *session) parse(pm parseMsg, body []byte) error {
	sts, _ := ss.f.cache.classifyWith(&ss.tmpl, pm.query, ss.preparedLookup, ss.f.cfg.LogLiterals)
	if len(sts) > 1 {
		return ss.inject('P', "jumpgate: cannot insert multiple commands into a prepared statement", nil)
	}
	dec := decideAll(ss.rules().sql, sts)
	qa := &struct {
		p  pending
		ps prepStmt
	}{}
	ps := &qa.ps
	ps.name, ps.stmts = pm.name, sts
	switch dec.Action {
	case policy.ActionBlock:
		_, reason := ss.decide(dec, sts, "extended")
		return ss.inject('P', reason, ps)
	case policy.ActionReview:
		ps.held = true // decided at each Execute
	}
	if reason := ss.prepareCopy(ps); reason != "" {
		return ss.inject('P', reason, ps)
	}
	ss.mu.Lock()
	ss.stmts[pm.name] = ps
	ss.mu.Unlock()
	qa.p = pending{kind: 'P', stmt: ps}
	ss.push(&qa.p)
	return ss.forward('P', body)
}

func (ss *session) execute(name string, body []byte) error {
	ss.mu.Lock()
	pt := ss.portals[name]
	ss.mu.Unlock()
	if pt == nil || pt.stmt == nil {
		// The server reports the missing portal or statement itself.
		ss.push(&pending{kind: 'E', portal: pt, start: ss.now()})
		return ss.forward('E', body)
	}
	if pt.stmt.held {
		dec := decideAll(ss.rules().sql, pt.stmt.stmts)
		if ok, reason := ss.decide(dec, pt.stmt.stmts, "extended"); !ok {
			return ss.inject('P', reason, pt.stmt)
		}
	}
	// A driver that cached the statement may never have described it:
	// describe the portal ourselves so its rows can be masked.
	if !ss.masks().Empty() {
		pt.stmt.mu.Lock()
		known := pt.stmt.fields != nil
		pt.stmt.mu.Unlock()
		pt.mu.Lock()
		known = known || pt.fields != nil
		pt.mu.Unlock()
		if !known {
			ss.push(&pending{kind: 'D', portal: pt, swallow: true})
			if err := ss.forward('D', append(append([]byte{'P'}, name...), 0)); err != nil {
				return err
			}
		}
	}
	ss.push(&pending{kind: 'E', portal: pt, stmt: pt.stmt, start: ss.now()})
	return ss.forward('E', body)
}

func (ss *session) masks() policy.MaskSet { return ss.rules().mask }

// prepareCopy computes the mask plan of a COPY TO STDOUT; a non-empty
// result refuses the statement.
func (ss *session) prepareCopy(ps *prepStmt) string {
	r := ss.rules()
	m := r.mask
	for _, s := range ps.stmts {
		if !s.CopyOut || m.Empty() {
			continue
		}
		if s.CopyBinary {
			return "jumpgate: binary COPY output cannot be masked; use text or csv format"
		}
		cp := &copyPlan{det: r.det, delim: '\t'}
		low := strings.ToLower(s.Text)
		if strings.Contains(low, "csv") {
			cp.csv, cp.delim = true, ','
		}
		if i := strings.Index(low, "delimiter"); i >= 0 {
			if j := strings.IndexByte(s.Text[i:], '\''); j >= 0 && i+j+1 < len(s.Text) {
				cp.delim = s.Text[i+j+1]
			}
		}
		if m.HasColumns() {
			ctx, cancel := context.WithTimeout(ss.ctx, ss.f.cfg.StartupTimeout)
			cat := ss.f.catalogFor(ss.t)
			switch {
			case s.CopyRelation != "":
				table, cols, err := cat.columnsOf(ctx, relationText(s.Text, s.CopyRelation))
				if err != nil {
					cancel()
					ss.log.Warn("copy mask plan", "err", err)
					return "jumpgate: cannot work out which columns of this COPY to mask, so it is refused"
				}
				if len(s.CopyColumns) > 0 {
					cols = s.CopyColumns
				}
				for _, c := range cols {
					cp.whole = append(cp.whole, m.MaskColumn(table, c))
				}
			default:
				fs, err := cat.describe(ctx, s.CopyQuery)
				if err != nil {
					cancel()
					ss.log.Warn("copy mask plan", "err", err)
					return "jumpgate: cannot work out which columns of this COPY to mask, so it is refused"
				}
				plan := ss.planFor(fs, &s)
				for _, c := range plan.cols {
					cp.whole = append(cp.whole, c.whole)
				}
			}
			cancel()
		}
		ps.copy = cp
	}
	return ""
}

// relationText returns the relation as written in a COPY (schema-qualified
// when it was), falling back to the bare name.
func relationText(text, rel string) string {
	tree, err := pg_query.Parse(text)
	if err == nil && len(tree.Stmts) == 1 {
		if c := tree.Stmts[0].Stmt.GetCopyStmt(); c != nil && c.Relation != nil {
			if c.Relation.Schemaname != "" {
				return quoteIdent(c.Relation.Schemaname) + "." + quoteIdent(c.Relation.Relname)
			}
			return quoteIdent(c.Relation.Relname)
		}
	}
	return quoteIdent(rel)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// planFor computes the masks of a result described by fs.
func (ss *session) planFor(fs []field, st *Statement) *rowPlan {
	r := ss.rules()
	if r.mask.Empty() {
		return nil
	}
	p, _, _ := ss.planFields(r, fs, derivedMask(r.mask, st))
	return p
}

// derivedMask reports whether a computed column of st's result must be
// masked whole: st names a masked column, or uses a masked table's row as a
// value.
func derivedMask(m policy.MaskSet, st *Statement) bool {
	derived := false
	if st != nil && m.HasColumns() {
		for _, c := range st.Columns {
			derived = derived || m.MaskColumnName(c)
		}
		if st.WholeRow {
			for _, r := range st.Relations {
				derived = derived || m.MaskTable(r)
			}
		}
	}
	return derived
}

// lastPlan is the mask plan of the last simple-protocol result, reused
// while the same statement shape returns the same RowDescription (server
// loop).
type lastPlan struct {
	rules   *sessRules
	body    []byte // the RowDescription
	derived bool
	at      time.Time // the oldest catalog entry it used
	plan    *rowPlan
}

// planForDesc is planFor for a RowDescription body, through lastPlan: a
// plan is reused only under the same rules, for the same description and
// derived-column decision, and while the catalog entries it used are fresh.
func (ss *session) planForDesc(body []byte, st *Statement, now time.Time) (*rowPlan, error) {
	r := ss.rules()
	if r.mask.Empty() {
		return nil, nil
	}
	derived := derivedMask(r.mask, st)
	lp := &ss.lastPlan
	if lp.plan != nil && lp.rules == r && lp.derived == derived && bytes.Equal(lp.body, body) &&
		!now.Before(lp.at) && now.Sub(lp.at) < ss.f.cfg.CatalogTTL {
		return lp.plan, nil
	}
	fs, err := decodeRowDesc(body)
	if err != nil {
		return nil, err
	}
	p, at, ok := ss.planFields(r, fs, derived)
	if ok && len(body) <= 4096 {
		if at.IsZero() {
			at = now
		}
		*lp = lastPlan{rules: r, body: append(lp.body[:0], body...), derived: derived, at: at, plan: p}
	}
	return p, nil
}

// planFields computes the plan of the result fs under rules r; at is the
// time of the oldest catalog entry used (zero: none), ok is false when a
// lookup failed (the plan masks those columns whole).
func (ss *session) planFields(r *sessRules, fs []field, derived bool) (plan *rowPlan, at time.Time, ok bool) {
	m := r.mask
	p := &rowPlan{cols: make([]colMask, len(fs)), det: r.det}
	ok = true
	var cat *catalog
	for i, f := range fs {
		c := colMask{typ: f.typeOID, format: f.format, patterns: p.det != nil}
		switch {
		case !m.HasColumns():
		case f.tableOID == 0:
			c.whole = derived
		default:
			if cat == nil {
				cat = ss.f.catalogFor(ss.t)
			}
			rel, ok := cat.cached(f.tableOID)
			var err error
			if !ok {
				ctx, cancel := context.WithTimeout(ss.ctx, ss.f.cfg.StartupTimeout)
				rel, err = cat.relation(ctx, f.tableOID)
				cancel()
			}
			if err != nil {
				ss.log.Warn("catalog lookup failed; masking the column", "err", err)
				c.whole, ok = true, false
				break
			}
			if at.IsZero() || rel.at.Before(at) {
				at = rel.at
			}
			col, found := rel.cols[f.attnum]
			c.whole = !found || m.MaskColumn(rel.name, col) || derived && !found
		}
		p.cols[i] = c
	}
	return p, at, ok
}

// ---------------------------------------------------------------- upstream → client

func (ss *session) front() *pending {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.qhead == len(ss.queue) {
		return nil
	}
	return ss.queue[ss.qhead]
}

func (ss *session) pop() *pending {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.popLocked()
}

func (ss *session) popLocked() *pending {
	if ss.qhead == len(ss.queue) {
		return nil
	}
	p := ss.queue[ss.qhead]
	ss.queue[ss.qhead] = nil
	ss.qhead++
	return p
}

// popUntilSync drops answers the server will not send after an error.
func (ss *session) popUntilSync() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for ss.qhead < len(ss.queue) {
		if k := ss.queue[ss.qhead].kind; k == 'S' || k == 'Q' || k == 'F' {
			break
		}
		ss.popLocked()
	}
}

// toClient writes one message to the client and, when the upstream has
// nothing more buffered (the next read would block), flushes what has
// accumulated: the client gets the whole answer in one write, as the server
// sent it.
func (ss *session) toClient(typ byte, body []byte, forward bool, r *msgReader) error {
	flush := r.r.Buffered() == 0
	if !forward && !flush {
		return nil
	}
	ss.cwMu.Lock()
	var err error
	if forward {
		err = writeMsg(ss.cw, typ, body)
	}
	if err == nil && flush {
		err = ss.cw.Flush()
	}
	ss.cwMu.Unlock()
	if flush || len(ss.auditBuf) >= auditBatch {
		// After the client's write, off the answer's path.
		ss.handOffAudit()
	}
	return err
}

func (ss *session) serverLoop() error {
	r := newMsgReader(ss.up, ss.f.cfg.MaxServerMessageSize)
	params := map[string]string{}
	defer ss.handOffAudit()
	for {
		typ, body, err := r.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				if ss.ctx.Err() == nil {
					ss.log.Warn("upstream closed the connection")
					ss.fatal("08006", "jumpgate: the database closed the connection")
				}
			} else {
				ss.log.Warn("bad upstream message", "err", err)
				ss.fatal("08P01", "jumpgate: the database sent an invalid message; the connection is closed")
			}
			return err
		}
		out := body
		forward := true
		switch typ {
		case 'D':
			if !ss.planKnown {
				ss.plan, ss.planKnown = ss.planForCurrent(), true
			}
			if ss.plan != nil {
				out, err = ss.plan.rewriteRow(ss.scratch, body)
				if err != nil {
					ss.fatal("08P01", "jumpgate: the database sent an invalid row")
					return err
				}
				if len(out) > 0 && &out[0] != &body[0] {
					ss.scratch = out
				}
			}
			ss.rowCount++
		case 'd':
			if ss.copyPlan != nil {
				out = ss.copyPlan.rewriteCopy(body)
			}
		case 'T':
			// Fields matter only for masking: without masks they are not
			// decoded (a described statement then has no fields, so an
			// Execute after a reload that adds masks describes it again).
			masks := !ss.masks().Empty()
			p := ss.front()
			var fs []field
			if masks && p != nil && p.kind == 'D' {
				if fs, err = decodeRowDesc(body); err != nil {
					ss.fatal("08P01", "jumpgate: the database sent an invalid row description")
					return err
				}
			}
			switch {
			case p != nil && p.kind == 'D':
				ss.pop()
				forward = !p.swallow
				if p.stmt != nil && fs != nil {
					p.stmt.mu.Lock()
					p.stmt.fields = fs
					p.stmt.mu.Unlock()
				}
				if p.portal != nil && fs != nil {
					p.portal.mu.Lock()
					p.portal.fields = fs
					p.portal.mu.Unlock()
				}
			case p != nil && p.kind == 'Q' && masks:
				var st *Statement
				if p.stmt != nil && p.idx < len(p.stmt.stmts) {
					st = &p.stmt.stmts[p.idx]
				}
				plan, err := ss.planForDesc(body, st, p.start)
				if err != nil {
					ss.fatal("08P01", "jumpgate: the database sent an invalid row description")
					return err
				}
				ss.plan, ss.planKnown = plan, true
			}
		case 'n':
			if p := ss.front(); p != nil && p.kind == 'D' {
				ss.pop()
				forward = !p.swallow
				if p.stmt != nil {
					p.stmt.mu.Lock()
					p.stmt.fields = []field{}
					p.stmt.mu.Unlock()
				}
				if p.portal != nil {
					p.portal.mu.Lock()
					p.portal.fields = []field{}
					p.portal.mu.Unlock()
				}
			}
		case '1', '2', '3':
			ss.pop()
		case 'H':
			if p := ss.front(); p != nil && p.stmt != nil {
				ss.copyPlan = p.stmt.copy
				if r := ss.rules(); p.stmt.copy == nil && !r.mask.Empty() {
					ss.copyPlan = &copyPlan{det: r.det, delim: '\t'}
				}
			}
		case 'W':
			ss.fatal("0A000", "jumpgate: COPY BOTH (replication) is not supported")
			return fmt.Errorf("postgres: copy both refused")
		case 'C', 'I', 's':
			p := ss.front()
			if p != nil {
				ss.complete(p, typ, body, "")
				if p.kind == 'E' {
					ss.pop()
				} else if p.kind == 'Q' {
					p.idx++
					p.start = ss.now()
				}
			}
			ss.rowCount = 0
			ss.plan, ss.planKnown, ss.copyPlan = nil, false, nil
		case 'E':
			p := ss.front()
			if p != nil && p.nonce != "" {
				if _, msg := errorMessage(body); strings.Contains(msg, p.nonce) {
					out = errorBody("ERROR", "42501", p.reason)
				}
			} else if p != nil {
				_, msg := errorMessage(body)
				ss.complete(p, typ, body, msg)
			}
			ss.rowCount = 0
			ss.plan, ss.planKnown, ss.copyPlan = nil, false, nil
			if p != nil && p.kind != 'Q' && p.kind != 'F' {
				ss.popUntilSync()
			}
		case 'Z':
			if p := ss.front(); p != nil && p.kind == 'F' {
				ss.complete(p, 'C', nil, "")
			}
			ss.pop()
			ss.rowCount = 0
			ss.plan, ss.planKnown, ss.copyPlan = nil, false, nil
			if err := ss.checkParams(params); err != nil {
				ss.fatal("0A000", "jumpgate: "+err.Error()+"; the connection is closed")
				return err
			}
		case 'S':
			k, rest, err := cstr(body)
			if err == nil {
				if v, _, err := cstr(rest); err == nil {
					params[k] = v
				}
			}
		case 'R', 'K', 'v':
			ss.fatal("08P01", "jumpgate: the database sent an unexpected message")
			return fmt.Errorf("postgres: unexpected upstream message %q", typ)
		}
		if err := ss.toClient(typ, out, forward, r); err != nil {
			return err
		}
	}
}

// planForCurrent computes the plan for rows of the Execute at the front.
func (ss *session) planForCurrent() *rowPlan {
	p := ss.front()
	if p == nil || p.kind != 'E' || p.portal == nil {
		if r := ss.rules(); !r.mask.Empty() {
			// Rows we cannot place: mask every value.
			return &rowPlan{det: r.det}
		}
		return nil
	}
	pt := p.portal
	pt.mu.Lock()
	fs := pt.fields
	pt.mu.Unlock()
	var st *Statement
	if pt.stmt != nil && len(pt.stmt.stmts) > 0 {
		st = &pt.stmt.stmts[0]
	}
	if fs == nil && pt.stmt != nil {
		pt.stmt.mu.Lock()
		sf, sp := pt.stmt.fields, pt.stmt.plan
		pt.stmt.mu.Unlock()
		r := ss.rules()
		if sf != nil && r.mask.Empty() {
			return nil
		}
		if sf != nil && sp.plan != nil && sp.rules == r && sameFields(sp.fields, sf) && slices.Equal(sp.formats, pt.formats) &&
			!p.start.Before(sp.at) && p.start.Sub(sp.at) < ss.f.cfg.CatalogTTL {
			return sp.plan
		}
		if sf != nil {
			fs = make([]field, len(sf))
			copy(fs, sf)
			for i := range fs {
				switch {
				case len(pt.formats) == 1:
					fs[i].format = pt.formats[0]
				case i < len(pt.formats):
					fs[i].format = pt.formats[i]
				default:
					fs[i].format = 0
				}
			}
			plan, at, ok := ss.planFields(r, fs, derivedMask(r.mask, st))
			if ok {
				if at.IsZero() {
					at = p.start
				}
				pt.stmt.mu.Lock()
				pt.stmt.plan = stmtPlan{rules: r, fields: sf, formats: pt.formats, at: at, plan: plan}
				pt.stmt.mu.Unlock()
			}
			return plan
		}
	}
	if fs == nil {
		if r := ss.rules(); !r.mask.Empty() {
			return &rowPlan{det: r.det}
		}
		return nil
	}
	return ss.planFor(fs, st)
}

// auditRec is one finished statement on its way to the audit log; the
// server loop only fills it in, the audit goroutine builds the event.
type auditRec struct {
	st        *Statement // nil: text and kinds below
	text      string
	kinds     []string
	protocol  string
	at        time.Time // when the statement finished
	dur       time.Duration
	rows      int64
	n         int64   // statement number within the session
	tag       tagInfo // tag.tag nil: none
	suspended bool
	errMsg    string
}

// tagInfo is a CommandComplete tag, boxed once for the audit events of a
// session: statements repeat their tags ("SELECT 1").
type tagInfo struct {
	tag     any // string
	rows    int64
	hasRows bool
}

// maxTags bounds a session's tag cache.
const maxTags = 256

// tagOf returns the tag of a CommandComplete body (server loop).
func (ss *session) tagOf(body []byte) tagInfo {
	b := body
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if ti, ok := ss.tags[string(b)]; ok {
		return ti
	}
	tag := string(b)
	ti := tagInfo{tag: tag}
	if i := strings.LastIndexByte(tag, ' '); i >= 0 {
		if n, err := strconv.ParseInt(tag[i+1:], 10, 64); err == nil {
			ti.rows, ti.hasRows = n, true
		}
	}
	if ss.tags == nil {
		ss.tags = map[string]tagInfo{}
	}
	if len(ss.tags) < maxTags {
		ss.tags[tag] = ti
	}
	return ti
}

func (ss *session) now() time.Time { return ss.f.cfg.Clock() }

// complete records one finished statement for the audit log; the server
// loop hands the records off after writing to the client.
func (ss *session) complete(p *pending, typ byte, body []byte, errMsg string) {
	rec := auditRec{protocol: "extended"}
	switch {
	case p.kind == 'Q' && p.stmt != nil && p.idx < len(p.stmt.stmts):
		rec.st, rec.protocol = &p.stmt.stmts[p.idx], "simple"
	case p.kind == 'F' && p.stmt != nil:
		rec.st, rec.protocol = &p.stmt.stmts[0], "function_call"
	case p.portal != nil && p.portal.stmt != nil && len(p.portal.stmt.stmts) > 0:
		rec.st = &p.portal.stmt.stmts[0]
	case p.kind == 'E':
		rec.text = "<unknown portal>"
	default:
		return
	}
	rec.at = ss.now()
	rec.dur, rec.rows, rec.errMsg, rec.suspended = rec.at.Sub(p.start), ss.rowCount, errMsg, typ == 's'
	if typ == 'C' && len(body) > 0 {
		rec.tag = ss.tagOf(body)
	}
	ss.stmtNo++
	rec.n = ss.stmtNo
	ss.auditBuf = append(ss.auditBuf, rec)
}

// auditBatch is the most records the server loop keeps before handing them
// off (it hands them off at every flush to the client anyway).
const auditBatch = 64

// sqlBatch is a session's finished statements in the forwarder's audit
// queue: the queue's writer builds their events and appends them with
// every other session's in one commit.
type sqlBatch struct {
	ss   *session
	recs []auditRec
}

// Events implements audit.Batch.
func (b *sqlBatch) Events(dst []audit.Event) []audit.Event {
	for _, rec := range b.recs {
		dst = append(dst, b.ss.event(rec))
	}
	return dst
}

// Done implements audit.Batch: a failed write closes the session (fail
// closed for every later statement). It runs in the queue's writer, so the
// session's client is told from a goroutine of the session's own.
func (b *sqlBatch) Done(err error) {
	ss := b.ss
	if err != nil {
		// The statements ran; their events are not in the chain. The
		// server log keeps what they were.
		for _, rec := range b.recs {
			e := ss.event(rec)
			ss.log.Error("audit event lost", "type", e.Type, "details", e.Details, "err", err)
		}
		ss.auditFailed(err)
	}
	clear(b.recs)
	b.recs = b.recs[:0]
	select {
	case ss.auditFree <- b:
	default:
	}
	ss.auditWG.Done()
}

// auditFailed closes the session after its events could not be written.
func (ss *session) auditFailed(err error) {
	ss.mu.Lock()
	ss.auditBad = err
	ss.mu.Unlock()
	if !ss.auditClosing.CompareAndSwap(false, true) {
		return
	}
	ss.auditWG.Add(1)
	go func() {
		defer ss.auditWG.Done()
		ss.log.Error("audit write failed; closing the session", "err", err)
		ss.fatal("58000", "jumpgate: the audit log cannot be written; the session is closed")
		ss.cancel(err)
	}()
}

// handOffAudit passes the finished statements to the forwarder's audit
// queue, one batch per flush to the client (server loop). It blocks only
// while the queue is full: the statements have run, so their events are
// queued even when the session is ending.
func (ss *session) handOffAudit() {
	if len(ss.auditBuf) == 0 {
		return
	}
	var b *sqlBatch
	select {
	case b = <-ss.auditFree:
	default:
		b = &sqlBatch{ss: ss}
	}
	b.recs, ss.auditBuf = ss.auditBuf, b.recs
	if ss.auditBuf == nil {
		ss.auditBuf = make([]auditRec, 0, min(2*len(b.recs), auditBatch))
	}
	ctx := context.WithoutCancel(ss.ctx)
	ss.auditWG.Add(1)
	if q := ss.f.audit.Get(); q == nil || q.Put(ctx, b) != nil {
		// The forwarder is closing (its queue is gone): write them here.
		_, err := forwarders.BatchEmitter(ss.f.cfg.Audit).EmitBatch(ctx, b.Events(nil))
		b.Done(err)
	}
}

// Audit detail values boxed once.
var (
	anySimple   any = "simple"
	anyExtended any = "extended"
	anyFunction any = "function_call"
	anyTrue     any = true
)

func protocolAny(p string) any {
	switch p {
	case "simple":
		return anySimple
	case "extended":
		return anyExtended
	case "function_call":
		return anyFunction
	}
	return p
}

// event builds the sql.query event of rec.
func (ss *session) event(rec auditRec) audit.Event {
	text, kinds, fp, norm := rec.text, rec.kinds, "", ""
	var bx *stmtBoxes
	if rec.st != nil {
		text, kinds, fp, norm, bx = rec.st.Text, rec.st.Kinds, rec.st.fingerprint, rec.st.normalized, rec.st.boxes
	}
	d := make(map[string]any, 8)
	d["protocol"] = protocolAny(rec.protocol)
	if bx != nil {
		d["kinds"] = bx.kinds
	} else {
		d["kinds"] = kinds
	}
	d["statement"] = rec.n
	d["duration_ms"] = float64(rec.dur.Microseconds()) / 1000
	d["rows"] = rec.rows
	if rec.tag.tag != nil {
		d["tag"] = rec.tag.tag
		if rec.tag.hasRows {
			d["rows"] = rec.tag.rows
		}
	}
	if rec.suspended {
		d["suspended"] = anyTrue
	}
	if rec.errMsg != "" {
		d["error"] = rec.errMsg
	}
	switch {
	case bx != nil && bx.fingerprint != nil:
		d["fingerprint"] = bx.fingerprint
	case fp != "":
		d["fingerprint"] = fp
	default:
		if f, err := pg_query.Fingerprint(text); err == nil {
			d["fingerprint"] = f
		}
	}
	switch {
	case norm != "" && !ss.f.cfg.LogLiterals && rec.protocol != "extended":
		if bx != nil && bx.normalized != nil {
			d["text"] = bx.normalized
		} else {
			d["text"] = norm
		}
	case bx != nil && bx.text != nil && (ss.f.cfg.LogLiterals || rec.protocol == "extended"):
		d["text"] = bx.text
	default:
		d["text"] = ss.auditText(text, rec.protocol)
	}
	return audit.Event{Time: rec.at, Type: audit.SQLQuery, User: ss.s.User, Target: ss.t.Name, Session: ss.s.ID, Source: ss.s.Source, Details: d}
}

// auditText keeps literals out of simple-protocol text unless configured.
func (ss *session) auditText(text, protocol string) string {
	if ss.f.cfg.LogLiterals || protocol == "extended" {
		return text
	}
	if n, err := pg_query.Normalize(text); err == nil {
		return n
	}
	return text
}

// emitNow writes an event synchronously (blocked statements).
func (ss *session) emitNow(typ string, d map[string]any) {
	if _, err := ss.f.cfg.Audit.Emit(ss.ctx, audit.Event{Type: typ, User: ss.s.User, Target: ss.t.Name, Session: ss.s.ID, Source: ss.s.Source, Details: d}); err != nil {
		ss.log.Error("audit write failed", "type", typ, "err", err)
		ss.mu.Lock()
		ss.auditBad = err
		ss.mu.Unlock()
	}
}
