package postgres

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jumpgate/jumpgate/policy"
)

// Statement is one classified SQL statement.
type Statement struct {
	// Text is the statement's own text, split out of a multi-statement string.
	Text string
	policy.SQLStatement
	// Prepare and Deallocate name the prepared statement a PREPARE creates
	// or a DEALLOCATE removes ("*" for DEALLOCATE ALL).
	Prepare, Deallocate string
	// PreparedKinds are the kinds of the statement a PREPARE creates.
	PreparedKinds []string
	// Columns are the column names referenced anywhere (lower case) and
	// Relations the relation names and aliases; WholeRow is set when a
	// relation is used as a value (row_to_json(c), c::text).
	Columns   []string
	Relations []string
	WholeRow  bool
	// CopyOut is set for COPY ... TO STDOUT; CopyBinary for FORMAT binary.
	CopyOut, CopyBinary bool
	// CopyRelation and CopyColumns describe COPY table (cols) TO STDOUT;
	// CopyQuery is the text of COPY (query) TO STDOUT.
	CopyRelation string
	CopyColumns  []string
	CopyQuery    string

	// fingerprint and normalized (Text with constants replaced) are set on
	// statements from the cache; empty means compute when needed.
	fingerprint, normalized string
	// boxes are the audit detail values of a cached statement, boxed once.
	boxes *stmtBoxes
}

// stmtBoxes are a cached statement's audit detail values as interface
// values, so events of a repeated statement do not box them again; nil
// fields are not known.
type stmtBoxes struct {
	kinds, fingerprint, normalized, text any
}

// PreparedLookup returns the kinds of a prepared statement by name.
type PreparedLookup func(name string) ([]string, bool)

// dangerous functions and the kind they add.
var funcKinds = map[string]string{
	"set_config": "set", "pg_read_file": "superuser", "pg_read_binary_file": "superuser",
	"pg_ls_dir": "superuser", "pg_stat_file": "superuser", "lo_import": "superuser", "lo_export": "superuser",
	"pg_terminate_backend": "superuser", "pg_cancel_backend": "superuser", "pg_reload_conf": "superuser",
	"pg_rotate_logfile": "superuser", "pg_promote": "superuser", "dblink": "superuser", "dblink_exec": "superuser",
	"pg_file_write": "superuser", "pg_switch_wal": "superuser", "query_to_xml": "superuser",
}

// writeKinds are the kinds that make a statement a "write".
var writeKinds = []string{"insert", "update", "delete", "merge", "copy_from", "copy_program", "ddl", "truncate",
	"grant", "revoke", "alter_role", "create_role", "drop_role", "do", "call", "vacuum", "lock", "superuser", "function_call", "select_into"}

// Classify splits query into statements and classifies each with the real
// PostgreSQL parser. A query that does not parse yields one opaque statement
// and the parse error.
func Classify(query string, prepared PreparedLookup) ([]Statement, error) {
	sts, _, err := classify(query, prepared)
	return sts, err
}

// span is where a statement sits in the query string.
type span struct{ start, end int }

// classInfo is what the statement cache needs to know about how a
// classification was reached.
type classInfo struct {
	// literal: some decision read a constant's value (option values, COPY,
	// function and DO bodies); session: it read session state (EXECUTE of
	// a prepared statement).
	literal, session bool
	// intConsts are the locations of the integer constants (A_Const)
	// anywhere in the tree.
	intConsts []int
	spans     []span
}

// errNUL is the parse error of a text with a NUL byte: the parser (C)
// would stop reading at it and miss what follows.
var errNUL = errors.New("postgres: NUL byte in the query text")

func classify(query string, prepared PreparedLookup) ([]Statement, classInfo, error) {
	var info classInfo
	if strings.IndexByte(query, 0) >= 0 {
		return []Statement{{Text: query, SQLStatement: policy.SQLStatement{Kinds: []string{"other"}, Opaque: true}}}, info, errNUL
	}
	tree, err := pg_query.Parse(query)
	if err != nil {
		return []Statement{{Text: query, SQLStatement: policy.SQLStatement{Kinds: []string{"other"}, Opaque: true}}}, info, err
	}
	out := make([]Statement, 0, len(tree.Stmts))
	for _, rs := range tree.Stmts {
		sp := span{0, len(query)}
		start, n := int(rs.StmtLocation), int(rs.StmtLen)
		if start >= 0 && start <= len(query) {
			if n == 0 || start+n > len(query) {
				sp = span{start, len(query)}
			} else {
				sp = span{start, start + n}
			}
		}
		st := Statement{Text: strings.TrimSpace(query[sp.start:sp.end])}
		c := &classifier{st: &st, prepared: prepared, info: &info}
		c.top(rs.Stmt)
		c.finish()
		out = append(out, st)
		info.spans = append(info.spans, sp)
	}
	if len(out) == 0 {
		out = append(out, Statement{Text: query, SQLStatement: policy.SQLStatement{Kinds: []string{"empty"}}})
		info.spans = append(info.spans, span{0, len(query)})
	}
	return out, info, nil
}

// pgQueryVersion is the parse tree version Deparse expects.
var pgQueryVersion = func() int32 {
	t, err := pg_query.Parse("SELECT 1")
	if err != nil {
		return 0
	}
	return t.Version
}()

type classifier struct {
	st       *Statement
	prepared PreparedLookup
	depth    int
	bare     []string // single-name column references
	info     *classInfo
}

// literal records that a decision read a constant's value.
func (c *classifier) literal() {
	if c.info != nil {
		c.info.literal = true
	}
}

func (c *classifier) add(kinds ...string) {
	for _, k := range kinds {
		if !slices.Contains(c.st.Kinds, k) {
			c.st.Kinds = append(c.st.Kinds, k)
		}
	}
}

func (c *classifier) finish() {
	for _, b := range c.bare {
		if slices.Contains(c.st.Relations, b) {
			c.st.WholeRow = true
		}
	}
	for _, k := range writeKinds {
		if slices.Contains(c.st.Kinds, k) {
			c.add("write")
			break
		}
	}
	if len(c.st.Kinds) == 0 {
		c.add("other")
	}
	slices.Sort(c.st.Kinds)
}

func (c *classifier) top(n *pg_query.Node) {
	if n == nil {
		return
	}
	c.walk(n.ProtoReflect())
}

// walk visits every message in the tree; statements nested anywhere
// (writable CTEs, EXPLAIN ANALYZE, PREPARE, rule actions) add their kinds.
func (c *classifier) walk(m protoreflect.Message) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > 2000 {
		c.st.Opaque = true
		return
	}
	if !c.visit(m.Interface()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.walk(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			c.walk(v.Message())
		}
		return true
	})
}

func defName(opts []*pg_query.Node, name string) (*pg_query.DefElem, bool) {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && d.Defname == name {
			return d, true
		}
	}
	return nil, false
}

func defTrue(d *pg_query.DefElem) bool {
	if d.Arg == nil {
		return true
	}
	if b := d.Arg.GetBoolean(); b != nil {
		return b.Boolval
	}
	if s := d.Arg.GetString_(); s != nil {
		v := strings.ToLower(s.Sval)
		return v == "true" || v == "on" || v == "1" || v == "yes"
	}
	if i := d.Arg.GetInteger(); i != nil {
		return i.Ival != 0
	}
	return true
}

func strVal(n *pg_query.Node) string {
	if s := n.GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

// visit handles one node; it returns false when the children were handled.
func (c *classifier) visit(v any) bool {
	switch n := v.(type) {
	case *pg_query.A_Const:
		if n.GetIval() != nil && c.info != nil {
			c.info.intConsts = append(c.info.intConsts, int(n.Location))
		}
	case *pg_query.SelectStmt:
		c.add("select")
		if n.IntoClause != nil {
			c.add("create", "ddl", "select_into")
		}
	case *pg_query.InsertStmt:
		c.add("insert")
	case *pg_query.UpdateStmt:
		c.add("update")
		if n.WhereClause == nil {
			c.add("update_without_where")
		}
	case *pg_query.DeleteStmt:
		c.add("delete")
		if n.WhereClause == nil {
			c.add("delete_without_where")
		}
	case *pg_query.MergeStmt:
		c.add("merge")
	case *pg_query.MergeWhenClause:
		// MERGE ... WHEN MATCHED THEN DELETE deletes: a rule on delete or
		// update must see it. The ON condition counts as a WHERE.
		switch n.CommandType {
		case pg_query.CmdType_CMD_DELETE:
			c.add("delete")
		case pg_query.CmdType_CMD_UPDATE:
			c.add("update")
		case pg_query.CmdType_CMD_INSERT:
			c.add("insert")
		}
	case *pg_query.CopyStmt:
		c.literal()
		switch {
		case n.IsProgram:
			c.add("copy_program", "superuser")
		case n.Filename != "":
			c.add("superuser")
		}
		if n.IsFrom {
			c.add("copy_from", "insert")
		} else {
			c.add("copy_to")
			if n.Filename == "" && !n.IsProgram {
				c.st.CopyOut = true
			}
		}
		if d, ok := defName(n.Options, "format"); ok && strings.EqualFold(strVal(d.Arg), "binary") {
			c.st.CopyBinary = true
		}
		if n.Relation != nil {
			c.st.CopyRelation = strings.ToLower(n.Relation.Relname)
			c.st.Relations = appendUniq(c.st.Relations, c.st.CopyRelation)
			for _, a := range n.Attlist {
				c.st.CopyColumns = append(c.st.CopyColumns, strings.ToLower(strVal(a)))
			}
		}
		if n.Query != nil {
			if q, err := pg_query.Deparse(&pg_query.ParseResult{Version: pgQueryVersion, Stmts: []*pg_query.RawStmt{{Stmt: n.Query}}}); err == nil {
				c.st.CopyQuery = q
			} else {
				c.st.Opaque = true
			}
		}
	case *pg_query.ExplainStmt:
		c.literal()
		if d, ok := defName(n.Options, "analyze"); ok && defTrue(d) {
			c.add("explain_analyze")
		} else {
			c.add("other")
		}
	case *pg_query.TruncateStmt:
		c.add("truncate")
	case *pg_query.DropStmt, *pg_query.DropdbStmt, *pg_query.DropOwnedStmt, *pg_query.DropTableSpaceStmt,
		*pg_query.DropSubscriptionStmt, *pg_query.DropUserMappingStmt:
		c.add("drop", "ddl")
	case *pg_query.DropRoleStmt:
		c.add("drop_role", "drop", "ddl")
	case *pg_query.CreateRoleStmt:
		c.add("create_role", "ddl")
		c.roleOptions(n.Options)
	case *pg_query.AlterRoleStmt:
		c.add("alter_role", "alter", "ddl")
		c.roleOptions(n.Options)
	case *pg_query.AlterRoleSetStmt:
		c.add("alter_role", "alter", "ddl")
	case *pg_query.RenameStmt:
		c.add("alter", "ddl")
		if n.RenameType == pg_query.ObjectType_OBJECT_ROLE {
			c.add("alter_role")
		}
	case *pg_query.GrantStmt:
		c.grant(n.IsGrant)
	case *pg_query.GrantRoleStmt:
		c.grant(n.IsGrant)
		c.add("alter_role")
	case *pg_query.DoStmt:
		c.literal()
		c.add("do")
		if d, ok := defName(n.Args, "as"); ok {
			c.plpgsql(strVal(d.Arg))
		}
	case *pg_query.CallStmt:
		c.add("call")
	case *pg_query.ExecuteStmt:
		c.add("execute")
		c.resolve(n.Name)
	case *pg_query.PrepareStmt:
		c.add("prepare")
		c.st.Prepare = n.Name
		inner := &Statement{}
		ic := &classifier{st: inner, prepared: c.prepared, depth: c.depth, info: c.info}
		ic.top(n.Query)
		ic.finish()
		c.st.PreparedKinds = inner.Kinds
		c.st.Opaque = c.st.Opaque || inner.Opaque
		c.add(inner.Kinds...)
		c.st.Columns = appendUniq(c.st.Columns, inner.Columns...)
		c.st.Relations = appendUniq(c.st.Relations, inner.Relations...)
		return false
	case *pg_query.DeallocateStmt:
		c.add("prepare")
		c.st.Deallocate = n.Name
		if n.Isall || n.Name == "" {
			c.st.Deallocate = "*"
		}
	case *pg_query.VariableSetStmt:
		c.add("set")
		switch strings.ToLower(n.Name) {
		case "role", "session_authorization", "session_replication_role", "standard_conforming_strings", "client_encoding":
			c.add("superuser")
		}
	case *pg_query.TransactionStmt:
		c.add("transaction")
	case *pg_query.VacuumStmt:
		c.add("vacuum")
	case *pg_query.LockStmt:
		c.add("lock")
	case *pg_query.ListenStmt, *pg_query.UnlistenStmt:
		c.add("listen")
	case *pg_query.NotifyStmt:
		c.add("notify")
	case *pg_query.LoadStmt:
		c.add("load", "superuser")
	case *pg_query.AlterSystemStmt:
		c.add("superuser", "alter", "ddl")
	case *pg_query.CheckPointStmt:
		c.add("superuser")
	case *pg_query.CreateFunctionStmt:
		c.literal()
		c.add("create", "ddl")
		if n.IsProcedure {
			c.add("call")
		}
		lang := "sql"
		if d, ok := defName(n.Options, "language"); ok {
			lang = strings.ToLower(strVal(d.Arg))
		}
		if d, ok := defName(n.Options, "as"); ok {
			if l := d.Arg.GetList(); l != nil && len(l.Items) > 0 {
				body := strVal(l.Items[0])
				switch lang {
				case "sql":
					c.nested(body)
				case "plpgsql":
					c.plpgsql(body)
				default:
					// A body in another language (plperl, plpython,
					// C) cannot be read: like dynamic SQL it is opaque,
					// so any block rule blocks it.
					c.add("superuser")
					c.st.Opaque = true
				}
			}
		}
	case *pg_query.CreateTrigStmt, *pg_query.RuleStmt, *pg_query.ViewStmt, *pg_query.CreateTableAsStmt,
		*pg_query.IndexStmt, *pg_query.CreateStmt, *pg_query.CreateSchemaStmt, *pg_query.CreateSeqStmt,
		*pg_query.CreateExtensionStmt, *pg_query.CreateEventTrigStmt, *pg_query.CreatedbStmt, *pg_query.DefineStmt,
		*pg_query.CompositeTypeStmt, *pg_query.CreateEnumStmt, *pg_query.CreateDomainStmt, *pg_query.CreatePolicyStmt,
		*pg_query.CreateForeignTableStmt, *pg_query.CreateCastStmt, *pg_query.CreatePLangStmt, *pg_query.CreateTableSpaceStmt,
		*pg_query.CreateFdwStmt, *pg_query.CreateForeignServerStmt, *pg_query.CreateUserMappingStmt, *pg_query.CreatePublicationStmt,
		*pg_query.CreateSubscriptionStmt, *pg_query.CreateConversionStmt, *pg_query.CreateOpClassStmt, *pg_query.CreateStatsStmt,
		*pg_query.CreateTransformStmt, *pg_query.CreateAmStmt, *pg_query.CreateRangeStmt:
		c.add("create", "ddl")
		if _, ok := n.(*pg_query.CreateEventTrigStmt); ok {
			c.add("superuser")
		}
	case *pg_query.CommentStmt, *pg_query.SecLabelStmt, *pg_query.ReassignOwnedStmt, *pg_query.AlterDefaultPrivilegesStmt,
		*pg_query.RefreshMatViewStmt, *pg_query.ReindexStmt, *pg_query.ClusterStmt, *pg_query.AlterOwnerStmt,
		*pg_query.AlterObjectSchemaStmt, *pg_query.AlterTableStmt, *pg_query.AlterFunctionStmt, *pg_query.AlterSeqStmt,
		*pg_query.AlterDomainStmt, *pg_query.AlterEnumStmt, *pg_query.AlterExtensionStmt, *pg_query.AlterDatabaseStmt,
		*pg_query.AlterDatabaseSetStmt, *pg_query.AlterPolicyStmt, *pg_query.AlterTableSpaceOptionsStmt,
		*pg_query.AlterEventTrigStmt, *pg_query.AlterPublicationStmt, *pg_query.AlterSubscriptionStmt,
		*pg_query.AlterFdwStmt, *pg_query.AlterForeignServerStmt, *pg_query.AlterTypeStmt, *pg_query.AlterOperatorStmt,
		*pg_query.AlterStatsStmt, *pg_query.AlterTSConfigurationStmt, *pg_query.AlterTSDictionaryStmt,
		*pg_query.AlterCollationStmt, *pg_query.AlterObjectDependsStmt, *pg_query.AlterTableMoveAllStmt,
		*pg_query.AlterUserMappingStmt, *pg_query.AlterExtensionContentsStmt, *pg_query.AlterOpFamilyStmt,
		*pg_query.ImportForeignSchemaStmt, *pg_query.AlterDatabaseRefreshCollStmt:
		c.add("alter", "ddl")
	case *pg_query.FuncCall:
		if len(n.Funcname) > 0 {
			name := strings.ToLower(strVal(n.Funcname[len(n.Funcname)-1]))
			if k, ok := funcKinds[name]; ok {
				c.add(k)
			}
		}
	case *pg_query.ColumnRef:
		switch len(n.Fields) {
		case 1:
			if s := strVal(n.Fields[0]); s != "" {
				// A bare name may be a column or a whole-row reference.
				c.st.Columns = appendUniq(c.st.Columns, strings.ToLower(s))
				c.bare = append(c.bare, strings.ToLower(s))
			}
		default:
			last := n.Fields[len(n.Fields)-1]
			if last.GetAStar() != nil {
				c.st.WholeRow = true
			} else {
				c.st.Columns = appendUniq(c.st.Columns, strings.ToLower(strVal(last)))
			}
		}
	case *pg_query.RangeVar:
		c.st.Relations = appendUniq(c.st.Relations, strings.ToLower(n.Relname))
		if n.Alias != nil {
			c.st.Relations = appendUniq(c.st.Relations, strings.ToLower(n.Alias.Aliasname))
		}
	case *pg_query.Alias:
		c.st.Relations = appendUniq(c.st.Relations, strings.ToLower(n.Aliasname))
	}
	return true
}

func (c *classifier) grant(isGrant bool) {
	if isGrant {
		c.add("grant")
	} else {
		c.add("revoke")
	}
}

func (c *classifier) roleOptions(opts []*pg_query.Node) {
	c.literal()
	for _, o := range []string{"superuser", "createrole", "replication", "bypassrls"} {
		if d, ok := defName(opts, o); ok && defTrue(d) {
			c.add("superuser")
		}
	}
}

// resolve adds the kinds of the prepared statement EXECUTE runs.
func (c *classifier) resolve(name string) {
	if c.info != nil {
		c.info.session = true
	}
	if c.prepared != nil {
		if kinds, ok := c.prepared(name); ok {
			c.add(kinds...)
			return
		}
	}
	c.st.Opaque = true
}

// nested classifies SQL held in a string (SQL function bodies).
func (c *classifier) nested(body string) {
	if c.depth > 50 {
		c.st.Opaque = true
		return
	}
	tree, err := pg_query.Parse(body)
	if err != nil {
		c.st.Opaque = true
		return
	}
	for _, rs := range tree.Stmts {
		c.top(rs.Stmt)
	}
}

// plpgsql classifies the SQL statements of a PL/pgSQL body (DO blocks,
// functions). Dynamic SQL (EXECUTE of a string built at run time) cannot be
// seen: it makes the statement opaque.
func (c *classifier) plpgsql(body string) {
	tag := "$jgbody$"
	for strings.Contains(body, tag) {
		tag = "$jg" + tag[1:]
	}
	js, err := pg_query.ParsePlPgSqlToJSON("CREATE FUNCTION jumpgate_do() RETURNS void LANGUAGE plpgsql AS " + tag + body + tag)
	if err != nil {
		c.st.Opaque = true
		return
	}
	var v any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		c.st.Opaque = true
		return
	}
	c.plWalk(v)
}

func (c *classifier) plWalk(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors", "PLpgSQL_stmt_open":
				if k != "PLpgSQL_stmt_open" || hasKey(e, "dynquery") {
					c.st.Opaque = true
				}
			case "query":
				if q, ok := e.(string); ok {
					c.plQuery(q)
				}
			}
			c.plWalk(e)
		}
	case []any:
		for _, e := range x {
			c.plWalk(e)
		}
	}
}

func hasKey(v any, k string) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[k]
	return ok
}

// plQuery classifies one embedded query; expressions ("x > 1") are tried
// as SELECT targets.
func (c *classifier) plQuery(q string) {
	if tree, err := pg_query.Parse(q); err == nil {
		for _, rs := range tree.Stmts {
			c.top(rs.Stmt)
		}
		return
	}
	if tree, err := pg_query.Parse("SELECT " + q); err == nil {
		for _, rs := range tree.Stmts {
			c.top(rs.Stmt)
		}
		return
	}
	c.st.Opaque = true
}

func appendUniq(dst []string, src ...string) []string {
	for _, s := range src {
		if s != "" && !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}
