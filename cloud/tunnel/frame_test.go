package tunnel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func validFrames() []Message {
	return []Message{
		&EnrollRequest{Token: "ote1.abcdef.0123456789abcdef.AAAA", CSR: []byte{1, 2, 3}, Name: "box-1", Tags: map[string]string{"site": "berlin-1"}, DeviceID: "00ff"},
		&EnrollResponse{Cluster: "box-1", Cert: []byte("-----BEGIN CERTIFICATE-----"), CA: []byte("ca"), Tags: map[string]string{"site": "berlin-1"}},
		&EnrollResponse{Error: "token expired"},
		&Hello{CapabilityVersion: CapabilityVersion, AgentVersion: "v0.1.0", Revision: 7},
		&Welcome{CapabilityVersion: 1, Cluster: "box-1", Parent: "region-eu", Alternates: []string{"10.0.0.2:7443"}},
		&Desired{Revision: 8, Deployments: []Deployment{{Namespace: "default", Name: "hello", Targets: []string{"box-1"}, Manifests: nil}}},
		&Ack{Revision: 8},
		&Renew{CSR: []byte{9, 9}},
		&Renewed{Cert: []byte("pem")},
		&Renewed{Error: "revoked"},
		&EnrollRequest{OldCert: []byte("pem"), Proof: []byte{1}, CSR: []byte{2}},
		&Status{Clusters: []ClusterStatus{{Name: "box-1"}}, Deployments: []DeploymentStatus{{Name: "hello", Cluster: "box-1", Revision: 8, Phase: "Applied"}}},
		// Trees of levels (capability 3).
		&EnrollRequest{Token: "ote1.abcdef.0123456789abcdef.AAAA", CSR: []byte{1}, Name: "region-eu", Level: true},
		&Hello{CapabilityVersion: 3, Revision: 2, Hash: "ab12", Tags: map[string]string{"tier": "region"}, Serves: "10.0.0.2:7443"},
		&Welcome{CapabilityVersion: 3, Cluster: "region-eu", Parent: "root", Siblings: []string{"10.0.0.3:7443"}},
		&Desired{Revision: 3, Deployments: []Deployment{}, Revoked: map[string]time.Time{"box-9": time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}},
		&Status{Reset: true, Sync: true, Clusters: []ClusterStatus{{Name: "box-2", Parent: "region-eu", Phase: "Connected", Tags: map[string]string{"site": "a"}}},
			Removed: []string{"box-3"}, Revoked: map[string]time.Time{"box-9": time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}},
		// Desired sets as changes (capability 4).
		&Desired{Revision: 9, Base: 8, BaseHash: "ab12", Hash: "cd34", Deployments: []Deployment{{Namespace: "default", Name: "hello", Targets: []string{"box-1"}}}, Removed: []string{"default/old"}},
		&Ack{Revision: 8, Resend: true},
		&Welcome{CapabilityVersion: 4, Cluster: "box-1", Parent: "region-eu", Report: ReportMark{Epoch: 77, Seq: 3}},
		&Status{Mark: ReportMark{Epoch: 77, Seq: 4}, Deployments: []DeploymentStatus{{Name: "hello", Cluster: "box-1", Revision: 9, Phase: "Received"}}},
	}
}

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	want := validFrames()
	for _, m := range want {
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf)
	for i, w := range want {
		if i%2 == 1 { // Wait takes nothing from the frame it waits for
			if err := r.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
		}
		got, err := r.Read()
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("Read = %#v, want %#v", got, w)
		}
	}
	if err := r.Wait(); err != io.EOF {
		t.Errorf("Wait at the end = %v, want io.EOF", err)
	}
	if _, err := r.Read(); err != io.EOF {
		t.Errorf("Read at the end = %v, want io.EOF", err)
	}
}

func TestBadFrames(t *testing.T) {
	huge := binary.AppendUvarint([]byte{byte(TypeAck)}, MaxFrameSize+1)
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"over the size limit", huge, ErrFrameTooLarge, "limit"},
		{"unknown type", []byte{200, 2, '{', '}'}, ErrUnknownType, "200"},
		{"truncated payload", []byte{byte(TypeAck), 10, '{'}, io.ErrUnexpectedEOF, "Ack payload"},
		{"truncated length", []byte{byte(TypeAck), 0x80}, io.ErrUnexpectedEOF, "length"},
		{"not JSON", []byte{byte(TypeAck), 3, 'x', 'y', 'z'}, nil, "decode Ack"},
		{"wrong JSON shape", append([]byte{byte(TypeAck), 16}, []byte(`{"revision":"x"}`)...), nil, "decode Ack"},
	}
	for _, tt := range tests {
		_, err := NewReader(bytes.NewReader(tt.in)).Read()
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Read = %v, want %v mentioning %q", tt.name, err, tt.want, tt.msg)
		}
	}
	big := &Status{Clusters: make([]ClusterStatus, 30000)}
	if err := WriteFrame(io.Discard, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("WriteFrame of an oversized Status = %v, want ErrFrameTooLarge", err)
	}
}

// FuzzReader: any input gives frames or an error, never a panic or an
// allocation beyond the frame limit; whatever decodes encodes again.
func FuzzReader(f *testing.F) {
	for _, m := range validFrames() {
		var buf bytes.Buffer
		WriteFrame(&buf, m)
		f.Add(buf.Bytes())
	}
	f.Add([]byte{byte(TypeHello), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for range 16 {
			m, err := r.Read()
			if err != nil {
				return
			}
			if err := WriteFrame(io.Discard, m.(Message)); err != nil && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("re-encoding %#v: %v", m, err)
			}
		}
	})
}

func TestDesiredApply(t *testing.T) {
	dep := func(name, data string) Deployment {
		return Deployment{Namespace: "default", Name: name, Targets: []string{"box"}, Manifests: []json.RawMessage{json.RawMessage(`{"data":"` + data + `"}`)}}
	}
	held := &Desired{Revision: 4, Deployments: []Deployment{dep("a", "1"), dep("b", "1")}}
	heldHash := DesiredHash(held.Deployments, nil)
	want := []Deployment{dep("b", "2"), dep("c", "1")}
	change := &Desired{Revision: 5, Base: 4, BaseHash: heldHash, Deployments: []Deployment{dep("c", "1"), dep("b", "2")}, Removed: []string{"default/a"}, Hash: DesiredHash(want, nil)}
	got, err := change.Apply(held)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 5 || DesiredHash(got.Deployments, nil) != change.Hash || got.Deployments[0].Name != "b" {
		t.Errorf("applied: %+v", got)
	}
	if whole := (&Desired{Revision: 9}); func() *Desired { d, _ := whole.Apply(nil); return d }() != whole {
		t.Error("a whole set applies as itself")
	}
	for name, tc := range map[string]struct {
		held   *Desired
		change Desired
	}{
		"nothing held":   {nil, *change},
		"other revision": {&Desired{Revision: 3, Deployments: held.Deployments}, *change},
		"other content":  {&Desired{Revision: 4, Deployments: []Deployment{dep("a", "1")}}, *change},
		"wrong result":   {held, Desired{Revision: 5, Base: 4, BaseHash: heldHash, Hash: "00"}},
	} {
		if _, err := tc.change.Apply(tc.held); !errors.Is(err, ErrBaseMismatch) {
			t.Errorf("%s: err = %v, want ErrBaseMismatch", name, err)
		}
	}
}
