// Package classify decides how sensitive a request's data is, so that
// sensitive requests are only routed to private upstreams.
//
// Data classes are an ordered list of Levels (by default public < internal
// < confidential < restricted). A Classifier runs content detectors (e-mail
// addresses, phone numbers, payment cards, IBANs, US SSNs, IP addresses,
// credentials, high-entropy tokens, and operator keywords and regular
// expressions) and maps what they find to a class through Rules. Decide
// combines that with the key's floor and the class a client asked for.
//
//	c, err := classify.New(classify.Config{})
//	res := c.Classify(classify.ExtractText(body))
//	class, reasons, err := classify.Decide(c.Levels(), floor, requested, res)
//	masked := classify.Mask(text, res.Findings) // "[EMAIL_1]" in place of an address
//
// Findings carry byte offsets, never the matched text, so results can be
// logged. The built-in detectors share one hand-written linear scanner;
// see the tests for their measured false-positive rates.
package classify
