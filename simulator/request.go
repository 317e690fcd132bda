package simulator

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// request is the part of an OpenAI request the simulator reads.
type request struct {
	Model               string
	Stream              bool
	IncludeUsage        bool // stream_options.include_usage
	MaxTokens           *int
	MaxCompletionTokens *int
	Dimensions          *int
	EncodingFormat      string
	// Raw JSON of the prompt fields, nil when absent.
	Messages, Prompt, Input []byte
}

// parseRequest reads the top-level members the simulator needs from a
// JSON request body. It is a small scanner rather than encoding/json,
// which costs several times more per request (and its recursion grows the
// stack of every in-process request's goroutine). Member names must be
// spelled exactly; with duplicates the last one counts.
func parseRequest(body []byte) (request, error) {
	var req request
	if !json.Valid(body) {
		return req, invalid("", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return req, invalid("", "The request body must be a JSON object.")
	}
	// The body is valid JSON from here on, so the scan needs no checks.
	for i = skipSpace(body, i+1); body[i] != '}'; {
		kEnd := valueEnd(body, i)
		key := body[i+1 : kEnd-1]
		v := skipSpace(body, kEnd) + 1 // past ':'
		v = skipSpace(body, v)
		end := valueEnd(body, v)
		val := body[v:end]
		var err error
		switch string(key) {
		case "model":
			req.Model, err = stringValue(val, "model")
		case "encoding_format":
			req.EncodingFormat, err = stringValue(val, "encoding_format")
		case "stream":
			req.Stream, err = boolValue(val, "stream")
		case "stream_options":
			req.IncludeUsage, err = includeUsage(val)
		case "max_tokens":
			req.MaxTokens, err = intValue(val, "max_tokens")
		case "max_completion_tokens":
			req.MaxCompletionTokens, err = intValue(val, "max_completion_tokens")
		case "dimensions":
			req.Dimensions, err = intValue(val, "dimensions")
		case "messages":
			req.Messages = val
		case "prompt":
			req.Prompt = val
		case "input":
			req.Input = val
		}
		if err != nil {
			return req, err
		}
		i = skipSpace(body, end)
		if body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	return req, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the end of the valid JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		for j := i + 1; ; {
			k := bytes.IndexByte(b[j:], '"') + j
			n := 0
			for p := k - 1; b[p] == '\\'; p-- {
				n++
			}
			if n%2 == 0 {
				return k + 1
			}
			j = k + 1
		}
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			case '"':
				j = valueEnd(b, j) - 1
			}
		}
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j
	}
}

func stringValue(v []byte, name string) (string, error) {
	if string(v) == "null" {
		return "", nil
	}
	if v[0] != '"' {
		return "", invalid(name, "'"+name+"' must be a string")
	}
	if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

func boolValue(v []byte, name string) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, invalid(name, "'"+name+"' must be a boolean")
}

func intValue(v []byte, name string) (*int, error) {
	if string(v) == "null" {
		return nil, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return nil, invalid(name, "'"+name+"' must be an integer")
	}
	return &n, nil
}

// includeUsage reads stream_options.include_usage.
func includeUsage(v []byte) (bool, error) {
	if string(v) == "null" {
		return false, nil
	}
	if v[0] != '{' {
		return false, invalid("stream_options", "'stream_options' must be an object")
	}
	var include bool
	for i := skipSpace(v, 1); v[i] != '}'; {
		kEnd := valueEnd(v, i)
		key := v[i+1 : kEnd-1]
		s := skipSpace(v, skipSpace(v, kEnd)+1)
		end := valueEnd(v, s)
		if string(key) == "include_usage" {
			var err error
			if include, err = boolValue(v[s:end], "stream_options.include_usage"); err != nil {
				return false, err
			}
		}
		i = skipSpace(v, end)
		if v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
	return include, nil
}
