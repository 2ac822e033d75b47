// Command consentgate is Caddy with its standard modules and ConsentGate's.
package main

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// ConsentGate's modules.
	_ "github.com/consentgate/consentgate/module"
)

func main() {
	// Help and usage lines name this binary, not "caddy".
	caddy.CustomBinaryName = "consentgate"
	caddycmd.Main()
}
