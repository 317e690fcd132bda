package ingress

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// proxyV2Sig is the 12-byte signature that starts every PROXY protocol v2
// header (haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2).
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

const (
	proxyV2FixedLen = 16 // signature, version/command, family/transport, length
	proxyV2Version  = 0x20
	cmdLocal        = 0x0
	cmdProxy        = 0x1
	famTCP4         = 0x11 // AF_INET, STREAM
	famTCP6         = 0x21 // AF_INET6, STREAM
	addrLenTCP4     = 12   // two IPv4 addresses and two ports
	addrLenTCP6     = 36   // two IPv6 addresses and two ports
	tlvHeaderLen    = 3    // type (1) and length (2)
)

// Errors from ParseProxyV2. A header that does not start with the v2
// signature fails with ErrNotProxyV2; every other failure wraps
// ErrInvalidProxyHeader.
var (
	ErrNotProxyV2         = errors.New("not a proxy protocol v2 header")
	ErrInvalidProxyHeader = errors.New("invalid proxy protocol v2 header")
)

// ParseProxyV2 reads one PROXY protocol v2 header from r and returns the
// source and destination it carries. It reads exactly the header's bytes,
// leaving whatever follows (a TLS ClientHello, say) in r.
//
// For the LOCAL command (a proxy's own health check) it returns zero
// AddrPorts and no error: the connection's real endpoints apply. For the
// PROXY command only TCP over IPv4 or IPv6 is accepted; UDP, Unix sockets and
// the UNSPEC family fail, because Sluice cannot apply an allowlist to them.
// Type-length-value extensions are checked to be well formed and skipped.
func ParseProxyV2(r *bufio.Reader) (src, dst netip.AddrPort, err error) {
	var fixed [proxyV2FixedLen]byte
	if _, err := io.ReadFull(r, fixed[:len(proxyV2Sig)]); err != nil {
		return src, dst, fmt.Errorf("reading proxy header signature: %w", err)
	}
	if string(fixed[:len(proxyV2Sig)]) != proxyV2Sig {
		return src, dst, ErrNotProxyV2
	}
	if _, err := io.ReadFull(r, fixed[len(proxyV2Sig):]); err != nil {
		return src, dst, fmt.Errorf("reading proxy header: %w", unexpectedEOF(err))
	}
	verCmd, fam := fixed[12], fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:16]))
	if verCmd&0xF0 != proxyV2Version {
		return src, dst, fmt.Errorf("%w: version %d", ErrInvalidProxyHeader, verCmd>>4)
	}
	switch verCmd & 0x0F {
	case cmdLocal:
		// The address block, if any, must be ignored; skip the lot.
		if _, err := r.Discard(length); err != nil {
			return src, dst, fmt.Errorf("skipping local proxy header: %w", unexpectedEOF(err))
		}
		return netip.AddrPort{}, netip.AddrPort{}, nil
	case cmdProxy:
	default:
		return src, dst, fmt.Errorf("%w: command %#x", ErrInvalidProxyHeader, verCmd&0x0F)
	}

	var addrLen int
	switch fam {
	case famTCP4:
		addrLen = addrLenTCP4
	case famTCP6:
		addrLen = addrLenTCP6
	default:
		return src, dst, fmt.Errorf("%w: unsupported family/transport %#x", ErrInvalidProxyHeader, fam)
	}
	if length < addrLen {
		return src, dst, fmt.Errorf("%w: length %d too short for family %#x", ErrInvalidProxyHeader, length, fam)
	}
	var buf [addrLenTCP6]byte
	addrs := buf[:addrLen]
	if _, err := io.ReadFull(r, addrs); err != nil {
		return src, dst, fmt.Errorf("reading proxy header addresses: %w", unexpectedEOF(err))
	}
	if fam == famTCP4 {
		src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addrs[0:4])), binary.BigEndian.Uint16(addrs[8:10]))
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addrs[4:8])), binary.BigEndian.Uint16(addrs[10:12]))
	} else {
		src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addrs[0:16])), binary.BigEndian.Uint16(addrs[32:34]))
		dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addrs[16:32])), binary.BigEndian.Uint16(addrs[34:36]))
	}
	if err := skipTLVs(r, length-addrLen); err != nil {
		return netip.AddrPort{}, netip.AddrPort{}, err
	}
	return src, dst, nil
}

// skipTLVs discards n bytes of type-length-value records, checking that
// each record fits in what is left.
func skipTLVs(r *bufio.Reader, n int) error {
	for n > 0 {
		if n < tlvHeaderLen {
			return fmt.Errorf("%w: %d stray bytes after the last extension", ErrInvalidProxyHeader, n)
		}
		var h [tlvHeaderLen]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return fmt.Errorf("reading proxy header extension: %w", unexpectedEOF(err))
		}
		vlen := int(binary.BigEndian.Uint16(h[1:3]))
		n -= tlvHeaderLen
		if vlen > n {
			return fmt.Errorf("%w: extension %#x of %d bytes overruns the header", ErrInvalidProxyHeader, h[0], vlen)
		}
		if _, err := r.Discard(vlen); err != nil {
			return fmt.Errorf("skipping proxy header extension: %w", unexpectedEOF(err))
		}
		n -= vlen
	}
	return nil
}

// unexpectedEOF turns a clean EOF in the middle of a header into
// io.ErrUnexpectedEOF so callers can tell it from a connection that closed
// before sending anything.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendProxyV2Header appends a PROXY protocol v2 header for a TCP
// connection from src to dst and returns the extended buffer. Two IPv4
// addresses (mapped or not) give a TCP4 header, anything else TCP6. An
// invalid src gives a LOCAL header with no addresses.
func AppendProxyV2Header(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, proxyV2Sig...)
	if !src.IsValid() {
		return append(b, proxyV2Version|cmdLocal, 0x00, 0, 0)
	}
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		b = append(b, proxyV2Version|cmdProxy, famTCP4, 0, addrLenTCP4)
		s4, d4 := s.As4(), d.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, proxyV2Version|cmdProxy, famTCP6, 0, addrLenTCP6)
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
