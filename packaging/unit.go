package packaging

import _ "embed"

// Unit is systemd/adapterd.service, the packaged unit. `adapterd install`
// renders its own unit from this text, so the two carry the same
// hardening and cannot drift apart.
//
//go:embed systemd/adapterd.service
var Unit string
