// Package tunnel is the wire protocol between a cluster controller and its
// parent, used by both ends: QUIC (quic-go) with TLS 1.3, one connection
// per child.
//
// Two ALPN protocols share the parent's UDP port:
//
//   - ote-enroll/1: a box with an enrollment token and no identity yet.
//     The box pins the tree's CA by the fingerprint in its token, sends
//     the token, a CSR and its desired name and tags on one stream, and
//     reads back a certificate whose subject is its cluster name, or a
//     refusal with the reason.
//   - ote/1: an enrolled cluster, authenticated by that certificate
//     (mutual TLS). The child opens the control stream and says Hello;
//     desired state flows down and acknowledgements and status flow up on
//     it, as frames.
//
// A frame is one byte of type, the payload length as an unsigned varint,
// and the payload, a JSON object whose shape the type names. No frame
// exceeds MaxFrameSize; a peer that sends a larger one, an unknown type or
// a payload that does not decode is disconnected, and nothing else is
// harmed.
package tunnel
