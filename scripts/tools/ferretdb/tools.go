//go:build tools

// Package tools pins FerretDB so that scripts/ferretdb.sh can build it from the Go module proxy.
package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
