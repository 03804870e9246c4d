// Package catalogstore keeps the catalog's vendors, functions and versions in
// the relational database (gorm over SQLite or PostgreSQL). Its rows are
// converted to catalog's domain types at the boundary, so packages that only
// need those types (the gateway) link no database driver.
package catalogstore
