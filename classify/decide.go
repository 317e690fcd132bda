package classify

import "fmt"

// Decide returns a request's data class: the most sensitive of
//
//   - floor, the class configured for the key or team ("" means the lowest
//     level);
//   - header, the class the client asked for ("" means none). It may raise
//     the class but never lower it below the floor or the content;
//   - content.Class, what the detectors found.
//
// reasons lists what set the class, each contributor at the winning level:
// "floor:NAME", "header:NAME" and content.Reasons ("detector:NAME"). An
// unknown floor, header or content class is an error wrapping
// ErrUnknownLevel; the caller should refuse the request rather than guess.
func Decide(levels *Levels, floor, header string, content Result) (class string, reasons []string, err error) {
	type vote struct{ level, reason string }
	var votes []vote

	f := levels.Lowest()
	if floor != "" {
		if f, err = levels.Parse(floor); err != nil {
			return "", nil, fmt.Errorf("classify: floor class: %w", err)
		}
	}
	votes = append(votes, vote{f, "floor:" + f})

	if header != "" {
		h, err := levels.Parse(header)
		if err != nil {
			return "", nil, fmt.Errorf("classify: requested class: %w", err)
		}
		votes = append(votes, vote{h, "header:" + h})
	}

	if content.Class != "" {
		c, err := levels.Parse(content.Class)
		if err != nil {
			return "", nil, fmt.Errorf("classify: content class: %w", err)
		}
		for _, r := range content.Reasons {
			votes = append(votes, vote{c, r})
		}
		if len(content.Reasons) == 0 && c != levels.Lowest() {
			votes = append(votes, vote{c, "content:" + c})
		}
	}

	class = votes[0].level
	for _, v := range votes[1:] {
		class = levels.Max(class, v.level)
	}
	for _, v := range votes {
		if v.level == class {
			reasons = append(reasons, v.reason)
		}
	}
	return class, reasons, nil
}
