// Package statuspage is the box's local status page: device health, the
// supervised services with their recent logs, local state, identity and
// uplink, and configuration errors.
//
// Pages are rendered on the server from html/template with embedded
// assets and work without JavaScript; only live logs (server-sent events)
// need it. The same report is JSON at /api/v1/status and on any request
// that asks for application/json. Mutating actions are POSTs that need
// the device password and pass the standard library's cross-origin
// protection; a wrong password is a 403 and changes nothing.
package statuspage
