// Package apiclient is a Go client of the portal API generated with
// oapi-codegen from the OpenAPI document the API serves (api.OpenAPI). It
// exists to prove that document is good enough for generated clients: its
// tests regenerate it and drive the README's first session with it.
package apiclient

//go:generate go test -run TestGeneratedClientIsCurrent -update .
