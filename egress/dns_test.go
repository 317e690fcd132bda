package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// dnsServer is a tiny in-process DNS server on 127.0.0.1 that answers A
// queries from a script. It parses just enough of the wire format: the
// header and one question. AAAA and other queries get an empty answer.
type dnsServer struct {
	conn *net.UDPConn

	mu      sync.Mutex
	script  func(name string, n int) []netip.Addr // n counts earlier A queries for name
	queries map[string]int                        // A queries seen, by lower-case name
}

func newDNSServer(t *testing.T, script func(name string, n int) []netip.Addr) *dnsServer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: conn, script: script, queries: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return s
}

// aQueries returns how many A queries the server has answered for name.
func (s *dnsServer) aQueries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(name)]
}

// resolver returns a pure-Go resolver whose every query goes to s.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		resp, err := s.answer(buf[:n])
		if err != nil {
			continue
		}
		s.conn.WriteToUDP(resp, from)
	}
}

const (
	typeA   = 1
	classIN = 1
)

func (s *dnsServer) answer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, errors.New("want one question")
	}
	// Question: labels, then type and class.
	var labels []string
	i := 12
	for {
		if i >= len(q) {
			return nil, errors.New("truncated name")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil, errors.New("bad label")
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, errors.New("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, "."))

	var addrs []netip.Addr
	rcode := uint16(0)
	if qtype == typeA {
		s.mu.Lock()
		n := s.queries[name]
		s.queries[name] = n + 1
		addrs = s.script(name, n)
		s.mu.Unlock()
		if addrs == nil {
			rcode = 3 // NXDOMAIN
		}
	}

	resp := make([]byte, 12, 12+len(question)+16*len(addrs))
	binary.BigEndian.PutUint16(resp[0:], binary.BigEndian.Uint16(q[0:])) // id
	flags := uint16(0x8000|0x0080) | binary.BigEndian.Uint16(q[2:])&0x0100 | rcode
	binary.BigEndian.PutUint16(resp[2:], flags)
	binary.BigEndian.PutUint16(resp[4:], 1)
	binary.BigEndian.PutUint16(resp[6:], uint16(len(addrs)))
	resp = append(resp, question...)
	for _, a := range addrs {
		v := a.As4()
		resp = append(resp, 0xc0, 12) // pointer to the question name
		resp = binary.BigEndian.AppendUint16(resp, typeA)
		resp = binary.BigEndian.AppendUint16(resp, classIN)
		resp = binary.BigEndian.AppendUint32(resp, 0) // TTL
		resp = binary.BigEndian.AppendUint16(resp, 4)
		resp = append(resp, v[:]...)
	}
	return resp, nil
}

func TestDNSServer(t *testing.T) {
	want := netip.MustParseAddr("127.0.0.7")
	s := newDNSServer(t, func(name string, n int) []netip.Addr {
		if name == "x.test" {
			return []netip.Addr{want}
		}
		return nil
	})
	got, err := s.resolver().LookupNetIP(context.Background(), "ip4", "x.test")
	if err != nil || len(got) != 1 || got[0].Unmap() != want {
		t.Fatalf("LookupNetIP = %v, %v", got, err)
	}
	if _, err := s.resolver().LookupNetIP(context.Background(), "ip4", "nope.test"); err == nil {
		t.Fatal("unknown name resolved")
	}
	if s.aQueries("x.test") != 1 {
		t.Fatalf("A queries = %d, want 1", s.aQueries("x.test"))
	}
}
