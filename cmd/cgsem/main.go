package main

import (
	"context"
	"os"

	_ "github.com/cgsem/cgsem/drivers/all"
	_ "github.com/cgsem/cgsem/drivers/fake"
	"github.com/cgsem/cgsem/registry"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, registry.Default))
}
