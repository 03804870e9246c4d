// Command fnmarket runs the function marketplace: portal API, web pages,
// gateway and billing worker in one process (serve), or each part alone for
// scaling out (api, gateway, worker), plus migrate and bill.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fnmarket:", err)
		os.Exit(1)
	}
}
