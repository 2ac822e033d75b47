// Package static exports ConsentGate's static files: the demo website
// (and, with the banner, its scripts and styles) as an embedded file system.
package static

import "embed"

// FS holds the static files.
//
//go:embed demo
var FS embed.FS
