package tunnel

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// CapabilityVersion is what this build of the protocol can do. Peers send
// theirs in Hello and Welcome and use the smaller of the two.
//
// History:
//
//	1 (2026-11-22): enrollment, Hello/Welcome, desired state with
//	   revisions and acknowledgements, status up.
//	2 (2026-11-22): certificate renewal: Renew/Renewed on the control
//	   stream before expiry; past expiry, an EnrollRequest carrying the
//	   old certificate and a signature by its key instead of a token.
//	3 (2026-11-22): trees of levels: enrollment of a level (an
//	   intermediate CA), subtree reports (Status with Reset/Sync and
//	   removals), revocations both ways, alternates in Welcome, which
//	   may come again mid-session, and the held set's hash in Hello.
//	4 (2026-11-22): only changes after a reconnect, both ways: desired
//	   sets as changes to the set the child holds (Desired.Base, and
//	   Ack.Resend for a change that did not apply), and subtree reports
//	   that go on from the last frame the parent applied (Status.Mark,
//	   Welcome.Report).
const CapabilityVersion = 4

// MaxFrameSize bounds a frame's payload.
const MaxFrameSize = 1 << 20

// Type says what a frame's payload is.
type Type uint8

// Frame types. Values are part of the wire format: never reuse one.
const (
	TypeEnrollRequest  Type = 1 // child → parent, on ote-enroll/1
	TypeEnrollResponse Type = 2 // parent → child, on ote-enroll/1
	TypeHello          Type = 3 // child → parent, first on the control stream
	TypeWelcome        Type = 4 // parent → child, the answer to Hello
	TypeDesired        Type = 5 // parent → child: the desired set at a revision
	TypeAck            Type = 6 // child → parent: the revision applied
	TypeStatus         Type = 7 // child → parent: clusters and deployments below
	TypeRenew          Type = 8 // child → parent: a CSR for a fresh certificate (cap 2)
	TypeRenewed        Type = 9 // parent → child: the certificate, or why not (cap 2)
)

func (t Type) String() string {
	names := map[Type]string{
		TypeEnrollRequest: "EnrollRequest", TypeEnrollResponse: "EnrollResponse", TypeHello: "Hello",
		TypeWelcome: "Welcome", TypeDesired: "Desired", TypeAck: "Ack", TypeStatus: "Status",
		TypeRenew: "Renew", TypeRenewed: "Renewed",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Errors of the frame codec.
var (
	ErrFrameTooLarge = errors.New("frame too large")
	ErrUnknownType   = errors.New("unknown frame type")
)

// Message is implemented by every payload type of this package.
type Message interface{ frameType() Type }

// Writer writes whole frames on one stream from several goroutines.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter serialises the frames written to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Send writes m as one frame.
func (w *Writer) Send(m Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WriteFrame(w.w, m)
}

// WriteFrame encodes m as one frame on w.
func WriteFrame(w io.Writer, m Message) error {
	payload, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %v: %w", m.frameType(), err)
	}
	if len(payload) > MaxFrameSize {
		return fmt.Errorf("%w: %v of %d bytes, limit %d", ErrFrameTooLarge, m.frameType(), len(payload), MaxFrameSize)
	}
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+len(payload))
	buf = append(buf, byte(m.frameType()))
	buf = binary.AppendUvarint(buf, uint64(len(payload)))
	buf = append(buf, payload...)
	_, err = w.Write(buf)
	return err
}

// Reader reads frames from a stream.
type Reader struct {
	r *bufio.Reader
}

// NewReader returns a frame Reader on r. Its buffer holds a frame's header
// and small frames; larger payloads are read past it. A parent keeps one
// per child, so it is small.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 512)} }

// Wait waits for the next frame to begin, and returns the error that
// ends the stream if none will. A reader that spends most of its time
// waiting for frames waits here on a shallower stack than Read's, and
// one goroutine per child does: a stack shrinks only while what is in
// use is well under a quarter of it.
func (fr *Reader) Wait() error {
	_, err := fr.r.Peek(1)
	return err
}

// Read reads the next frame and decodes its payload into the message of
// its type, returned as a pointer (*Hello, *Desired, ...).
func (fr *Reader) Read() (any, error) {
	t, err := fr.r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		return nil, fmt.Errorf("frame length: %w", noEOF(err))
	}
	if n > MaxFrameSize {
		return nil, fmt.Errorf("%w: %v of %d bytes, limit %d", ErrFrameTooLarge, Type(t), n, MaxFrameSize)
	}
	m := newMessage(Type(t))
	if m == nil {
		return nil, fmt.Errorf("%w %d", ErrUnknownType, t)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return nil, fmt.Errorf("%v payload: %w", Type(t), noEOF(err))
	}
	if err := json.Unmarshal(payload, m); err != nil {
		return nil, fmt.Errorf("decode %v: %w", Type(t), err)
	}
	return m, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF: only a clean
// end between frames is io.EOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func newMessage(t Type) Message {
	switch t {
	case TypeEnrollRequest:
		return &EnrollRequest{}
	case TypeEnrollResponse:
		return &EnrollResponse{}
	case TypeHello:
		return &Hello{}
	case TypeWelcome:
		return &Welcome{}
	case TypeDesired:
		return &Desired{}
	case TypeAck:
		return &Ack{}
	case TypeStatus:
		return &Status{}
	case TypeRenew:
		return &Renew{}
	case TypeRenewed:
		return &Renewed{}
	}
	return nil
}
