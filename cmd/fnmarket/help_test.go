package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestHelpDescribesEveryCommandAndFlag: `fnmarket help` names every command
// run accepts, and `fnmarket <command> -h` describes every flag that command
// takes, exits 0 and lists no flag the command ignores.
func TestHelpDescribesEveryCommandAndFlag(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "" }
	var help bytes.Buffer
	if err := run(context.Background(), []string{"fnmarket", "help"}, getenv, &help, io.Discard); err != nil {
		t.Fatalf("fnmarket help: %v", err)
	}
	for _, c := range commandList() {
		if !regexp.MustCompile(`(?m)^  ` + c.name + ` +\S`).MatchString(help.String()) {
			t.Errorf("fnmarket help does not describe %q:\n%s", c.name, help.String())
		}
	}
	// Every variable config.go reads is described by help (as a flag's
	// default or in the environment-only list) and by the README's
	// configuration table.
	src, err := os.ReadFile("config.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	all := help.String()
	for _, name := range []string{"serve", "bill", "invoice"} {
		var out bytes.Buffer
		_ = run(context.Background(), []string{"fnmarket", name, "-h"}, getenv, &out, &out)
		all += out.String()
	}
	vars := regexp.MustCompile(`env\("([A-Z_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(vars) < 20 {
		t.Fatalf("found only %d variables in config.go", len(vars))
	}
	for _, m := range vars {
		if !strings.Contains(all, m[1]) {
			t.Errorf("fnmarket help does not mention %s", m[1])
		}
		if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("README's configuration does not mention %s", m[1])
		}
	}

	// Every command help lists must be one run accepts, and vice versa.
	accepted := []string{"serve", "api", "gateway", "worker", "migrate", "bill", "invoice", "probe", "help"}
	if got := len(commandList()); got != len(accepted) {
		t.Errorf("help lists %d commands, run accepts %d", got, len(accepted))
	}
	for _, name := range accepted {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{"fnmarket", name, "-h"}, getenv, &out, &errOut); err != nil {
			t.Errorf("fnmarket %s -h: %v", name, err)
			continue
		}
		text := out.String() + errOut.String()
		if !strings.Contains(text, "fnmarket "+name) {
			t.Errorf("fnmarket %s -h does not show its usage line:\n%s", name, text)
		}
		if name == "probe" || name == "help" {
			continue
		}
		fs := flagsOf(t, name)
		n := 0
		fs.VisitAll(func(f *flag.Flag) {
			n++
			// PrintDefaults writes "  -name ..." and the usage on the next line.
			m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f.Name) + `\b.*\n\s+(\S.*)$`).FindStringSubmatch(text)
			if m == nil || len(m[1]) < 10 {
				t.Errorf("fnmarket %s -h does not describe --%s:\n%s", name, f.Name, text)
			}
		})
		if got := strings.Count(text, "\n  -"); got != n {
			t.Errorf("fnmarket %s -h lists %d flags, the command takes %d", name, got, n)
		}
	}

	// Flags belong to their command: bill's --period means nothing to serve.
	if err := run(context.Background(), []string{"fnmarket", "serve", "--period", "2026-01"}, getenv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "period") {
		t.Errorf("serve --period: %v, want an unknown-flag error", err)
	}
	var one bytes.Buffer
	if err := run(context.Background(), []string{"fnmarket", "help", "bill"}, getenv, &one, io.Discard); err != nil || !strings.Contains(one.String(), "-period") {
		t.Errorf("fnmarket help bill: %v\n%s", err, one.String())
	}
}

// flagsOf is the flag set parseConfig uses for command name.
func flagsOf(t *testing.T, name string) *flag.FlagSet {
	t.Helper()
	return flagSet(name, &config{}, func(string) string { return "" })
}
