// Package examples holds example fnmarket functions for GOOS=wasip1
// GOARCH=wasm, one main package per directory, and the vendor guide
// README.md. The functions' files carry a wasip1 build constraint, so the
// host build skips them; package wasm's tests build and run them.
package examples
