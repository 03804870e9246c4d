package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestSchemaParity migrates a fresh SQLite database and a fresh PostgreSQL
// schema and checks that both migration sets define the same schema: tables,
// columns with their kind of type (up to dialect) and nullability, primary
// keys, unique constraints and indexes, other indexes and foreign keys. Each
// database is read from its own catalogue (pg_catalog/information_schema,
// SQLite's pragmas), never from the migration text. A difference that is
// inherent to SQLite is listed, with its reason, in sqliteOnly below; an entry
// there that no longer matches a difference fails the test too.
func TestSchemaParity(t *testing.T) {
	pgURL := testenv.PostgresURL()
	if pgURL == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_DATABASE_URL or DATABASE_URL must be set in CI: the PostgreSQL and SQLite schemas are compared")
		}
		t.Skip("TEST_DATABASE_URL/DATABASE_URL not set: cannot compare the PostgreSQL schema with SQLite's")
	}
	ctx := context.Background()

	lite := testenv.DB(t, testenv.Backend{Name: "embedded"})
	liteDB, err := lite.DB.DB()
	if err != nil {
		t.Fatal(err)
	}
	pg := testenv.DB(t, testenv.Backend{Name: "real", DatabaseURL: pgURL})
	pgDB, err := pg.DB.DB()
	if err != nil {
		t.Fatal(err)
	}

	liteFacts, err := sqliteSchema(ctx, liteDB)
	if err != nil {
		t.Fatalf("read the SQLite schema: %v", err)
	}
	pgFacts, err := postgresSchema(ctx, pgDB)
	if err != nil {
		t.Fatalf("read the PostgreSQL schema: %v", err)
	}
	if len(pgFacts) < 50 || len(liteFacts) < 50 {
		t.Fatalf("read too little of the schema (%d PostgreSQL facts, %d SQLite facts)", len(pgFacts), len(liteFacts))
	}
	if msg := compareSchemas(pgFacts, liteFacts, sqliteOnly()); msg != "" {
		t.Errorf("the PostgreSQL and SQLite migrations define different schemas:\n%s", msg)
	}
}

// TestCompareSchemasReportsDifferences checks that the comparison itself
// notices a difference, names it, and notices a stale allow-list entry.
func TestCompareSchemasReportsDifferences(t *testing.T) {
	pg := map[string]bool{"table a": true, "column a.x: integer NOT NULL": true, "index a (x)": true}
	lite := map[string]bool{"table a": true, "column a.x: integer NULL": true, "index a (x)": true}
	msg := compareSchemas(pg, lite, nil)
	for _, want := range []string{"only in PostgreSQL: column a.x: integer NOT NULL", "only in SQLite:     column a.x: integer NULL"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the report lacks %q:\n%s", want, msg)
		}
	}
	allowed := []difference{{postgres: "column a.x: integer NOT NULL", sqlite: "column a.x: integer NULL", why: "test"}}
	if msg := compareSchemas(pg, lite, allowed); msg != "" {
		t.Errorf("an allowed difference was reported:\n%s", msg)
	}
	if msg := compareSchemas(lite, lite, allowed); !strings.Contains(msg, "allowed difference no longer found") {
		t.Errorf("a stale allow-list entry was not reported:\n%s", msg)
	}
}

// difference is one allowed way the SQLite schema differs from PostgreSQL's:
// the fact PostgreSQL has and the fact SQLite has instead ("" for none).
type difference struct {
	postgres, sqlite, why string
}

// sqliteOnly lists the differences that are inherent to SQLite, each with its
// reason. Everything else must match.
func sqliteOnly() []difference {
	var ds []difference
	// SQLite lets a PRIMARY KEY column of a rowid table hold NULL unless it
	// is INTEGER PRIMARY KEY or declared NOT NULL (a documented quirk kept
	// for compatibility: https://www.sqlite.org/lang_createtable.html). These
	// single-column keys were written without NOT NULL; PostgreSQL implies it.
	// Rebuilding those tables (several are referenced by foreign keys) to add
	// NOT NULL would risk existing data for no gain: every store sets the key.
	// New keys should be declared NOT NULL PRIMARY KEY in both dialects.
	for _, c := range []struct{ col, kind string }{
		{"accounts.id", "text"},
		{"api_keys.id", "text"},
		{"billing_leases.name", "text"},
		{"billing_periods.period_start", "integer"},
		{"functions.id", "text"},
		{"invoices.id", "text"},
		{"stripe_customers.consumer_id", "text"},
		{"stripe_events.id", "text"},
		{"usage_batches.id", "text"},
		{"usage_flushes.id", "text"},
		{"vendors.id", "text"},
		{"wasm_modules.sha256", "text"},
	} {
		ds = append(ds, difference{
			postgres: fmt.Sprintf("column %s: %s NOT NULL", c.col, c.kind),
			sqlite:   fmt.Sprintf("column %s: %s NULL", c.col, c.kind),
			why:      "SQLite's PRIMARY KEY does not imply NOT NULL",
		})
	}
	return ds
}

// compareSchemas returns "" when PostgreSQL's and SQLite's facts match up to
// the allowed differences, else one line per difference.
func compareSchemas(pg, lite map[string]bool, allowed []difference) string {
	return diffFacts(pg, lite, "PostgreSQL", "SQLite", allowed)
}

// diffFacts returns "" when the two sets of facts match up to the allowed
// differences (a's fact in .postgres, b's in .sqlite), else one line per
// difference, sorted by fact so that a table's differences stand together.
func diffFacts(pg, lite map[string]bool, nameA, nameB string, allowed []difference) string {
	onlyPG, onlyLite := map[string]bool{}, map[string]bool{}
	for f := range pg {
		if !lite[f] {
			onlyPG[f] = true
		}
	}
	for f := range lite {
		if !pg[f] {
			onlyLite[f] = true
		}
	}
	var lines []string
	for _, d := range allowed {
		okPG := d.postgres == "" || onlyPG[d.postgres]
		okLite := d.sqlite == "" || onlyLite[d.sqlite]
		if !okPG || !okLite {
			lines = append(lines, fmt.Sprintf("allowed difference no longer found (remove it from sqliteOnly): %s %q, %s %q (%s)", nameA, d.postgres, nameB, d.sqlite, d.why))
			continue
		}
		delete(onlyPG, d.postgres)
		delete(onlyLite, d.sqlite)
	}
	type row struct{ fact, line string }
	var rows []row
	for f := range onlyPG {
		rows = append(rows, row{f, "only in " + nameA + ": " + f})
	}
	pad := strings.Repeat(" ", max(0, len(nameA)-len(nameB)))
	for f := range onlyLite {
		rows = append(rows, row{f, "only in " + nameB + ": " + pad + f})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].fact != rows[j].fact {
			return rows[i].fact < rows[j].fact
		}
		return rows[i].line < rows[j].line
	})
	for _, r := range rows {
		lines = append(lines, r.line)
	}
	return strings.Join(lines, "\n")
}

// gooseTable is goose's own bookkeeping table, which is not part of the schema.
const gooseTable = "goose_db_version"

// kind maps a declared column type of either dialect to a canonical kind.
// An unknown type is an error, so a new type gets a deliberate mapping.
func kind(declared string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(declared))
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = strings.TrimSpace(t[:i])
	}
	switch t {
	case "text", "varchar", "character varying", "char", "character", "uuid":
		return "text", nil
	case "integer", "int", "int2", "int4", "int8", "smallint", "bigint":
		return "integer", nil
	case "boolean", "bool":
		return "boolean", nil
	case "timestamp", "timestamptz", "timestamp with time zone", "timestamp without time zone", "datetime", "date":
		return "time", nil
	case "numeric", "decimal":
		return "decimal", nil
	case "real", "double precision", "float", "float4", "float8", "double":
		return "float", nil
	case "bytea", "blob":
		return "bytes", nil
	case "json", "jsonb":
		return "json", nil
	}
	return "", fmt.Errorf("no canonical kind for column type %q: add it to kind()", declared)
}

func nullability(notNull bool) string {
	if notNull {
		return "NOT NULL"
	}
	return "NULL"
}

// Facts are strings of these forms, the same for both dialects:
//
//	table T
//	column T.C: KIND NOT NULL|NULL
//	primary key T (C1, C2)            columns in key order
//	unique T (C1, C2)                 columns sorted: uniqueness is by set
//	index T (C1, C2)                  columns in index order
//	foreign key T (C) -> R (C) on delete ACTION
//
// Partial indexes get " where ..." appended (just the marker: predicates are
// written differently by each catalogue).

func indexFact(table string, unique, partial bool, cols []string) string {
	f := fmt.Sprintf("index %s (%s)", table, strings.Join(cols, ", "))
	if unique {
		s := append([]string(nil), cols...)
		sort.Strings(s)
		f = fmt.Sprintf("unique %s (%s)", table, strings.Join(s, ", "))
	}
	if partial {
		f += " where ..."
	}
	return f
}

func postgresSchema(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	facts := map[string]bool{}
	rows, err := db.QueryContext(ctx, `
		SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'NO'
		FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.table_name <> $1`, gooseTable)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var table, col, typ string
		var notNull bool
		if err := rows.Scan(&table, &col, &typ, &notNull); err != nil {
			rows.Close()
			return nil, err
		}
		k, err := kind(typ)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("%s.%s: %w", table, col, err)
		}
		facts["table "+table] = true
		facts[fmt.Sprintf("column %s.%s: %s %s", table, col, k, nullability(notNull))] = true
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}

	// Every primary key, unique constraint and index, with its key columns in
	// order (an expression column shows as "(expression)").
	rows, err = db.QueryContext(ctx, `
		SELECT t.relname, ix.indisprimary, ix.indisunique, ix.indpred IS NOT NULL,
			(SELECT string_agg(COALESCE(a.attname, '(expression)'), ',' ORDER BY k.ord)
			 FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
			 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum > 0
			 WHERE k.ord <= ix.indnkeyatts)
		FROM pg_index ix
		JOIN pg_class t ON t.oid = ix.indrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE n.nspname = current_schema() AND t.relname <> $1`, gooseTable)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var table, cols string
		var primary, unique, partial bool
		if err := rows.Scan(&table, &primary, &unique, &partial, &cols); err != nil {
			rows.Close()
			return nil, err
		}
		list := strings.Split(cols, ",")
		if primary {
			facts[fmt.Sprintf("primary key %s (%s)", table, strings.Join(list, ", "))] = true
			continue
		}
		facts[indexFact(table, unique, partial, list)] = true
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}

	rows, err = db.QueryContext(ctx, `
		SELECT t.relname, r.relname, con.confdeltype::text,
			(SELECT string_agg(a.attname, ',' ORDER BY k.ord)
			 FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
			 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
			(SELECT string_agg(a.attname, ',' ORDER BY k.ord)
			 FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
			 JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)
		FROM pg_constraint con
		JOIN pg_class t ON t.oid = con.conrelid
		JOIN pg_class r ON r.oid = con.confrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE con.contype = 'f' AND n.nspname = current_schema()`)
	if err != nil {
		return nil, err
	}
	onDelete := map[string]string{"a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}
	for rows.Next() {
		var table, ref, del, from, to string
		if err := rows.Scan(&table, &ref, &del, &from, &to); err != nil {
			rows.Close()
			return nil, err
		}
		facts[fmt.Sprintf("foreign key %s (%s) -> %s (%s) on delete %s", table,
			strings.ReplaceAll(from, ",", ", "), ref, strings.ReplaceAll(to, ",", ", "), onDelete[del])] = true
	}
	return facts, rows.Close()
}

func sqliteSchema(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	var tables []string
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> ?`, gooseTable)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, name)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}

	facts := map[string]bool{}
	pks := map[string][]string{}
	for _, table := range tables {
		facts["table "+table] = true
		// table_info: cid, name, type, notnull, dflt_value, pk (1-based
		// position in the primary key, 0 when not in it).
		var cols []struct {
			name string
			pk   int
		}
		err := query(ctx, db, fmt.Sprintf("PRAGMA table_info(%q)", table), func(r *sql.Rows) error {
			var cid, notNull, pk int
			var name, typ string
			var dflt sql.NullString
			if err := r.Scan(&cid, &name, &typ, &notNull, &dflt, &pk); err != nil {
				return err
			}
			k, err := kind(typ)
			if err != nil {
				return fmt.Errorf("%s.%s: %w", table, name, err)
			}
			facts[fmt.Sprintf("column %s.%s: %s %s", table, name, k, nullability(notNull != 0))] = true
			cols = append(cols, struct {
				name string
				pk   int
			}{name, pk})
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Slice(cols, func(i, j int) bool { return cols[i].pk < cols[j].pk })
		for _, c := range cols {
			if c.pk > 0 {
				pks[table] = append(pks[table], c.name)
			}
		}
		if len(pks[table]) > 0 {
			facts[fmt.Sprintf("primary key %s (%s)", table, strings.Join(pks[table], ", "))] = true
		}

		// index_list: seq, name, unique, origin (c: CREATE INDEX, u: UNIQUE
		// constraint, pk: PRIMARY KEY), partial. The primary key is read
		// from table_info above (an INTEGER PRIMARY KEY has no index).
		type index struct {
			name            string
			unique, partial bool
		}
		var idxs []index
		err = query(ctx, db, fmt.Sprintf("PRAGMA index_list(%q)", table), func(r *sql.Rows) error {
			var seq, unique, partial int
			var name, origin string
			if err := r.Scan(&seq, &name, &unique, &origin, &partial); err != nil {
				return err
			}
			if origin != "pk" {
				idxs = append(idxs, index{name, unique != 0, partial != 0})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, ix := range idxs {
			// index_info: seqno, cid, name (NULL for an expression).
			var keyCols []string
			err := query(ctx, db, fmt.Sprintf("PRAGMA index_info(%q)", ix.name), func(r *sql.Rows) error {
				var seqno, cid int
				var name sql.NullString
				if err := r.Scan(&seqno, &cid, &name); err != nil {
					return err
				}
				if !name.Valid {
					name.String = "(expression)"
				}
				keyCols = append(keyCols, name.String)
				return nil
			})
			if err != nil {
				return nil, err
			}
			facts[indexFact(table, ix.unique, ix.partial, keyCols)] = true
		}
	}

	// Foreign keys last: a REFERENCES clause without columns means the
	// referenced table's primary key.
	for _, table := range tables {
		type fk struct {
			ref, onDelete string
			from, to      []string
		}
		fks := map[int]*fk{}
		var ids []int
		err := query(ctx, db, fmt.Sprintf("PRAGMA foreign_key_list(%q)", table), func(r *sql.Rows) error {
			var id, seq int
			var ref, from, onUpdate, onDelete, match string
			var to sql.NullString
			if err := r.Scan(&id, &seq, &ref, &from, &to, &onUpdate, &onDelete, &match); err != nil {
				return err
			}
			f := fks[id]
			if f == nil {
				f = &fk{ref: ref, onDelete: strings.ToLower(onDelete)}
				fks[id] = f
				ids = append(ids, id)
			}
			f.from = append(f.from, from)
			if to.Valid && to.String != "" {
				f.to = append(f.to, to.String)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			f := fks[id]
			if len(f.to) == 0 {
				f.to = pks[f.ref]
			}
			facts[fmt.Sprintf("foreign key %s (%s) -> %s (%s) on delete %s", table,
				strings.Join(f.from, ", "), f.ref, strings.Join(f.to, ", "), f.onDelete)] = true
		}
	}
	return facts, nil
}

// query runs q and calls scan for each row.
func query(ctx context.Context, db *sql.DB, q string, scan func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return rows.Err()
}
