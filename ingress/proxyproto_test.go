package ingress

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"testing"
)

var (
	src4 = netip.MustParseAddrPort("127.0.0.5:4321")
	dst4 = netip.MustParseAddrPort("127.0.0.1:443")
	src6 = netip.MustParseAddrPort("[2001:db8::5]:4321")
	dst6 = netip.MustParseAddrPort("[2001:db8::1]:443")
)

// rawHeader builds a v2 header by hand: verCmd, fam, then body.
func rawHeader(verCmd, fam byte, body []byte) []byte {
	b := append([]byte(proxyV2Sig), verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// withTLVs appends extensions to a header made by AppendProxyV2Header,
// fixing its length.
func withTLVs(h []byte, tlvs ...[]byte) []byte {
	for _, tlv := range tlvs {
		h = append(h, tlv...)
	}
	binary.BigEndian.PutUint16(h[14:16], uint16(len(h)-proxyV2FixedLen))
	return h
}

func tlv(typ byte, value string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	return append(b, value...)
}

func TestParseProxyV2(t *testing.T) {
	const rest = "\x16\x03\x01 client hello"
	tcp4Body := AppendProxyV2Header(nil, src4, dst4)[proxyV2FixedLen:]
	tests := []struct {
		name     string
		in       []byte
		src, dst netip.AddrPort
		err      error // nil: success
	}{
		{name: "tcp4", in: AppendProxyV2Header(nil, src4, dst4), src: src4, dst: dst4},
		{name: "tcp6", in: AppendProxyV2Header(nil, src6, dst6), src: src6, dst: dst6},
		{name: "mixed families become tcp6", in: AppendProxyV2Header(nil, src4, dst6),
			src: netip.AddrPortFrom(netip.AddrFrom16(src4.Addr().As16()), src4.Port()), dst: dst6},
		{name: "local", in: AppendProxyV2Header(nil, netip.AddrPort{}, netip.AddrPort{})},
		{name: "local with ignored addresses", in: rawHeader(0x20, famTCP4, tcp4Body)},
		{name: "tlvs skipped", in: withTLVs(AppendProxyV2Header(nil, src4, dst4), tlv(0x01, "h2"), tlv(0x04, ""), tlv(0xEA, "vpce-0123")), src: src4, dst: dst4},
		{name: "tlv overruns", in: withTLVs(AppendProxyV2Header(nil, src4, dst4), tlv(0x01, "h2")[:4]), err: ErrInvalidProxyHeader},
		{name: "stray bytes after tlvs", in: withTLVs(AppendProxyV2Header(nil, src4, dst4), []byte{0x01, 0x00}), err: ErrInvalidProxyHeader},
		{name: "not a header", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), err: ErrNotProxyV2},
		{name: "v1 header", in: []byte("PROXY TCP4 127.0.0.5 127.0.0.1 4321 443\r\n"), err: ErrNotProxyV2},
		{name: "version 1 in v2 form", in: rawHeader(0x11, famTCP4, tcp4Body), err: ErrInvalidProxyHeader},
		{name: "unknown command", in: rawHeader(0x22, famTCP4, tcp4Body), err: ErrInvalidProxyHeader},
		{name: "unspec family", in: rawHeader(0x21, 0x00, nil), err: ErrInvalidProxyHeader},
		{name: "udp", in: rawHeader(0x21, 0x12, tcp4Body), err: ErrInvalidProxyHeader},
		{name: "unix", in: rawHeader(0x21, 0x31, make([]byte, 216)), err: ErrInvalidProxyHeader},
		{name: "length short of addresses", in: rawHeader(0x21, famTCP6, tcp4Body), err: ErrInvalidProxyHeader},
		{name: "truncated signature", in: []byte(proxyV2Sig[:7]), err: io.ErrUnexpectedEOF},
		{name: "truncated fixed part", in: []byte(proxyV2Sig + "\x21"), err: io.ErrUnexpectedEOF},
		{name: "truncated addresses", in: AppendProxyV2Header(nil, src6, dst6)[:30], err: io.ErrUnexpectedEOF},
		{name: "truncated local", in: rawHeader(0x20, 0, []byte("abc"))[:17], err: io.ErrUnexpectedEOF},
		{name: "empty", in: nil, err: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(append(tt.in[:len(tt.in):len(tt.in)], rest...)))
			if tt.err != nil {
				// Cut the trailing bytes so truncation is real.
				r = bufio.NewReader(bytes.NewReader(tt.in))
			}
			src, dst, err := ParseProxyV2(r)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseProxyV2() error = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseProxyV2() error = %v", err)
			}
			if src != tt.src || dst != tt.dst {
				t.Errorf("ParseProxyV2() = %v, %v, want %v, %v", src, dst, tt.src, tt.dst)
			}
			left, _ := io.ReadAll(r)
			if string(left) != rest {
				t.Errorf("after the header the reader holds %q, want %q", left, rest)
			}
		})
	}
}

func FuzzParseProxyV2(f *testing.F) {
	f.Add(AppendProxyV2Header(nil, src4, dst4))
	f.Add(AppendProxyV2Header(nil, src6, dst6))
	f.Add(AppendProxyV2Header(nil, netip.AddrPort{}, netip.AddrPort{}))
	f.Add(withTLVs(AppendProxyV2Header(nil, src4, dst4), tlv(0x01, "h2"), tlv(0x20, "\x01\x00\x00\x00\x00")))
	f.Add(append(AppendProxyV2Header(nil, src4, dst4), "GET / HTTP/1.1\r\n"...))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		src, dst, err := ParseProxyV2(r)
		if err != nil {
			if src.IsValid() || dst.IsValid() {
				t.Fatalf("error %v with addresses %v, %v", err, src, dst)
			}
			return
		}
		// A header was accepted: it is exactly its declared length, and
		// everything after it is left unread.
		if len(in) < proxyV2FixedLen {
			t.Fatalf("accepted %d bytes, shorter than the fixed part", len(in))
		}
		n := proxyV2FixedLen + int(binary.BigEndian.Uint16(in[14:16]))
		left, _ := io.ReadAll(r)
		if !bytes.Equal(left, in[n:]) {
			t.Fatalf("consumed %d bytes, header is %d", len(in)-len(left), n)
		}
		if !src.IsValid() {
			if in[12] != 0x20 {
				t.Fatalf("no addresses for command %#x", in[12])
			}
			return
		}
		// What was read re-encodes to an equivalent header.
		again := AppendProxyV2Header(nil, src, dst)
		src2, dst2, err := ParseProxyV2(bufio.NewReader(bytes.NewReader(again)))
		if err != nil {
			t.Fatalf("re-encoded header: %v", err)
		}
		if src2.Addr().Unmap() != src.Addr().Unmap() || dst2.Addr().Unmap() != dst.Addr().Unmap() ||
			src2.Port() != src.Port() || dst2.Port() != dst.Port() {
			t.Fatalf("round trip: %v %v became %v %v", src, dst, src2, dst2)
		}
	})
}

func TestAppendProxyV2HeaderAppends(t *testing.T) {
	b := AppendProxyV2Header([]byte("x"), src4, dst4)
	if b[0] != 'x' || len(b) != 1+proxyV2FixedLen+addrLenTCP4 {
		t.Fatalf("AppendProxyV2Header did not append a tcp4 header: %q", b)
	}
}
