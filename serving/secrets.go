package serving

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// secretRef matches a whole {{secrets/scope/key}} reference.
var secretRef = regexp.MustCompile(`^\{\{\s*secrets/([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+)\s*\}\}$`)

// isSecretRef reports whether s is a {{secrets/scope/key}} reference.
func isSecretRef(s string) bool { return secretRef.MatchString(s) }

// secrets resolves {{secrets/scope/key}} references: the file
// dir/scope/key (trimmed), else the environment variable
// envPrefix + SCOPE_KEY (upper case, '-' and '.' as '_').
type secrets struct {
	dir       string
	envPrefix string
	lookupEnv func(string) (string, bool)
}

// value returns the secret named by ref, or ref itself when it is not a
// reference (a key given in plain text). Errors name the reference, never
// a value.
func (s *secrets) value(ref string) (string, error) {
	m := secretRef.FindStringSubmatch(ref)
	if m == nil {
		if strings.Contains(ref, "{{") {
			return "", errors.New("is not a valid secret reference; write {{secrets/scope/key}} with letters, digits, '.', '_' and '-'")
		}
		return ref, nil
	}
	scope, key := m[1], m[2]
	if scope == "." || scope == ".." || key == "." || key == ".." {
		return "", errors.New("secret reference " + ref + " is not valid")
	}
	if s.dir != "" {
		b, err := os.ReadFile(filepath.Join(s.dir, scope, key))
		if err == nil {
			if v := strings.TrimSpace(string(b)); v != "" {
				return v, nil
			}
		}
	}
	name := s.envPrefix + envName(scope) + "_" + envName(key)
	if v, ok := s.lookupEnv(name); ok {
		if v = strings.TrimSpace(v); v != "" {
			return v, nil
		}
	}
	return "", errors.New("secret reference " + ref + " cannot be resolved: no file <secrets.dir>/" + scope + "/" + key + " and no environment variable " + name)
}

func envName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' {
			return '_'
		}
		return r
	}, strings.ToUpper(s))
}

// secretOrPlain picks the value of a secret field pair: the reference (or
// plain key) field, else the *_plaintext field.
func (s *secrets) secretOrPlain(ref, plain string) (string, error) {
	if ref != "" {
		return s.value(ref)
	}
	return plain, nil
}

// redact returns the value of a secret field as answers show it: a
// reference stays, a key in plain text is left out.
func redact(v string) string {
	if isSecretRef(v) {
		return v
	}
	return ""
}

// secretRefIn returns the first secret reference in c's served entities,
// or "".
func secretRefIn(c *Config) string {
	for _, e := range c.ServedEntities {
		x := e.ExternalModel
		if x == nil {
			continue
		}
		var vals []string
		if o := x.OpenAIConfig; o != nil {
			vals = append(vals, o.OpenAIAPIKey, o.MicrosoftEntraClientSecret)
		}
		if o := x.CustomProviderConfig; o != nil {
			if o.APIKeyAuth != nil {
				vals = append(vals, o.APIKeyAuth.Value)
			}
			if o.BearerTokenAuth != nil {
				vals = append(vals, o.BearerTokenAuth.Token)
			}
		}
		if o := x.DatabricksModelServingConfig; o != nil {
			vals = append(vals, o.DatabricksAPIToken)
		}
		for _, v := range vals {
			if isSecretRef(v) {
				return v
			}
		}
	}
	return ""
}
