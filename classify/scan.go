package classify

import (
	"bytes"
	"math"
	"net/netip"
	"unicode"
	"unicode/utf8"
)

// The built-in detectors share one hand-written scanner: a single pass over
// the text that stops only at the start of a word, looks at the first
// byte, and runs the few validators that can start there. Each validator
// reads a bounded number of bytes, so the scan is linear in the text. The
// e-mail detector is a second pass driven by bytes.IndexByte('@').

type builtinSet uint16

const (
	bitEmail builtinSet = 1 << iota
	bitPhone
	bitCard
	bitIBAN
	bitSSN
	bitIP
	bitSecret
	bitEntropy
)

func builtinBit(name string) (builtinSet, bool) {
	for i, d := range Detectors() {
		if d == name {
			return 1 << i, true
		}
	}
	return 0, false
}

type scanConfig struct {
	enabled          builtinSet
	entropyThreshold float64
	entropyMinLen    int
}

// entropyMaxLen bounds the tokens the entropy heuristic considers: longer
// runs are encoded data (images, archives), not credentials.
const entropyMaxLen = 256

// Character classes. Every ASCII letter, digit and token symbol has exactly
// one k* bit; the p* bits are properties.
const (
	kDigit uint16 = 1 << iota
	kUpper
	kLower
	kUnder // _
	kDash  // -
	kB64   // + / =
	pHex
	pLocal  // e-mail local part: letters, digits, . _ % + -
	pDomain // domain label: letters, digits, -
	pStart  // may start a detection: letters, digits, + ( - :

	kAlpha   = kUpper | kLower
	kAlnum   = kDigit | kAlpha
	kWord    = kAlnum | kUnder
	kURLSafe = kWord | kDash   // base64url
	kToken   = kURLSafe | kB64 // base64 and base64url
	kUpDigit = kUpper | kDigit // AWS key ids
	kAlDash  = kAlnum | kDash  // Slack tokens
)

var ctab = func() (t [256]uint16) {
	for c := '0'; c <= '9'; c++ {
		t[c] = kDigit | pHex | pLocal | pDomain | pStart
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = kUpper | pLocal | pDomain | pStart
		t[c+'a'-'A'] = kLower | pLocal | pDomain | pStart
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] |= pHex
		t[c-'a'+'A'] |= pHex
	}
	t['_'] = kUnder | pLocal
	t['-'] = kDash | pLocal | pDomain | pStart
	t['+'] = kB64 | pLocal | pStart
	t['/'] = kB64
	t['='] = kB64
	t['.'] = pLocal
	t['%'] = pLocal
	t['('] = pStart
	t[':'] = pStart
	return t
}()

type scanner struct {
	t   []byte
	cfg *scanConfig
	out []Finding
	// Ends of runs already judged and rejected. A later start inside such
	// a run sees a suffix of it, which fails the same way, so these keep
	// inputs like "sk-sk-sk-…" or "eyJ-eyJ-…" linear.
	entropyDone int
	jwtDone     int
	secretDone  [len(secretRules)]int
}

func scanText(text []byte, cfg *scanConfig, out []Finding) []Finding {
	s := scanner{t: text, cfg: cfg, out: out}
	if cfg.enabled&bitEmail != 0 {
		s.emails()
	}
	if cfg.enabled&^bitEmail != 0 {
		s.tokens()
	}
	return s.out
}

func (s *scanner) add(detector string, start, end int) {
	s.out = append(s.out, Finding{Detector: detector, Start: start, End: end})
}

func (s *scanner) tokens() {
	t := s.t
	for i := 0; i < len(t); {
		if ctab[t[i]]&pStart == 0 || i > 0 && ctab[t[i-1]]&kWord != 0 {
			i++
			continue
		}
		if end := s.at(i); end > i {
			i = end
			continue
		}
		// Nothing starts here: skip the rest of the word.
		for i++; i < len(t) && ctab[t[i]]&kWord != 0; i++ {
		}
	}
}

// at runs the detectors that can start at i, which is at a word boundary,
// and returns the end of what it found, or 0.
func (s *scanner) at(i int) int {
	c, en := s.t[i], s.cfg.enabled
	switch c {
	case '-':
		if en&(bitSecret|bitEntropy) != 0 {
			return s.pem(i)
		}
		return 0
	case '+', '(':
		return s.numeric(i)
	case ':':
		if en&bitIP != 0 {
			return s.ipv6(i)
		}
		return 0
	}
	cl := ctab[c]
	if en&bitSecret != 0 && cl&kAlpha != 0 {
		if e := s.secret(i); e > 0 {
			return e
		}
	}
	if en&bitIBAN != 0 && cl&kUpper != 0 {
		if e := s.iban(i); e > 0 {
			return e
		}
	}
	if en&bitIP != 0 && cl&pHex != 0 {
		if e := s.ipv6(i); e > 0 {
			return e
		}
	}
	if cl&kDigit != 0 {
		if e := s.numeric(i); e > 0 {
			return e
		}
	}
	if en&bitEntropy != 0 && i >= s.entropyDone {
		return s.entropy(i)
	}
	return 0
}

// ---- Numbers: phone, card, SSN, IPv4 ----

const (
	maxDigits = 19 // the longest card number; E.164 allows 15
	maxGroups = 12
)

// numSpan is a run of digit groups joined by short separators, such as
// "+1 (555) 123-4567" or "4111 1111 1111 1111".
type numSpan struct {
	plus      bool // starts with '+'
	openParen bool // starts with '('
	nd, ng    int
	digits    [maxDigits]byte
	gstart    [maxGroups]uint8 // index in digits where each group starts
	glen      [maxGroups]uint8
	gend      [maxGroups]int  // text offset after each group's last digit
	sep       [maxGroups]byte // separator before group k>0: ' ', '-', '.', 'p' (parenthesis) or 'x' (mixed)
	cut       bool            // parsing stopped at a group too many: cutSep precedes it
	cutSep    byte
}

// isNumJoin reports whether c joins the digits on either side into one
// number ("1,234", "2024-01-02", "1.2.3.4.5").
func isNumJoin(c byte) bool {
	return c == '.' || c == ',' || c == '-' || c == '/' || c == ':'
}

func (s *scanner) numeric(i int) int {
	en := s.cfg.enabled & (bitPhone | bitCard | bitSSN | bitIP)
	if en == 0 {
		return 0
	}
	t := s.t
	if i >= 2 && isNumJoin(t[i-1]) && ctab[t[i-2]]&kDigit != 0 {
		return 0 // the tail of a longer number
	}
	var sp numSpan
	if !sp.parse(t, i) {
		return 0
	}
	// Longest first; a shorter match must end where whitespace separates it
	// from the rest ("555-123-4567 2024"), never inside "1.2.3.4.5".
	for k := sp.ng; k >= 1; k-- {
		if int(sp.gstart[k-1])+int(sp.glen[k-1]) < 4 {
			break // shorter than any number a detector accepts ("1.2.3.4")
		}
		end := sp.gend[k-1]
		if k < sp.ng && sp.sep[k] != ' ' || k == sp.ng && sp.cut && sp.cutSep != ' ' {
			continue
		}
		if k == sp.ng && end < len(t) && ctab[t[end]]&kWord != 0 {
			continue // runs into a word: "4111111111111111abc"
		}
		if d := sp.match(k, en); d != "" {
			s.add(d, i, end)
			return end
		}
	}
	return 0
}

func (sp *numSpan) parse(t []byte, i int) bool {
	j := i
	if t[j] == '+' {
		sp.plus = true
		j++
	}
	if j < len(t) && t[j] == '(' {
		sp.openParen = true
		j++
	}
	if j >= len(t) || ctab[t[j]]&kDigit == 0 {
		return false
	}
	seps, kind := 0, byte(0)
	for ; j < len(t); j++ {
		c := t[j]
		if ctab[c]&kDigit != 0 {
			if sp.ng == 0 || seps > 0 {
				if sp.ng == maxGroups || sp.nd == maxDigits {
					sp.cut, sp.cutSep = true, kind
					break
				}
				sp.gstart[sp.ng], sp.glen[sp.ng], sp.sep[sp.ng] = uint8(sp.nd), 0, kind
				sp.ng++
				seps, kind = 0, 0
			}
			if sp.nd == maxDigits {
				// A group longer than any detector accepts: drop it and
				// keep the groups before it.
				sp.ng--
				sp.nd = int(sp.gstart[sp.ng])
				sp.cut, sp.cutSep = true, sp.sep[sp.ng]
				break
			}
			sp.digits[sp.nd] = c
			sp.nd++
			sp.glen[sp.ng-1]++
			sp.gend[sp.ng-1] = j + 1
			continue
		}
		if c != ' ' && c != '-' && c != '.' && c != '(' && c != ')' {
			break
		}
		if seps++; seps > 2 {
			break
		}
		switch {
		case c == '(' || c == ')':
			kind = 'p'
		case kind == 'p':
			// ") " and " (" stay a parenthesis
		case seps == 2:
			kind = 'x'
		default:
			kind = c
		}
	}
	return sp.ng > 0
}

// match returns the detector that accepts the first k groups, or "".
func (sp *numSpan) match(k int, en builtinSet) string {
	nd := int(sp.gstart[k-1]) + int(sp.glen[k-1])
	d, g, seps := sp.digits[:nd], sp.glen[:k], sp.sep[1:k]
	paren := sp.openParen
	for _, c := range seps {
		paren = paren || c == 'p'
	}
	if !sp.plus && !paren {
		if en&bitIP != 0 && isIPv4(d, g, seps) {
			return DetectorIP
		}
		if en&bitCard != 0 && isCard(d, g, seps) {
			return DetectorCard
		}
		if en&bitSSN != 0 && isSSN(d, g, seps) {
			return DetectorSSN
		}
	}
	if en&bitPhone != 0 && isPhone(d, g, seps, sp.plus) {
		return DetectorPhone
	}
	return ""
}

func allSeps(seps []byte, c byte) bool {
	for _, s := range seps {
		if s != c {
			return false
		}
	}
	return true
}

func atoi(d []byte) int {
	n := 0
	for _, c := range d {
		n = n*10 + int(c-'0')
	}
	return n
}

// isIPv4 accepts exactly four dot-separated groups of 0–255 without
// leading zeros.
func isIPv4(d []byte, g []uint8, seps []byte) bool {
	if len(g) != 4 || !allSeps(seps, '.') {
		return false
	}
	off := 0
	for _, l := range g {
		part := d[off : off+int(l)]
		off += int(l)
		if l > 3 || l > 1 && part[0] == '0' || atoi(part) > 255 {
			return false
		}
	}
	return true
}

// isCard accepts 13–19 digits, unseparated or in a printed grouping
// (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) with one kind of separator, a known
// issuer prefix for the length, and a valid Luhn check digit.
func isCard(d []byte, g []uint8, seps []byte) bool {
	if len(d) < 13 || len(d) > 19 {
		return false
	}
	if len(g) > 1 {
		if !(allSeps(seps, ' ') || allSeps(seps, '-')) || !cardGrouping(g) {
			return false
		}
	}
	return cardIIN(d) && luhn(d)
}

func cardGrouping(g []uint8) bool {
	switch len(g) {
	case 3:
		return g[0] == 4 && g[1] == 6 && (g[2] == 5 || g[2] == 4)
	case 4:
		return g[0] == 4 && g[1] == 4 && g[2] == 4 && g[3] == 4
	case 5:
		return g[0] == 4 && g[1] == 4 && g[2] == 4 && g[3] == 4 && g[4] == 3
	}
	return false
}

// cardIIN checks the issuer identification number against the lengths the
// major networks issue.
func cardIIN(d []byte) bool {
	n := len(d)
	p2, p3, p4 := atoi(d[:2]), atoi(d[:3]), atoi(d[:4])
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16 && n <= 19
	case p4 == 6011, p3 >= 644 && p3 <= 649, p2 == 65, p2 == 62: // Discover, UnionPay
		return n >= 16 && n <= 19
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16 && n <= 19
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14 && n <= 19
	case p2 == 50, p2 >= 56 && p2 <= 69: // Maestro
		return n >= 13 && n <= 19
	}
	return false
}

func luhn(d []byte) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// isSSN accepts AAA-GG-SSSS (dashes or spaces) with the Social Security
// Administration's rules: area not 000, 666 or 900–999, group not 00,
// serial not 0000, and not a number known from advertising.
func isSSN(d []byte, g []uint8, seps []byte) bool {
	if len(g) != 3 || g[0] != 3 || g[1] != 2 || g[2] != 4 {
		return false
	}
	if !(allSeps(seps, '-') || allSeps(seps, ' ')) {
		return false
	}
	area, group, serial := atoi(d[:3]), atoi(d[3:5]), atoi(d[5:9])
	if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
		return false
	}
	switch string(d) {
	case "078051120", "219099999", "123456789":
		return false
	}
	return true
}

// isPhone accepts:
//   - E.164 with '+': 8–15 digits, not starting with 0, any separators;
//   - international with "00": 8–15 digits after it, in groups;
//   - North American: [1] NXX NXX XXXX as "(555) 123-4567", "555-123-4567",
//     "555.123.4567" or "555 123 4567";
//   - national numbers with a trunk 0: 10–12 digits in two or more groups
//     of at least two digits, separated by spaces or dashes (or dots, in
//     four or more groups: "01.23.45.67.89").
//
// Unseparated national numbers ("5551234567") are not accepted: they are
// indistinguishable from identifiers.
func isPhone(d []byte, g []uint8, seps []byte, plus bool) bool {
	nd := len(d)
	for _, c := range seps {
		if c == 'x' {
			return false
		}
	}
	if plus {
		return nd >= 8 && nd <= 15 && d[0] != '0'
	}
	if nd >= 10 && d[0] == '0' && d[1] == '0' {
		return d[2] != '0' && nd-2 >= 8 && nd-2 <= 15 && len(g) >= 2
	}
	if len(g) == 4 && g[0] == 1 && d[0] == '1' {
		d, g, seps = d[1:], g[1:], seps[1:]
	}
	if len(g) == 3 && g[0] == 3 && g[1] == 3 && g[2] == 4 {
		if d[0] < '2' || d[3] < '2' {
			return false
		}
		switch {
		case seps[0] == 'p':
			return seps[1] == '-' || seps[1] == ' ' || seps[1] == '.'
		case seps[0] == seps[1]:
			return seps[0] == '-' || seps[0] == '.' || seps[0] == ' '
		}
		return false
	}
	if nd >= 10 && nd <= 12 && len(g) >= 2 && d[0] == '0' && d[1] != '0' {
		for _, l := range g {
			if l < 2 {
				return false
			}
		}
		return allSeps(seps, ' ') || allSeps(seps, '-') || len(g) >= 4 && allSeps(seps, '.')
	}
	return false
}

// ---- IBAN ----

// ibanLengths is the SWIFT IBAN registry: country code → IBAN length.
var ibanLengths = map[[2]byte]int{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28,
	{'B', 'A'}: 20, {'B', 'E'}: 16, {'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'I'}: 27,
	{'B', 'R'}: 29, {'B', 'Y'}: 28, {'C', 'H'}: 21, {'C', 'R'}: 22, {'C', 'Y'}: 28,
	{'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'J'}: 27, {'D', 'K'}: 18, {'D', 'O'}: 28,
	{'E', 'E'}: 20, {'E', 'G'}: 29, {'E', 'S'}: 24, {'F', 'I'}: 18, {'F', 'K'}: 18,
	{'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22, {'G', 'E'}: 22, {'G', 'I'}: 23,
	{'G', 'L'}: 18, {'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'N'}: 28, {'H', 'R'}: 21,
	{'H', 'U'}: 28, {'I', 'E'}: 22, {'I', 'L'}: 23, {'I', 'Q'}: 23, {'I', 'S'}: 26,
	{'I', 'T'}: 27, {'J', 'O'}: 30, {'K', 'W'}: 30, {'K', 'Z'}: 20, {'L', 'B'}: 28,
	{'L', 'C'}: 32, {'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20, {'L', 'V'}: 21,
	{'L', 'Y'}: 25, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22, {'M', 'K'}: 19,
	{'M', 'N'}: 20, {'M', 'R'}: 27, {'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'I'}: 28,
	{'N', 'L'}: 18, {'N', 'O'}: 15, {'O', 'M'}: 23, {'P', 'K'}: 24, {'P', 'L'}: 28,
	{'P', 'S'}: 29, {'P', 'T'}: 25, {'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22,
	{'R', 'U'}: 33, {'S', 'A'}: 24, {'S', 'C'}: 31, {'S', 'D'}: 18, {'S', 'E'}: 24,
	{'S', 'I'}: 19, {'S', 'K'}: 24, {'S', 'M'}: 27, {'S', 'O'}: 23, {'S', 'T'}: 25,
	{'S', 'V'}: 28, {'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26, {'U', 'A'}: 29,
	{'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20, {'Y', 'E'}: 30,
}

// iban accepts an upper-case IBAN, compact ("DE89370400440532013000") or
// printed in groups of four ("DE89 3704 0044 0532 0130 00"), whose length
// matches its country and whose mod-97 check is 1. It returns the end of
// the IBAN-shaped token, or 0.
func (s *scanner) iban(i int) int {
	t := s.t
	if i+4 > len(t) || ctab[t[i+1]]&kUpper == 0 || ctab[t[i+2]]&kDigit == 0 || ctab[t[i+3]]&kDigit == 0 {
		return 0
	}
	want, ok := ibanLengths[[2]byte{t[i], t[i+1]}]
	if !ok {
		return 0
	}
	var buf [34]byte
	n := copy(buf[:], t[i:i+4])
	j := i + 4
	spaced := j < len(t) && t[j] == ' '
	for n < want && j < len(t) {
		if n%4 == 0 && spaced {
			if t[j] != ' ' {
				return 0
			}
			j++
			if j == len(t) {
				return 0
			}
		}
		if ctab[t[j]]&kUpDigit == 0 {
			return 0
		}
		buf[n] = t[j]
		n++
		j++
	}
	if n < want || j < len(t) && ctab[t[j]]&kWord != 0 {
		return 0
	}
	// Move the first four characters to the end, read letters as 10–35.
	r := 0
	for k := range want {
		c := buf[(k+4)%want]
		if c >= 'A' {
			r = (r*100 + int(c-'A'+10)) % 97
		} else {
			r = (r*10 + int(c-'0')) % 97
		}
	}
	if r == 1 {
		s.add(DetectorIBAN, i, j)
	}
	// An IBAN-shaped token with a bad check digit is consumed all the
	// same, so that its digit groups are not read as a phone number.
	return j
}

// ---- Secrets ----

// secretRule is a credential with a well-known prefix followed by a body
// of characters in class body, between min and max long (max 0: no
// limit). mixed requires the body to contain a digit, an upper- and a
// lower-case letter, as random tokens do and words such as "sk-learn" do not.
type secretRule struct {
	prefix   string
	body     uint16
	min, max int
	mixed    bool
}

var secretRules = [...]secretRule{
	{"sk-", kURLSafe, 20, 0, true},              // OpenAI (sk-proj-), Anthropic (sk-ant-), OpenRouter, DeepSeek
	{"sk_live_", kAlnum, 16, 0, true},           // Stripe
	{"sk_test_", kAlnum, 16, 0, true},           //
	{"rk_live_", kAlnum, 16, 0, true},           //
	{"rk_test_", kAlnum, 16, 0, true},           //
	{"AKIA", kUpDigit, 16, 16, false},           // AWS access key id
	{"ASIA", kUpDigit, 16, 16, false},           // AWS temporary access key id
	{"AIza", kURLSafe, 35, 35, false},           // Google API key
	{"ghp_", kAlnum, 36, 36, false},             // GitHub tokens
	{"gho_", kAlnum, 36, 36, false},             //
	{"ghu_", kAlnum, 36, 36, false},             //
	{"ghs_", kAlnum, 36, 36, false},             //
	{"ghr_", kAlnum, 36, 36, false},             //
	{"github_pat_", kWord, 22, 0, true},         // GitHub fine-grained token
	{"glpat-", kURLSafe, 20, 0, true},           // GitLab
	{"xoxb-", kAlDash, 10, 0, true},             // Slack
	{"xoxp-", kAlDash, 10, 0, true},             //
	{"xoxa-", kAlDash, 10, 0, true},             //
	{"xoxr-", kAlDash, 10, 0, true},             //
	{"xoxs-", kAlDash, 10, 0, true},             //
	{"xoxe-", kAlDash, 10, 0, true},             //
	{"hf_", kAlnum, 30, 0, true},                // Hugging Face
	{"npm_", kAlnum, 36, 36, false},             // npm
	{"AGE-SECRET-KEY-", kUpDigit, 50, 0, false}, // age
}

// secretsByFirst indexes secretRules by the first byte of the prefix.
var secretsByFirst = func() (idx [256][]int) {
	for i, r := range secretRules {
		idx[r.prefix[0]] = append(idx[r.prefix[0]], i)
	}
	return idx
}()

func (s *scanner) secret(i int) int {
	t := s.t
	if t[i] == 'e' {
		if e := s.jwt(i); e > 0 {
			return e
		}
	}
	for _, ri := range secretsByFirst[t[i]] {
		r := &secretRules[ri]
		if i < s.secretDone[ri] || !bytes.HasPrefix(t[i:], []byte(r.prefix)) {
			continue
		}
		j := i + len(r.prefix)
		k, kinds := j, uint16(0)
		for k < len(t) && ctab[t[k]]&r.body != 0 && (r.max == 0 || k-j <= r.max) {
			kinds |= ctab[t[k]]
			k++
		}
		n := k - j
		if n < r.min || r.max > 0 && n > r.max ||
			k < len(t) && ctab[t[k]]&(r.body|kWord) != 0 ||
			r.mixed && kinds&kAlnum != kAlnum {
			if r.max == 0 {
				s.secretDone[ri] = k
			}
			continue
		}
		s.add(DetectorSecret, i, k)
		return k
	}
	return 0
}

// jwt accepts header.payload.signature where header and payload are
// base64url JSON objects ("eyJ…") of at least 10 characters; the signature
// may be empty (alg "none").
func (s *scanner) jwt(i int) int {
	t := s.t
	seg := func(j int) int {
		for j < len(t) && ctab[t[j]]&kURLSafe != 0 {
			j++
		}
		return j
	}
	if i < s.jwtDone || !bytes.HasPrefix(t[i:], []byte("eyJ")) {
		return 0
	}
	h := seg(i)
	s.jwtDone = h
	if h-i < 10 || h+1 >= len(t) || t[h] != '.' || !bytes.HasPrefix(t[h+1:], []byte("eyJ")) {
		return 0
	}
	p := seg(h + 1)
	if p-h-1 < 10 || p >= len(t) || t[p] != '.' {
		return 0
	}
	end := seg(p + 1)
	s.add(DetectorSecret, i, end)
	return end
}

const pemSearchLimit = 16 << 10 // longer than an 8192-bit RSA key in PEM

// pem accepts "-----BEGIN … PRIVATE KEY-----" up to its END line, or up to
// the end of the base64 lines that follow when the END line is missing.
// Other complete PEM blocks (certificates, public keys) are skipped without
// a finding.
func (s *scanner) pem(i int) int {
	t := s.t[i:]
	const begin = "-----BEGIN "
	if !bytes.HasPrefix(t, []byte(begin)) {
		return 0
	}
	label := t[len(begin):min(len(t), len(begin)+64)]
	k := bytes.Index(label, []byte("-----"))
	if k < 0 {
		return 0
	}
	private := bytes.Contains(label[:k], []byte("PRIVATE KEY"))
	body := len(begin) + k + 5
	window := t[body:min(len(t), body+pemSearchLimit)]
	if e := bytes.Index(window, []byte("-----END ")); e >= 0 {
		p := body + e + len("-----END ")
		if c := bytes.Index(t[p:min(len(t), p+64)], []byte("-----")); c >= 0 {
			end := i + p + c + 5
			if private && s.cfg.enabled&bitSecret != 0 {
				s.add(DetectorSecret, i, end)
			}
			// Certificates and public keys are public: skip their base64
			// so the entropy heuristic does not flag it.
			return end
		}
	}
	if !private || s.cfg.enabled&bitSecret == 0 {
		return 0
	}
	// No END line: take the lines of base64 (and "Key: value" headers)
	// that follow the BEGIN line.
	j := body
	for j < len(t) {
		line := j
		for line < len(t) && (t[line] == '\r' || t[line] == '\n') {
			line++
		}
		e := line
		for e < len(t) && t[e] != '\n' && t[e] != '\r' {
			e++
		}
		if e == line || !pemLine(t[line:e]) {
			break
		}
		j = e
	}
	s.add(DetectorSecret, i, i+j)
	return i + j
}

func pemLine(l []byte) bool {
	if bytes.IndexByte(l, ':') > 0 { // Proc-Type: 4,ENCRYPTED
		return true
	}
	for _, c := range l {
		if ctab[c]&(kAlnum|kB64) == 0 {
			return false
		}
	}
	return true
}

// ---- IPv6 ----

// ipv6 accepts an IPv6 address in text form: a run of hex digits, colons
// and dots with "::" or exactly seven colons (six before a dotted IPv4
// tail), containing a hex digit, that netip parses. Times ("12:30:45") and
// MAC addresses have neither.
func (s *scanner) ipv6(i int) int {
	t := s.t
	j := i
	for j < len(t) && j-i <= 45 && (ctab[t[j]]&pHex != 0 || t[j] == ':' || t[j] == '.') {
		j++
	}
	if j < len(t) && ctab[t[j]]&kWord != 0 {
		return 0 // runs into a word, or longer than any address
	}
	end := j
	for end > i && t[end-1] == '.' {
		end--
	}
	if end-i >= 2 && t[end-1] == ':' && t[end-2] != ':' {
		end-- // "fe80::1:" at the end of a sentence
	}
	cand := t[i:end]
	colons, double, dots, hex := 0, false, false, false
	for k, c := range cand {
		switch {
		case c == ':':
			colons++
			double = double || k > 0 && cand[k-1] == ':'
		case c == '.':
			dots = true
		default:
			hex = true
		}
	}
	if !hex || !(double || colons == 7 || colons == 6 && dots) {
		return 0
	}
	a, err := netip.ParseAddr(string(cand))
	if err != nil || !a.Is6() {
		return 0
	}
	s.add(DetectorIP, i, end)
	return end
}

// ---- E-mail ----

func (s *scanner) emails() {
	t := s.t
	for off := 0; off < len(t); {
		k := bytes.IndexByte(t[off:], '@')
		if k < 0 {
			return
		}
		at := off + k
		off = at + 1
		start := at
		for start > 0 && at-start <= 64 && ctab[t[start-1]]&pLocal != 0 {
			start--
		}
		if at-start > 64 {
			continue // longer than a local part may be
		}
		for start < at && (t[start] == '.' || t[start] == '+' || t[start] == '-') {
			start++
		}
		if start == at || t[at-1] == '.' {
			continue
		}
		end := domainEnd(t, at+1)
		if end < 0 {
			continue
		}
		s.add(DetectorEmail, start, end)
		off = end
	}
}

// domainEnd returns the end of a host name of two or more labels starting
// at i whose last label is alphabetic, or -1.
func domainEnd(t []byte, i int) int {
	labels, j, tldAlpha := 0, i, false
	for j < len(t) && j-i < 253 {
		ls := j
		alpha := true
		for j < len(t) && ctab[t[j]]&pDomain != 0 && j-ls <= 63 {
			alpha = alpha && ctab[t[j]]&kAlpha != 0
			j++
		}
		if j == ls || j-ls > 63 || t[ls] == '-' || t[j-1] == '-' {
			return -1
		}
		labels++
		tldAlpha = alpha && j-ls >= 2
		if j+1 < len(t) && t[j] == '.' && ctab[t[j+1]]&pDomain != 0 {
			j++
			continue
		}
		break
	}
	if labels < 2 || !tldAlpha || j < len(t) && t[j] == '_' {
		return -1
	}
	return j
}

// ---- High-entropy tokens ----

// entropy flags a run of base64/base64url characters of EntropyMinLen to
// 256 bytes that mixes digits, upper- and lower-case letters, whose Shannon
// entropy per byte reaches the threshold, and that is not mostly made of
// words: identifiers such as "TestHTTP2ServerConnectionReuse" have high
// entropy too, but most of their letters sit in lower-case runs of three
// or more ("Server", "est"), which random tokens rarely have. The run is
// judged once, as a whole.
//
// Measured on random tokens with the defaults (3.5 bits, half the token in
// words or more): about 3% of 20-character tokens are missed, under 1% from 32.
func (s *scanner) entropy(i int) int {
	t := s.t
	j, kinds := i, uint16(0)
	for j < len(t) && ctab[t[j]]&kToken != 0 {
		if t[j] == '=' {
			// '=' is base64 padding only at the end; inside a run it is
			// an assignment ("GODEBUG=http2client=0").
			e := j
			for e < len(t) && t[e] == '=' {
				e++
			}
			if e < len(t) && ctab[t[e]]&kToken != 0 {
				break
			}
			j = e
			break
		}
		kinds |= ctab[t[j]]
		j++
	}
	s.entropyDone = j
	n := j - i
	if n < s.cfg.entropyMinLen || n > entropyMaxLen || kinds&kAlnum != kAlnum {
		return 0
	}
	tok := t[i:j]
	if 2*wordy(tok) >= n {
		return 0
	}
	var counts [128]uint16
	for _, c := range tok {
		counts[c&0x7f]++
	}
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log2(p)
		}
	}
	if h < s.cfg.entropyThreshold {
		return 0
	}
	s.add(DetectorEntropy, i, j)
	return j
}

// wordy returns how many bytes of tok are in word-like runs: three or more
// lower-case letters, with the capital before them.
func wordy(tok []byte) int {
	n := 0
	for k := 0; k < len(tok); {
		if ctab[tok[k]]&kLower == 0 {
			k++
			continue
		}
		e := k
		for e < len(tok) && ctab[tok[e]]&kLower != 0 {
			e++
		}
		if e-k >= 3 {
			n += e - k
			if k > 0 && ctab[tok[k-1]]&kUpper != 0 {
				n++
			}
		}
		k = e
	}
	return n
}

// ---- Word boundaries for keywords (Unicode-aware) ----

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

func isWordRuneBefore(text []byte, i int) bool {
	r, _ := utf8.DecodeLastRune(text[:i])
	return isWordRune(r)
}

func isWordRuneAt(text []byte, i int) bool {
	r, _ := utf8.DecodeRune(text[i:])
	return isWordRune(r)
}
