package gateway_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// driverPackage matches the import paths of database and Redis drivers.
var driverPackage = regexp.MustCompile(`gorm|pgx|sqlite|go-redis`)

// TestGatewayLinksNoDriver keeps the hot path free of every store: the
// gateway speaks of routes, calls and admissions through domain types and
// small interfaces, and only cmd/fnmarket picks the drivers.
func TestGatewayLinksNoDriver(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool to list dependencies with")
		}
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !contains(deps, "github.com/fnmarket/fnmarket/gateway") {
		t.Fatalf("go list -deps printed no plausible dependency list:\n%s", out)
	}
	for _, p := range deps {
		if driverPackage.MatchString(p) {
			t.Errorf("gateway depends on driver package %s", p)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
